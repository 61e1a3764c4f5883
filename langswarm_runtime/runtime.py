"""Runtime: the registries of providers, storages, middlewares and tools, built from a config."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, SecretStr

from langswarm_runtime.errors import ConfigError, PluginError
from langswarm_runtime.providers._common import require_sdk
from langswarm_runtime.providers.base import ContextConfig, Provider, ProviderConfig
from langswarm_runtime.session.models import SessionBackend
from langswarm_runtime.session.storage.base import ISessionStorage
from langswarm_runtime.tools.spec import as_tool

__all__ = ["Runtime"]


def _public_options(options: BaseModel | None) -> dict[str, Any]:
    """Options as plain data, without secrets (they are re-read from the config)."""
    if options is None:
        return {}
    data: dict[str, Any] = {}
    for name in options.model_fields_set:
        value = getattr(options, name)
        if isinstance(value, SecretStr):
            continue
        # JSON mode also flattens models nested in lists/dicts (e.g. validation's patterns).
        data[name] = options.model_dump(mode="json", include={name})[name]
    return data


class Runtime:
    """Holds the validated config, the plugin manager and one provider instance per entry."""

    def __init__(self, config: Any = None, plugins: Any = None) -> None:
        from langswarm_runtime.config import SwarmConfig
        from langswarm_runtime.plugins import PluginManager

        if config is None:
            config = SwarmConfig.default()
        if plugins is None:
            plugins = getattr(config, "plugin_manager", None) or PluginManager(
                disabled=config.plugins.disabled
            )
        self.config = config
        self.plugins = plugins
        self._providers: dict[str, Provider] = {}
        #: One instance per distinct middleware spec, shared by the sessions using it:
        #: middlewares get the session on every call, and building one can be costly
        #: (compiled patterns, open log files).
        self._middlewares: dict[str, object] = {}
        #: Per ``tools:`` entry: what its type's factory built (a tool, a list, or a tool
        #: set such as an MCP server's), and the tools it gives, each built once.
        self._tool_sources: dict[str, Any] = {}
        self._tools: dict[str, list[Any]] = {}

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str] | None = None, *, environ: Any = None
    ) -> Runtime:
        from langswarm_runtime.config import load_config

        config, plugins = load_config(path, environ=environ)
        return cls(config=config, plugins=plugins)

    # -- storage ------------------------------------------------------------------------------
    def build_storage(self) -> ISessionStorage:
        block = self.config.storage
        return self.plugins.storages.create(block.type, block.options, key_path="storage")  # type: ignore[no-any-return]

    # -- providers ----------------------------------------------------------------------------
    def _entry(self, name: str) -> tuple[str, Any]:
        """(plugin type, validated options) for a provider entry or plugin type name."""
        block = self.config.providers.get(name)
        if block is not None:
            return block.type, block.options
        if name in self.plugins.providers:
            return name, None
        known = sorted(set(self.config.providers) | set(self.plugins.providers.names()))
        raise ConfigError(
            f"unknown provider {name!r}; configured entries and provider plugins: "
            + ", ".join(known)
        )

    def provider_for(self, name: str) -> tuple[Provider, ContextConfig]:
        """The shared provider instance for an entry, and its context policy."""
        provider = self._providers.get(name)
        if provider is None:
            type_name, options = self._entry(name)
            provider = self.plugins.providers.create(
                type_name, options, key_path=f"providers.{name}"
            )
            if provider.sdk_module:  # found, not imported: start-up stays fast
                require_sdk(provider.sdk_module, provider.sdk_extra, provider=name)
            provider.name = name
            self._providers[name] = provider
        context = getattr(provider.config, "context", None) or ContextConfig()
        return provider, context

    def default_model(self, name: str, provider: Provider) -> str | None:
        return self.config.defaults.model if provider.default_model is None else provider.default_model

    def resolve_backend(
        self, name: str, provider: Provider, requested: SessionBackend | str
    ) -> SessionBackend:
        try:
            backend = SessionBackend(requested)
        except ValueError:
            raise ConfigError(
                f"unknown backend {requested!r}; use one of: native, hybrid, auto"
            ) from None
        refusal = provider.native_refusal()
        if backend is SessionBackend.AUTO:
            # Native only where the endpoint is known to keep conversations: the
            # provider's own API. A proxy or compatible server may take a native request
            # and keep nothing, and the model would silently lose its context.
            native = refusal is None and provider.official_endpoint()
            return SessionBackend.NATIVE if native else SessionBackend.HYBRID
        if backend is SessionBackend.NATIVE and not provider.supports_native:
            native_types = sorted(
                t
                for t in self.plugins.providers.names()
                if getattr(self.plugins.providers.get(t).factory, "supports_native", False)
            )
            raise ConfigError(
                f"provider {name!r} has no native mode (the provider keeps no conversation "
                f"state); use backend hybrid or auto. Native mode: {', '.join(native_types)}"
            )
        if backend is SessionBackend.NATIVE and refusal is not None:
            raise ConfigError(
                f"provider {name!r} cannot run native: {refusal}; use backend hybrid or auto"
            )
        return backend

    def resolve_switch(
        self, name: str, model: str | None, backend: SessionBackend | str | None
    ) -> tuple[Provider, str | None, SessionBackend, ContextConfig]:
        provider, context = self.provider_for(name)
        resolved_model = model or self.default_model(name, provider)
        resolved = self.resolve_backend(
            name, provider, backend if backend is not None else self.config.defaults.backend
        )
        return provider, resolved_model, resolved, context

    # -- tools --------------------------------------------------------------------------------
    def tools_for(self, provider_name: str) -> list[Any]:
        """The configured tools a new session on this entry gets: ``defaults.tools``,
        then the provider entry's ``tools``."""
        names = list(getattr(self.config.defaults, "tools", []) or [])
        provider, _ = self.provider_for(provider_name)
        names += [n for n in getattr(provider.config, "tools", None) or [] if n not in names]
        return self.tools_named(names)

    async def open_tools(
        self, names: Iterable[str] | None = None, *, provider: str | None = None
    ) -> None:
        """Build (and list) the entries that ``tools_named(names)``, or ``tools_for
        (provider)``, needs, in a worker thread: the first listing of an MCP server waits
        for the server, and the synchronous lookups that follow then find everything
        built without holding up the event loop."""
        if provider is not None:
            await asyncio.to_thread(self.tools_for, provider)
        if names is not None:
            await asyncio.to_thread(self.tools_named, list(names))

    def tools_named(self, names: Iterable[str]) -> list[Any]:
        """Implementations for ``names``, a flat list (an ``mcp`` entry gives several).

        A name is a ``tools:`` entry (all the tools it gives), or else the name of a tool
        some entry gives: a hydrated session names its tools so. Other names are skipped
        (their calls go to the caller). An entry is only built when a name needs it; one
        that cannot be built fails the lookup only if some name stays unfound."""
        configured = self.config.tools
        found: dict[str, Any] = {}
        wanted: list[str] = []
        for name in names:
            if name in configured:
                for item in self._tool(name):
                    found.setdefault(item.spec.name, item)
            else:
                wanted.append(name)
        missing = [n for n in wanted if n not in found]
        failure: ConfigError | PluginError | None = None
        for entry in configured:
            if not missing:
                break
            if not self._may_give(entry, missing):
                continue
            try:
                items = self._tool(entry)
            except (ConfigError, PluginError) as exc:
                # Only a problem if a name stays unfound: it may be this entry's.
                failure = failure or exc
                continue
            for item in items:
                if item.spec.name in missing:
                    found.setdefault(item.spec.name, item)
            missing = [n for n in missing if n not in found]
        if missing and failure is not None:
            raise failure
        return list(found.values())

    def _may_give(self, entry: str, names: list[str]) -> bool:
        """Whether entry could give a tool named in ``names`` without building it to see
        (an MCP server is started to list its tools): a ``prefix`` option says no when
        no name starts with it."""
        built = self._tools.get(entry)
        if built is not None:
            return any(item.spec.name in names for item in built)
        prefix = getattr(self.config.tools[entry].options, "prefix", None)
        return not (isinstance(prefix, str) and prefix
                    and not any(n.startswith(prefix) for n in names))

    def _tool(self, name: str) -> list[Any]:
        """The tools of entry ``name``, built once: each has ``spec`` and ``async
        run(arguments)``. A tool set lists its tools here, on first use."""
        tools = self._tools.get(name)
        if tools is None:
            source = self._tool_source(name)
            block = self.config.tools[name]
            try:
                items = self._tool_items(source)
            except ConfigError as exc:
                raise self._located(exc, name) from None
            except PluginError as exc:
                raise PluginError(f"tools.{name}: {exc}") from exc.__cause__
            except TypeError as exc:
                raise PluginError(
                    f"tools.{name}: tool type {block.type!r} gave something that is not a"
                    f" tool: {exc}"
                ) from None
            names = [item.spec.name for item in items]
            if len(set(names)) != len(names):
                twice = sorted({n for n in names if names.count(n) > 1})
                raise self.config.locate(ConfigError(
                    f"gives two tools named {', '.join(twice)}", key_path=f"tools.{name}"
                ))
            tools = self._tools[name] = items
        return tools

    @staticmethod
    def _tool_items(source: Any) -> list[Any]:
        if hasattr(source, "spec") and hasattr(source, "run"):
            items: list[Any] = [source]
        elif callable(getattr(source, "list_tools", None)):
            items = list(source.list_tools())
        elif isinstance(source, list | tuple):
            items = list(source)
        else:
            items = [source]
        tools = [i if hasattr(i, "spec") and hasattr(i, "run") else as_tool(i) for i in items]
        if any(not hasattr(t, "run") for t in tools):  # a ToolSpec: nothing to run here
            raise TypeError("a ToolSpec is run by the caller; give it in code, not as an entry")
        return tools

    def _tool_source(self, name: str) -> Any:
        """What the type's factory builds for entry ``name`` (no tool set is listed yet)."""
        if name not in self._tool_sources:
            block = self.config.tools.get(name)
            if block is None:
                raise ConfigError(f"unknown tool {name!r}; tools entries: "
                                  + (", ".join(sorted(self.config.tools)) or "none"))
            try:
                self._tool_sources[name] = self.plugins.tools.create(
                    block.type, block.options, key_path=f"tools.{name}"
                )
            except ConfigError as exc:
                raise self._located(exc, name) from None
        return self._tool_sources[name]

    def _located(self, exc: ConfigError, entry: str) -> ConfigError:
        base = f"tools.{entry}"
        path = exc.key_path or ""
        if path != base and not path.startswith(base + "."):
            path = f"{base}.{path}" if path else base
        located: ConfigError = self.config.locate(
            ConfigError(exc.message, file=exc.file, key_path=path, line=exc.line)
        )
        return located

    # -- middleware ---------------------------------------------------------------------------
    def middleware_specs(self, provider_name: str) -> list[dict[str, Any]]:
        """The configured chain for a new session: global, then the provider entry's."""
        specs = [
            {"type": block.type, **_public_options(block.options)}
            for block in self.config.middleware
        ]
        provider, _ = self.provider_for(provider_name)
        config = provider.config
        if isinstance(config, ProviderConfig):
            specs.extend(dict(spec) for spec in config.middleware)
        return specs

    def build_middleware(self, specs: list[dict[str, Any]]) -> list[object]:
        chain = []
        for i, spec in enumerate(specs):
            key = json.dumps(spec, sort_keys=True, default=str)
            instance = self._middlewares.get(key)
            if instance is None:
                options = dict(spec)
                type_name = options.pop("type", None)
                if not isinstance(type_name, str):
                    raise ConfigError(
                        "middleware entry without a type", key_path=f"middleware[{i}]"
                    )
                instance = self.plugins.middlewares.create(
                    type_name, options, key_path=f"middleware[{i}]"
                )
                self._middlewares[key] = instance
            chain.append(instance)
        return chain

    def validate(self) -> list[str]:
        """Build every provider entry, the middleware chains and the tools entries (no
        network, no storage writes, no MCP server started); raise ConfigError on a problem
        and return notes worth knowing."""
        notes: list[str] = []
        default_backend = self.config.defaults.backend
        self.provider_for(self.config.defaults.provider)
        for name in self.config.providers:
            provider, _ = self.provider_for(name)
            backend = self.resolve_backend(name, provider, default_backend)
            self.build_middleware(self.middleware_specs(name))
            if backend is SessionBackend.NATIVE and "context" in provider.config.model_fields_set:
                notes.append(
                    f"providers.{name}: sessions run native (the provider holds the "
                    "conversation), so the context policy applies only when the remote "
                    "conversation is re-seeded from the local mirror"
                )
        for name in self.config.tools:  # imports python tools; starts no MCP server
            self._tool_source(name)
        return notes

    async def close(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        middlewares, self._middlewares = list(self._middlewares.values()), {}
        tool_sources, self._tool_sources, self._tools = list(self._tool_sources.values()), {}, {}
        for provider in providers:
            await provider.close()
        for closable in [*tool_sources, *middlewares]:
            closer = getattr(closable, "close", None)
            if closer is not None:
                result = closer()
                if inspect.isawaitable(result):
                    await result
