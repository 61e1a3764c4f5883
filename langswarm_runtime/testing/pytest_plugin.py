"""pytest plugin (entry point ``pytest11``) shipped with langswarm-runtime.

Kept import-light: it is loaded in every pytest run of every project that has
langswarm-runtime installed. Heavy helpers are imported inside fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from langswarm_runtime.plugins import PluginManager
    from langswarm_runtime.testing.emulator import ProviderEmulator


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "storage_conformance: tests from the langswarm storage conformance suite"
    )


@pytest.fixture
def provider_emulator() -> Iterator[ProviderEmulator]:
    """A running :class:`~langswarm_runtime.testing.emulator.ProviderEmulator` on a free
    loopback port, stopped after the test."""
    from langswarm_runtime.testing.emulator import ProviderEmulator

    with ProviderEmulator() as emu:
        yield emu


def plugin_manager_with(*plugins: object, disabled: Iterable[str] = ()) -> PluginManager:
    """A ``PluginManager`` with the built-ins plus exactly ``plugins`` (modules or objects
    with hook implementations). A plugin that is also installed is loaded through its
    entry point (so it is listed with its package and version) and counted once; no
    other installed plugin loads, whatever ``LANGSWARM_LOAD_PLUGINS`` says."""
    from importlib import metadata

    from langswarm_runtime.plugins import ENTRY_POINT_GROUP, PluginManager

    modules = {getattr(plugin, "__name__", None) for plugin in plugins} - {None}
    installed = [
        ep.name
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
        if ep.module in modules and not ep.attr
    ]
    environ = {**os.environ, "LANGSWARM_LOAD_PLUGINS": ",".join(installed)}
    manager = PluginManager(disabled=disabled, environ=environ)
    for plugin in plugins:
        manager.register(plugin)  # a no-op for one its entry point loaded
    return manager


@pytest.fixture
def langswarm_plugins() -> Callable[..., PluginManager]:
    """``langswarm_plugins(my_plugin, ...)``: a ``PluginManager`` with the built-ins plus
    exactly the plugins under test, whether or not they are pip-installed too (see
    :func:`plugin_manager_with`). Pass it to ``build_config(..., plugins=)`` and
    ``SessionManager(config=..., plugins=...)``."""
    return plugin_manager_with
