"""Phase 1 of config loading: YAML with line numbers, ``${VAR}`` expansion, and the
pydantic-settings merge of the file with ``LANGSWARM_...`` environment variables.

Private to ``langswarm_runtime.config``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import yaml
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

__all__ = ["ENV_PREFIX", "Locator", "expand_vars", "parse_yaml", "read_settings"]

ENV_PREFIX = "LANGSWARM_"
_NESTING = "__"
#: Variables with our prefix that are not config keys.
_NOT_KEYS = {"CONFIG", "LOAD_PLUGINS", "TRACE_PLUGINS"}

_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
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


# -- YAML --------------------------------------------------------------------------------
def parse_yaml(text: str, file: str) -> tuple[Any, dict[str, int]]:
    """Parse one YAML document; returns the data and a key path -> line map.

    Built from the node tree rather than ``safe_load`` so every key keeps its line and a
    duplicate key is an error instead of silently winning.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        lines: dict[str, int] = {"": node.start_mark.line + 1}
        return _build(loader, node, "", lines, file, 0), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed YAML"
        raise ConfigError(f"malformed YAML: {what}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {type(exc).__name__}", file=file) from None
    finally:
        loader.dispose()


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: str, lines: dict[str, int], file: str,
    depth: int,
) -> Any:
    if depth > 64:  # recursive aliases would never end
        raise ConfigError("YAML nested too deeply", file=file, key_path=path or None,
                          line=node.start_mark.line + 1)
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
        # SafeLoader would refuse it; walking the nodes ourselves we must too.
        raise ConfigError(f"malformed YAML: unsupported tag {node.tag!r}", file=file,
                          key_path=path or None, line=node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("keys must be plain scalars", file=file,
                                  key_path=path or None, line=line)
            key = str(key_node.value)  # the text as typed: `on:` stays "on"
            child = join_path(path, key) if not key.isdigit() else f"{path}.{key}".lstrip(".")
            if key in out:
                raise ConfigError(f"duplicate key {key!r}", file=file, key_path=child,
                                  line=line)
            lines[child] = line
            out[key] = _build(loader, value_node, child, lines, file, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = join_path(path, i)
            lines[child] = item.start_mark.line + 1
            items.append(_build(loader, item, child, lines, file, depth + 1))
        return items
    return loader.construct_object(node, deep=True)


# -- ${VAR} ------------------------------------------------------------------------------
def expand_vars(data: Any, environ: Mapping[str, str], locator: Locator, path: str = "") -> Any:
    """Expand ``${VAR}``, ``${VAR:-default}`` (unset or empty) and ``${VAR-default}``
    (unset) in every string value; ``$${`` is a literal ``${``. A value that is exactly one
    reference and expands to the empty string becomes null (so ``base_url: ${X:-}`` means
    "not set")."""
    if isinstance(data, dict):
        return {k: expand_vars(v, environ, locator, join_path(path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_vars(v, environ, locator, join_path(path, i)) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data

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
            return value if value else rest[2:]
        if rest.startswith("-"):
            return value if value is not None else rest[1:]
        if rest:
            raise locator.error(f"malformed reference ${{{body}}}: use ${{{name}:-default}}",
                                path)
        if value is None:
            raise locator.error(
                f"environment variable {name} is not set (write ${{{name}:-default}} for a"
                " default)",
                path,
            )
        return value

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
    token = _CURRENT.set((data, environ))
    try:
        settings = _settings_class(shape)()
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
    finally:
        _CURRENT.reset(token)
    return shape.model_validate(settings.model_dump(exclude_unset=False))
