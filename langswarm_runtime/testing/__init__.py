"""Test helpers for langswarm-runtime and its plugins.

``from langswarm_runtime.testing import StorageConformance`` gives the storage
conformance suite (see :mod:`langswarm_runtime.testing.storage_suite`), and
``ProviderConformance`` the provider one (:mod:`langswarm_runtime.testing.provider_suite`).
Names are resolved lazily so that loading the pytest plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langswarm_runtime.testing.provider_suite import ProviderConformance

__all__ = [
    "ProviderConformance",
    "StorageConformance",
    "StorageStateMachine",
    "make_storage_state_machine",
]


def __getattr__(name: str) -> Any:
    # Lazy: the pytest11 entry point imports this package in every pytest run, and the
    # suite pulls in hypothesis; only pay for that when someone asks for it.
    if name == "ProviderConformance":
        from langswarm_runtime.testing import provider_suite

        return provider_suite.ProviderConformance
    if name in __all__:
        from langswarm_runtime.testing import storage_suite

        return getattr(storage_suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
