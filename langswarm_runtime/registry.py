"""Registries of plugin types: what ``type: <name>`` means in a config block.

``PluginManager`` (in ``langswarm_runtime.plugins``) fills one ``Registry`` per kind from the
registration hooks; config loading and the runtime validate options and build instances
through them. Error messages are built from locations and types only, never from values,
so secrets cannot leak through them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from langswarm_runtime.errors import ConfigError, LangSwarmError, PluginError

__all__ = [
    "KNOWN_EXTERNAL",
    "PluginType",
    "Registry",
    "await_me_maybe",
    "format_validation_error",
    "join_path",
    "normalize_name",
    "scrub",
]

#: Type names served by packages we know of but do not ship: (kind, type) -> package.
KNOWN_EXTERNAL: dict[tuple[str, str], str] = {
    ("storage", "redis"): "langswarm-storage-redis",
    ("storage", "postgres"): "langswarm-storage-postgres",
    ("storage", "postgresql"): "langswarm-storage-postgres",
}

async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable (hooks may be sync or async)."""
    if inspect.isawaitable(value):
        value = await value
    return value


def normalize_name(name: str) -> str:
    """Distribution-style normalisation, so ``my_plugin`` matches ``My-Plugin``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def format_validation_error(
    exc: ValidationError, key_path: str = "", model: type[BaseModel] | None = None
) -> tuple[str, str]:
    """One-line message and key path for a pydantic error.

    Built from the error type and location only: pydantic's own text echoes the input,
    which may be a secret. ``model`` (the validated model) lets an unknown key list the
    allowed ones.
    """
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ())]
    path = join_path(key_path, *loc)
    if first["type"] == "extra_forbidden":
        msg = f"unknown key {loc[-1]!r}" if loc else "unknown key"
        allowed = _fields_at(model, loc[:-1]) if model is not None else None
        if allowed:
            msg += f" (allowed: {', '.join(allowed)})"
    elif first["type"] == "missing":
        msg = "required key is missing"
    else:
        msg = str(first.get("msg", "invalid value"))
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return msg, path


def join_path(base: str, *parts: object) -> str:
    """``join_path("providers", "claude", "middleware", 0)`` -> ``providers.claude.middleware[0]``."""
    out = base
    for part in parts:
        text = str(part)
        if isinstance(part, int) or text.isdigit():
            out += f"[{text}]"
        else:
            out = f"{out}.{text}" if out else text
    return out


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str] | None:
    # Follow nested models along the error location to list the keys allowed there.
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = fields[part].annotation
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def _secret_values(obj: Any) -> Iterator[str]:
    if isinstance(obj, SecretStr):
        value = obj.get_secret_value()
        if value:
            yield value
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _secret_values(getattr(obj, name, None))
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _secret_values(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _secret_values(v)


def scrub(text: str, config: Any) -> str:
    """``text`` with every secret value found in ``config`` masked."""
    for secret in _secret_values(config):
        text = text.replace(secret, "**********")
    return text


@dataclass(frozen=True)
class PluginType:
    """One registered type: what ``type: <name>`` means in a config block of ``kind``."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config_model: type[BaseModel] | None
    #: Name of the plugin that registered it.
    plugin: str
    package: str | None = None
    version: str | None = None


class Registry:
    """The registered types of one kind (providers, storages or middlewares)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._types: dict[str, PluginType] = {}
        #: Names of disabled plugins, mentioned when a type is unknown.
        self.disabled: list[str] = []

    def get(self, name: str) -> PluginType | None:
        """The type registered as ``name``, or None."""
        return self._types.get(name)

    def names(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[PluginType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def _add(self, item: PluginType) -> None:
        taken = self._types.get(item.name)
        if taken is not None:
            raise PluginError(
                f"plugin {item.plugin!r} (package {item.package or 'unknown'}) registers"
                f" {self.kind} type {item.name!r}, which plugin {taken.plugin!r}"
                f" (package {taken.package or 'unknown'}) already registered"
            )
        self._types[item.name] = item

    def unknown(self, name: str, *, key_path: str = "") -> ConfigError:
        """The error for a type nobody registered: lists the known ones, hints installs."""
        msg = f"unknown {self.kind} type {name!r}; known: {', '.join(self.names()) or 'none'}"
        package = KNOWN_EXTERNAL.get((self.kind, name))
        if package:
            msg += f"; to use {name!r}: pip install {package}"
        if self.disabled:
            msg += f" (disabled plugins: {', '.join(sorted(self.disabled))})"
        return ConfigError(msg, key_path=key_path or None)

    def require(self, name: str, *, key_path: str = "") -> PluginType:
        """The type registered as ``name``; ``ConfigError`` naming the known ones if none."""
        item = self._types.get(name)
        if item is None:
            raise self.unknown(name, key_path=key_path)
        return item

    def validate(
        self,
        name: str,
        options: Mapping[str, Any] | BaseModel | None = None,
        *,
        key_path: str = "",
    ) -> BaseModel | None:
        """Validate a block's options with the type's config model.

        A ``type`` key in ``options`` is accepted and dropped unless the model has that
        field. Errors are ``ConfigError`` with the key path; they never echo values.
        """
        item = self.require(name, key_path=key_path)
        model = item.config_model
        if isinstance(options, BaseModel):
            if model is not None and isinstance(options, model):
                return options
            options = options.model_dump()
        data = dict(options or {})
        if model is None:
            data.pop("type", None)
            if data:
                raise ConfigError(
                    f"{self.kind} type {name!r} takes no options, got: {', '.join(sorted(data))}",
                    key_path=key_path or None,
                )
            return None
        if "type" not in model.model_fields:
            data.pop("type", None)
        elif data.get("type") is None:
            data["type"] = name
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            msg, path = format_validation_error(exc, key_path, model)
            raise ConfigError(msg, key_path=path or None) from None

    def create(
        self,
        name: str,
        options: Mapping[str, Any] | BaseModel | None = None,
        *,
        key_path: str = "",
    ) -> Any:
        """Validate ``options`` and build the instance: ``factory(config)`` or ``factory()``.

        A factory failing with anything but a ``LangSwarmError`` becomes a ``PluginError``
        naming the plugin (with secret values masked).
        """
        item = self.require(name, key_path=key_path)
        config = self.validate(name, options, key_path=key_path)
        try:
            return item.factory() if config is None else item.factory(config)
        except LangSwarmError:
            raise
        except Exception as exc:
            detail = scrub(f"{type(exc).__name__}: {exc}", config)
            raise PluginError(
                f"{self.kind} type {name!r} (plugin {item.plugin!r}) failed to start: {detail}"
            ) from exc
