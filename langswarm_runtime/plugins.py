"""The plugin manager: finds plugins, runs their registration hooks, keeps the registries.

Built-in providers, storages, middlewares and tool types are plugins like any other: the
``langswarm-runtime`` distribution declares them as entry points in the ``langswarm_runtime``
group, exactly as a third-party package does. When that metadata is missing (running from a
source tree without installing), ``DEFAULT_PLUGINS`` lists the same modules.

Environment:

- ``LANGSWARM_LOAD_PLUGINS``: unset loads every installed plugin; ``""`` loads none; a
  comma list loads only the plugins whose entry-point or distribution name is listed.
  Built-ins always load (turn them off with ``disabled``).
- ``LANGSWARM_TRACE_PLUGINS=1``: print every hook call to stderr.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from pydantic import BaseModel

from langswarm_runtime import hookspecs
from langswarm_runtime.errors import LangSwarmError, PluginError
from langswarm_runtime.registry import (
    KNOWN_EXTERNAL,
    PluginType,
    Registry,
    await_me_maybe,
    format_validation_error,
    join_path,
    normalize_name,
    scrub,
)

__all__ = [
    "DEFAULT_PLUGINS",
    "DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "KNOWN_EXTERNAL",
    "PluginInfo",
    "PluginManager",
    "PluginType",
    "Registry",
    "await_me_maybe",
    "format_validation_error",
    "join_path",
    "scrub",
]

#: Entry-point group every plugin, built-in or third-party, is declared in.
ENTRY_POINT_GROUP = "langswarm_runtime"
#: Our own distribution: its entry points are the built-ins.
DISTRIBUTION = "langswarm-runtime"

#: Built-in plugin modules; must list the same modules as pyproject's entry points
#: (a test checks). Used when the distribution's metadata is missing.
DEFAULT_PLUGINS: list[str] = [
    "langswarm_runtime.providers.echo",
    "langswarm_runtime.providers.openai",
    "langswarm_runtime.providers.cohere",
    "langswarm_runtime.providers.mistral",
    "langswarm_runtime.providers.anthropic",
    "langswarm_runtime.providers.gemini",
    "langswarm_runtime.session.storage.memory",
    "langswarm_runtime.session.storage.sqlite",
    "langswarm_runtime.middleware.pii",
    "langswarm_runtime.middleware.validation",
    "langswarm_runtime.middleware.audit",
    "langswarm_runtime.tools.python",
    "langswarm_runtime.tools.mcp",
]

#: kind -> registration hook.
KINDS: dict[str, str] = {
    "provider": "register_providers",
    "storage": "register_storages",
    "middleware": "register_middlewares",
    "tool": "register_tools",
}


@dataclass
class PluginInfo:
    """What ``langswarm-run plugins`` shows about one plugin."""

    name: str
    package: str | None
    version: str | None
    builtin: bool
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    #: What it registered, as ``kind:type`` (e.g. ``storage:sqlite``).
    types: list[str] = field(default_factory=list)


@functools.cache
def _dist_name(dist: metadata.Distribution) -> str:
    return str(dist.name)


@functools.cache
def _dist_version(dist: metadata.Distribution) -> str:
    return str(dist.version)


def _cheap_dist_name(dist: metadata.Distribution) -> str:
    """The distribution's name without parsing its METADATA file (~2 ms each, which
    adds up at start-up): the dist-info folder's name says it."""
    return getattr(dist, "_normalized_name", None) or _dist_name(dist)


@dataclass
class _Source:
    name: str
    module: str
    builtin: bool
    entry_point: metadata.EntryPoint | None = None
    dist: metadata.Distribution | None = None
    #: Package name when there is no distribution metadata (built-ins in a source tree).
    fallback_package: str | None = None

    @property
    def package(self) -> str | None:
        return _dist_name(self.dist) if self.dist is not None else self.fallback_package

    @property
    def version(self) -> str | None:
        return _dist_version(self.dist) if self.dist is not None else None


