"""Runtime: the registries of providers, storages and middlewares, built from a config."""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

from pydantic import BaseModel, SecretStr

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.providers._common import require_sdk
from langswarm_runtime.providers.base import ContextConfig, Provider, ProviderConfig
from langswarm_runtime.session.models import SessionBackend
from langswarm_runtime.session.storage.base import ISessionStorage

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

    def tools_named(self, names: list[str]) -> list[Any]:
        """Implementations of the named ``tools:`` entries (names not configured are
        skipped: their calls go to the caller)."""
        configured = getattr(self.config, "tools", None) or {}
        if not configured or not names:
            return []
        return [self._tool(name) for name in names if name in configured]

    def _tool(self, name: str) -> Any:
        raise ConfigError(f"tools: entry {name!r} cannot be built yet", key_path=f"tools.{name}")

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
        """Build every provider entry and the middleware chains (no network, no storage
        writes); raise ConfigError on a problem and return notes worth knowing."""
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
        return notes

    async def close(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        middlewares, self._middlewares = list(self._middlewares.values()), {}
        for provider in providers:
            await provider.close()
        for middleware in middlewares:
            closer = getattr(middleware, "close", None)
            if closer is not None:
                result = closer()
                if inspect.isawaitable(result):
                    await result
