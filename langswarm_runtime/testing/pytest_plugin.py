"""pytest plugin (entry point ``pytest11``) shipped with langswarm-runtime.

Kept import-light: it is loaded in every pytest run of every project that has
langswarm-runtime installed. Heavy helpers are imported inside fixtures.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "storage_conformance: tests from the langswarm storage conformance suite"
    )


@pytest.fixture
def provider_emulator():  # type: ignore[no-untyped-def]
    """A running :class:`~langswarm_runtime.testing.emulator.ProviderEmulator` on a free
    loopback port, stopped after the test."""
    from langswarm_runtime.testing.emulator import ProviderEmulator

    with ProviderEmulator() as emu:
        yield emu
