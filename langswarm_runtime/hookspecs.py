"""The whole plugin contract on one page.

A plugin is a module (or object) with functions marked ``@hookimpl``, found through the
``langswarm_runtime`` entry-point group. Each registration hook receives ``register``::

    @hookimpl
    def register_storages(register):
        register("redis", RedisStorage, RedisStorageConfig)

``register(type_name, factory, config_model=None)``: ``config_model`` is a pydantic model
for the YAML block with that ``type``; ``factory(config)`` is called with the validated
instance (a class works as its own factory). With no ``config_model`` the block takes no
options and ``factory()`` is called with none.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "langswarm_runtime"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_providers(register: Any) -> None:
    """Register provider types: ``register(type_name, factory, config_model)``."""


@hookspec
def register_storages(register: Any) -> None:
    """Register storage types: ``register(type_name, factory, config_model)``."""


@hookspec
def register_middlewares(register: Any) -> None:
    """Register middleware types: ``register(type_name, factory, config_model)``."""


@hookspec
def register_tools(register: Any) -> None:
    """Register tool types for ``tools:`` entries: ``register(type_name, factory,
    config_model)``. ``factory(config)`` returns a tool, a list of tools, or a tool set
    (an object with ``list_tools()`` and ``close()``) whose tools are listed on first use."""


@hookspec
def register_commands(subparsers: Any) -> None:
    """Add ``langswarm-run`` subcommands to the argparse ``subparsers``. Set
    ``func=callable(args) -> int`` on the parser with ``set_defaults``."""


@hookspec
def startup(runtime: Any) -> None:
    """Called once the runtime is built from its config. May return an awaitable."""


@hookspec
def shutdown(runtime: Any) -> None:
    """Called when the runtime closes. May return an awaitable."""
