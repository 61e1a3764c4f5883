"""Small pieces the built-in middlewares share: directions and code-first config building."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from langswarm_runtime.errors import ConfigError

__all__ = ["BOTH_DIRECTIONS", "Direction", "build_config", "session_attr"]

#: ``outgoing`` is user -> provider, ``incoming`` is provider -> user.
Direction = Literal["outgoing", "incoming"]
BOTH_DIRECTIONS: tuple[Direction, ...] = ("outgoing", "incoming")

_C = TypeVar("_C", bound=BaseModel)


def build_config(model: type[_C], config: _C | None, options: dict[str, Any], name: str) -> _C:
    """The config a middleware runs with: ``config`` as given (from YAML, already validated)
    or built from keyword options (code-first). Bad options become a one-line ConfigError."""
    if config is not None:
        if options:
            raise ConfigError(f"{name}: pass either a config object or keyword options, not both")
        if not isinstance(config, model):
            raise ConfigError(
                f"{name}: expected {model.__name__}, got {type(config).__name__}"
            )
        return config
    try:
        return model(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "options"
        raise ConfigError(f"{first.get('msg', 'invalid value')}", key_path=f"{name}.{where}") from None


def session_attr(session: object, attr: str) -> Any:
    """``session.<attr>`` or None: middlewares also run with stand-in sessions in tests."""
    return getattr(session, attr, None)
