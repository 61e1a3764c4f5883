"""Phase 1 of config loading: YAML with line numbers, ``${VAR}`` expansion, and the
pydantic-settings merge of the file with ``LANGSWARM_...`` environment variables.

Private to ``langswarm_runtime.config``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.registry import format_validation_error, join_path
from langswarm_runtime.yaml_loader import (
    INT_MAX,
    INT_MIN,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    parse_yaml,
    too_deep,
)

__all__ = [
    "ENV_PREFIX",
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "Locator",
    "expand_vars",
    "parse_yaml",
    "read_settings",
    "too_deep",
]

ENV_PREFIX = "LANGSWARM_"
_NESTING = "__"
#: Variables with our prefix that are not config keys.
_NOT_KEYS = {"CONFIG", "LOAD_PLUGINS", "TRACE_PLUGINS"}

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Locator:
    """Maps key paths to the YAML line or the environment variable that set them."""

    def __init__(self, file: str | None, lines: Mapping[str, int]) -> None:
        self.file = file
        self.lines = dict(lines)
        self.env_paths: dict[str, str] = {}

    def _prefixes(self, path: str) -> list[str]:
        out = [path]
        while path:
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
            out.append(path)
        return out

    def where(self, path: str | None) -> tuple[int | None, str | None]:
        """(line, environment variable) for ``path``: the nearest enclosing key wins."""
        for prefix in self._prefixes(path or ""):
            if prefix in self.env_paths:
                return None, self.env_paths[prefix]
            if prefix in self.lines:
                return self.lines[prefix], None
        return None, None

    def error(self, message: str, path: str | None) -> ConfigError:
        line, var = self.where(path)
        if var is not None:
            message += f" (set by environment variable {var})"
        return ConfigError(message, file=self.file, key_path=path or None, line=line)

    def relocate(self, exc: ConfigError) -> ConfigError:
        """``exc`` with this file and the line of its key path filled in."""
        if exc.file is not None:
            return exc
        return self.error(exc.message, exc.key_path)

    def error_from_validation(
        self, exc: ValidationError, base: str, model: type[BaseModel] | None
    ) -> ConfigError:
        message, path = format_validation_error(exc, base, model)
        return self.error(message, path)


# -- ${VAR} ------------------------------------------------------------------------------
def expand_vars(data: Any, environ: Mapping[str, str], locator: Locator, path: str = "") -> Any:
    """Expand ``${VAR}``, ``${VAR:-default}`` (unset or empty) and ``${VAR-default}``
    (unset) in every string value; ``$${`` is a literal ``${``. A value that is exactly one
    reference and expands to the empty string becomes null (so ``base_url: ${X:-}`` means
    "not set").

    Expansion is one pass: a variable's value is inserted as it is, never expanded again
    (so a value that mentions itself cannot loop). All substituted values together are at
    most ``MAX_FILE_BYTES`` characters, so a huge variable used many times cannot blow up.
    """
    return _expand(data, environ, locator, path, [0])


def _expand(
    data: Any, environ: Mapping[str, str], locator: Locator, path: str, used: list[int]
) -> Any:
    if isinstance(data, dict):
        return {k: _expand(v, environ, locator, join_path(path, k), used)
                for k, v in data.items()}
    if isinstance(data, list):
        return [_expand(v, environ, locator, join_path(path, i), used)
                for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

    def substitute(value: str) -> str:
        used[0] += len(value)
        if used[0] > MAX_FILE_BYTES:
            raise locator.error(
                f"${{VAR}} expansion produces more than {MAX_FILE_BYTES >> 20} MiB of text",
                path,
            )
        return value

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            raise locator.error("unclosed '${' in value (write '$${' for a literal)", path)
        name_match = _NAME.match(body)
        if name_match is None:
            raise locator.error(f"malformed reference ${{{body}}}: expected ${{NAME}}", path)
        name, rest = name_match.group(0), body[name_match.end():]
        value = environ.get(name)
        if rest.startswith(":-"):
            return substitute(value if value else rest[2:])
        if rest.startswith("-"):
            return substitute(value if value is not None else rest[1:])
        if rest:
            raise locator.error(f"malformed reference ${{{body}}}: use ${{{name}:-default}}",
                                path)
        if value is None:
            raise locator.error(
                f"environment variable {name} is not set (write ${{{name}:-default}} for a"
                " default)",
                path,
            )
        return substitute(value)

    result = _REF.sub(replace, data)
    if result == "" and _REF.fullmatch(data):
        return None
    return result


# -- pydantic-settings -------------------------------------------------------------------
_CURRENT: ContextVar[tuple[dict[str, Any], Mapping[str, str]]] = ContextVar("swarm_yaml")


class _YamlSource(PydanticBaseSettingsSource):
    """The parsed (and expanded) swarm.yaml as a settings source."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _CURRENT.get()[0]
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_CURRENT.get()[0])


class _EnvSource(EnvSettingsSource):
    """``LANGSWARM_...`` variables from the given mapping instead of ``os.environ``."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = {
            k: v for k, v in _CURRENT.get()[1].items()
            if not (k.upper().startswith(ENV_PREFIX) and k.upper()[len(ENV_PREFIX):] in _NOT_KEYS)
        }
        # What pydantic-settings does with os.environ, on our mapping.
        return {k if self.case_sensitive else k.lower(): v for k, v in env.items()}


def _settings_class(shape: type[BaseModel]) -> type[BaseSettings]:
    cached = _SETTINGS.get(shape)
    if cached is not None:
        return cached

    class Settings(shape, BaseSettings):  # type: ignore[misc, valid-type]
        model_config = SettingsConfigDict(
            env_prefix=ENV_PREFIX, env_nested_delimiter=_NESTING, case_sensitive=False,
            extra="forbid",
        )

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], *args: Any, **kwargs: Any
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # Order is priority: environment over the file.
            return (_EnvSource(settings_cls), _YamlSource(settings_cls))

    Settings.__name__ = shape.__name__
    _SETTINGS[shape] = Settings
    return Settings


_SETTINGS: dict[type[BaseModel], type[BaseSettings]] = {}


def _env_paths(environ: Mapping[str, str]) -> dict[str, str]:
    """key path -> variable, for every ``LANGSWARM_`` variable that sets a key."""
    out: dict[str, str] = {}
    for var in environ:
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or upper[len(ENV_PREFIX):] in _NOT_KEYS:
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX):].split(_NESTING) if p]
        if parts:
            out[join_path("", *parts)] = var
    return out


def read_settings(
    shape: type[BaseModel], data: dict[str, Any], environ: Mapping[str, str], locator: Locator
) -> BaseModel:
    """Merge ``data`` (the file) with the environment and validate against ``shape``."""
    locator.env_paths = _env_paths(environ)
    _check_overrides(environ, locator.file)
    token = _CURRENT.set((data, environ))
    try:
        settings = _settings_class(shape)()
        return shape.model_validate(settings.model_dump(exclude_unset=False))
    except ValidationError as exc:
        raise locator.error_from_validation(exc, "", shape) from None
    except SettingsError as exc:
        # pydantic-settings names the field (never the value): point at the variable.
        found = re.search(r'field "([^"]+)"', str(exc))
        field = found.group(1) if found else None
        variable = f"{ENV_PREFIX}{field.upper()}" if field else "a LANGSWARM_ variable"
        raise ConfigError(
            f"cannot parse environment variable {variable}: complex values must be JSON",
            key_path=field,
        ) from None
    except (RecursionError, MemoryError, ValueError) as exc:  # _check_overrides prevents them
        raise ConfigError(
            f"cannot read the LANGSWARM_ environment variables ({type(exc).__name__})",
            file=locator.file,
        ) from None
    finally:
        _CURRENT.reset(token)


class _TooBig(Exception):
    pass


def _json_int(text: str) -> int:
    if len(text) > 20 or not INT_MIN <= int(text) <= INT_MAX:
        raise _TooBig("integer too large (the limit is 64 bits)")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _TooBig("number too large for a float")
    return value


def _check_overrides(environ: Mapping[str, str], file: str | None) -> None:
    """Refuse a ``LANGSWARM_`` value the file could not hold: larger than a config file,
    or JSON nested deeper, or with a number out of range. pydantic-settings decodes JSON
    values itself, without limits; checked here first, its decoding is safe."""
    for var, value in environ.items():
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or upper[len(ENV_PREFIX):] in _NOT_KEYS:
            continue
        if len(value) > MAX_FILE_BYTES:
            raise ConfigError(
                f"environment variable {var} is larger than {MAX_FILE_BYTES >> 20} MiB",
                file=file,
            )
        if value.lstrip()[:1] not in ("{", "["):
            continue
        try:
            decoded = json.loads(value, parse_int=_json_int, parse_float=_json_float)
        except _TooBig as exc:
            raise ConfigError(f"environment variable {var}: {exc}", file=file) from None
        except RecursionError:
            decoded = None
        except ValueError:
            continue  # not JSON: pydantic-settings reports it, naming the variable
        if decoded is None or too_deep(decoded):
            raise ConfigError(
                f"environment variable {var}: JSON nested more than {MAX_DEPTH} levels deep",
                file=file,
            )