class PluginManager:
    """Loads plugins and builds the provider, storage, middleware and tool registries.

    ``disabled``: plugin names (entry-point name, module or distribution) to skip,
    built-ins included. ``load_entrypoints=False`` loads built-ins only. ``environ``
    defaults to ``os.environ`` (for ``LANGSWARM_LOAD_PLUGINS`` and
    ``LANGSWARM_TRACE_PLUGINS``).
    """

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        load_entrypoints: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.disabled = [d for d in disabled]
        self._disabled_keys = {normalize_name(d) for d in self.disabled}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.providers = Registry("provider")
        self.storages = Registry("storage")
        self.middlewares = Registry("middleware")
        self.tools = Registry("tool")
        self._sources: dict[str, _Source] = {}
        self._skipped: list[str] = []
        self._trace = env.get("LANGSWARM_TRACE_PLUGINS", "") not in ("", "0")
        if self._trace:
            self.pm.add_hookcall_monitoring(self._trace_before, self._trace_after)
        for source in self._builtin_sources():
            self._load(source)
        if load_entrypoints:
            allow = env.get("LANGSWARM_LOAD_PLUGINS")
            for source in self._entrypoint_sources(allow):
                self._load(source)
        self._check_pending()
        self.rebuild()

    # -- registries ----------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        """The registry of ``kind``: ``provider``, ``storage``, ``middleware`` or ``tool``."""
        try:
            return {"provider": self.providers, "storage": self.storages,
                    "middleware": self.middlewares, "tool": self.tools}[kind]
        except KeyError:
            raise ValueError(f"unknown plugin kind {kind!r}") from None

    def rebuild(self) -> None:
        """Rebuild the registries from the registration hooks of every loaded plugin."""
        for kind, hook_name in KINDS.items():
            registry = Registry(kind)
            registry.disabled = list(self._skipped)
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                self._call_register(kind, hook_name, impl, registry)
            setattr(self, kind + "s", registry)

    def _call_register(
        self, kind: str, hook_name: str, impl: Any, registry: Registry
    ) -> None:
        # Called one implementation at a time, so each type is credited to its plugin.
        plugin = impl.plugin_name
        source = self._sources.get(plugin)

        def register(
            type_name: str,
            factory: Callable[..., Any],
            config_model: type[BaseModel] | None = None,
        ) -> None:
            self._check_registration(plugin, kind, type_name, factory, config_model)
            registry._add(PluginType(
                kind=kind, name=type_name, factory=factory, config_model=config_model,
                plugin=plugin, package=source.package if source else None,
                version=source.version if source else None,
            ))

        kwargs = {"register": register}
        if self._trace:
            print(f"langswarm plugin hook: {hook_name} -> {plugin}", file=sys.stderr)
        try:
            impl.function(*[kwargs[a] for a in impl.argnames])
        except LangSwarmError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {plugin!r} ({self._package_of(plugin)}) failed in {hook_name}:"
                f" {type(exc).__name__}: {exc}"
            ) from exc

    def _check_registration(
        self, plugin: str, kind: str, type_name: Any, factory: Any, config_model: Any
    ) -> None:
        where = f"plugin {plugin!r} ({self._package_of(plugin)})"
        if not isinstance(type_name, str) or not type_name:
            raise PluginError(f"{where} registered a {kind} with an empty or non-string name")
        if not callable(factory):
            raise PluginError(f"{where}: factory of {kind} {type_name!r} is not callable")
        if config_model is not None and not (
            isinstance(config_model, type) and issubclass(config_model, BaseModel)
        ):
            raise PluginError(
                f"{where}: config model of {kind} {type_name!r} is not a pydantic model"
            )
        if kind == "provider" and config_model is not None:
            from langswarm_runtime.providers.base import ProviderConfig

            if not issubclass(config_model, ProviderConfig):
                raise PluginError(
                    f"{where}: config model of provider {type_name!r} must subclass"
                    " langswarm_runtime.providers.base.ProviderConfig"
                )

    # -- loading -------------------------------------------------------------------------
    def _builtin_sources(self) -> list[_Source]:
        try:
            dist = metadata.distribution(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            dist = None
        eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP] if dist else []
        if dist is None or not eps:
            return [
                _Source(m.rsplit(".", 1)[-1], m, True, fallback_package=DISTRIBUTION)
                for m in DEFAULT_PLUGINS
            ]
        return [_Source(ep.name, ep.value, True, ep, dist) for ep in eps]

    def _entrypoint_sources(self, allow: str | None) -> list[_Source]:
        if allow is not None and not allow.strip():
            return []
        wanted = None if allow is None else {normalize_name(a) for a in allow.split(",") if a.strip()}
        sources: dict[str, _Source] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            package = _cheap_dist_name(dist) if dist is not None else None
            if package and normalize_name(package) == DISTRIBUTION:
                continue  # built-ins, loaded already
            if wanted is not None and not (
                normalize_name(ep.name) in wanted or (package and normalize_name(package) in wanted)
            ):
                continue
            # The same distribution can be visible twice on sys.path: first one wins.
            sources.setdefault(ep.name, _Source(ep.name, ep.value, False, ep, dist))
        return list(sources.values())

    def _is_disabled(self, source: _Source) -> bool:
        keys = {source.name, source.module, source.module.rsplit(".", 1)[-1]}
        if source.package and not source.builtin:
            keys.add(source.package)
        return any(normalize_name(k) in self._disabled_keys for k in keys)

    def _load(self, source: _Source) -> None:
        if self._is_disabled(source):
            self._skipped.append(source.name)
            return
        label = f"{source.package or 'unknown package'}"
        if source.version:
            label += f" {source.version}"
        try:
            obj = source.entry_point.load() if source.entry_point else importlib.import_module(
                source.module
            )
        except Exception as exc:
            raise PluginError(
                f"plugin {source.name!r} from package {label} failed to import"
                f" ({source.module}): {type(exc).__name__}: {exc}"
            ) from exc
        if source.name in self._sources or self.pm.has_plugin(source.name):
            other = self._sources.get(source.name)
            raise PluginError(
                f"plugin {source.name!r} from package {label} has the same name as the one"
                f" from package {other.package if other else 'unknown'}"
            )
        if self.pm.is_registered(obj):  # a second entry point to the same module
            return
        self._sources[source.name] = source
        self.register(obj, name=source.name, _rebuild=False)

    def register(self, plugin: object, name: str | None = None, *, _rebuild: bool = True) -> str:
        """Register a plugin object (a module or any object with hookimpls) by hand.

        Tests and embedding code use it; the registries are rebuilt. Registering an
        object that is already registered (say, a module its entry point loaded) is not
        a duplicate: its existing name is returned and nothing changes.
        """
        existing = self.pm.get_name(plugin) if self.pm.is_registered(plugin) else None
        if existing is not None:
            return existing
        plugin_name = name or getattr(plugin, "__name__", None) or repr(plugin)
        if plugin_name not in self._sources:
            self._sources[plugin_name] = _Source(
                plugin_name, getattr(plugin, "__name__", plugin_name), False
            )
        try:
            self.pm.register(plugin, name=plugin_name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(
                f"plugin {plugin_name!r} ({self._package_of(plugin_name)}) cannot be"
                f" registered: {exc}"
            ) from exc
        if _rebuild:
            self._check_pending()
            self.rebuild()
        return plugin_name

    def unregister(self, name: str) -> None:
        """Remove a plugin by name and rebuild the registries."""
        self.pm.unregister(name=name)
        self._sources.pop(name, None)
        self.rebuild()

    def _check_pending(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            raise PluginError(
                f"plugin {name!r} ({self._package_of(name)}): {exc}"
            ) from exc

    def _package_of(self, name: str) -> str:
        source = self._sources.get(name)
        if source is None or source.package is None:
            return "package unknown"
        return f"package {source.package}" + (f" {source.version}" if source.version else "")

    # -- introspection -------------------------------------------------------------------
    def plugins(self, *, include_builtin: bool = True) -> list[PluginInfo]:
        """Loaded plugins, built-ins first, with what each registered."""
        infos: list[PluginInfo] = []
        for plugin in self.pm.get_plugins():
            name = self.pm.get_name(plugin)
            if name is None:
                continue
            source = self._sources.get(name)
            builtin = bool(source and source.builtin)
            if builtin and not include_builtin:
                continue
            types = [
                f"{kind}:{t.name}"
                for kind in KINDS
                for t in sorted(self.registry(kind), key=lambda t: t.name)
                if t.plugin == name
            ]
            hooks = sorted(h.name for h in (self.pm.get_hookcallers(plugin) or []))
            infos.append(PluginInfo(
                name=name,
                package=source.package if source else None,
                version=source.version if source else None,
                builtin=builtin,
                module=source.module if source else getattr(plugin, "__name__", None),
                hooks=hooks,
                types=types,
            ))
        infos.sort(key=lambda i: (not i.builtin, i.name))
        return infos

    @property
    def skipped(self) -> list[str]:
        """Plugins found but not loaded because they are disabled."""
        return list(self._skipped)

    # -- lifecycle hooks -----------------------------------------------------------------
    async def startup(self, runtime: Any) -> None:
        """Call every ``startup`` hook, awaiting those that return awaitables."""
        for result in self.pm.hook.startup(runtime=runtime):
            await await_me_maybe(result)

    async def shutdown(self, runtime: Any) -> None:
        """Call every ``shutdown`` hook, awaiting those that return awaitables."""
        for result in self.pm.hook.shutdown(runtime=runtime):
            await await_me_maybe(result)

    # -- tracing -------------------------------------------------------------------------
    def _trace_before(self, hook_name: str, hook_impls: Any, kwargs: Mapping[str, Any]) -> None:
        names = ", ".join(i.plugin_name for i in hook_impls)
        print(f"langswarm plugin hook: {hook_name}({', '.join(kwargs)}) -> [{names}]",
              file=sys.stderr)

    def _trace_after(self, outcome: Any, hook_name: str, hook_impls: Any,
                     kwargs: Mapping[str, Any]) -> None:
        exc = getattr(outcome, "exception", None)
        if exc is not None:
            print(f"langswarm plugin hook: {hook_name} raised {type(exc).__name__}",
                  file=sys.stderr)

