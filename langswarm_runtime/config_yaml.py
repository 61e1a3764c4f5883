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
#: Limits that keep a hostile or broken file from hanging the loader or exhausting memory.
#: A real swarm.yaml is a few KiB with a few dozen values and a handful of anchors.
MAX_FILE_BYTES = 1 << 20
#: Nesting of mappings and lists, checked while composing (far below Python's recursion
#: limit, so a deep file is an error, never a ``RecursionError``).
MAX_DEPTH = 64
#: Alias dereferences (``*name``) in one file.
MAX_ALIASES = 1_000
#: Values (mappings, lists and scalars) in the file and again after aliases and merge keys
#: are expanded: a "billion laughs" file stops here instead of growing without bound.
MAX_NODES = 10_000
#: Integers are 64-bit signed, as every storage and SDK needs them.
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1
_MERGE_TAG = "tag:yaml.org,2002:merge"
_EXPLICIT_INF_NAN = {".inf", "+.inf", "-.inf", ".nan"}


def parse_yaml(text: str, file: str) -> tuple[Any, dict[str, int]]:
    """Parse one YAML document; returns the data and a key path -> line map.

    Built from the node tree rather than ``safe_load`` so every key keeps its line, a
    duplicate key is an error instead of silently winning, and the limits above hold
    while composing and while expanding aliases. Every problem is a ``ConfigError``.
    """
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"config file is larger than {MAX_FILE_BYTES >> 20} MiB", file=file)
    try:
        loader = _Loader(text, file)
    except yaml.reader.ReaderError as exc:  # the reader checks every character up front
        raise _reader_error(exc, text, file) from None
    except UnicodeEncodeError:  # a lone surrogate: not text any file could hold
        raise ConfigError("malformed YAML: not valid Unicode text", file=file) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        builder = _Builder(loader, file)
        builder.lines[""] = node.start_mark.line + 1
        return builder.build(node, "", 0), builder.lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed YAML"
        raise ConfigError(f"malformed YAML: {what}", file=file, line=line) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {type(exc).__name__}", file=file) from None
    except (RecursionError, MemoryError) as exc:  # the limits should make these unreachable
        raise ConfigError(f"YAML too complex to load ({type(exc).__name__})", file=file) from None
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> ConfigError:
    position = exc.position if isinstance(exc.position, int) else None
    if position is not None and not text.isascii():  # libyaml counts UTF-8 bytes
        position = len(text.encode("utf-8")[:position].decode("utf-8", "ignore"))
    line = text.count("\n", 0, position) + 1 if position is not None else None
    char = exc.character
    what = f"U+{char:04X}" if isinstance(char, int) else "an undecodable byte"
    return ConfigError(f"malformed YAML: character {what} is not allowed in YAML",
                       file=file, line=line)


def _loader_base() -> Any:
    """SafeLoader, with libyaml's scanner and parser where PyYAML has them: the pure-Python
    scanner reads about 250 KiB a second, too slow to refuse a large file quickly. Nodes
    are composed in Python either way, so the limits below hold while composing."""
    try:
        from yaml.cyaml import CParser
    except ImportError:  # PyYAML built without libyaml
        return yaml.SafeLoader

    bases = (yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor,
             yaml.resolver.Resolver)

    class FastSafeLoader(*bases):  # type: ignore[misc]
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return FastSafeLoader


class _Loader(_loader_base()):  # type: ignore[misc]
    """SafeLoader whose composer enforces the depth, alias and node limits as it goes."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self._file = file
        self._depth = 0
        self._aliases = 0
        self._nodes = 0

    def _limit(self, message: str) -> ConfigError:
        line = self.peek_event().start_mark.line + 1
        return ConfigError(message, file=self._file, line=line)

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # The scanner reads a run of `[[[[` ahead of the composer (each one might start a
        # key), in time quadratic in its depth: the depth limit holds here too.
        if self.flow_level >= MAX_DEPTH:
            raise ConfigError(f"YAML nested more than {MAX_DEPTH} levels deep",
                              file=self._file, line=self.get_mark().line + 1)
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise self._limit(f"YAML uses more than {MAX_ALIASES:,} aliases")
            node: yaml.Node = super().compose_node(parent, index)
            return node
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise self._limit(f"YAML has more than {MAX_NODES:,} values")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._limit(f"YAML nested more than {MAX_DEPTH} levels deep")
        try:
            node = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


class _Builder:
    """Turns the node tree into data, expanding aliases and ``<<`` merge keys under the
    same limits (an alias can make a small tree stand for a huge one)."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[str, int] = {}
        self.count = 0
        self.active: set[int] = set()  # nodes being built: an alias back to one is a cycle

    def error(self, message: str, path: str, node: yaml.Node) -> ConfigError:
        return ConfigError(message, file=self.file, key_path=path or None,
                           line=node.start_mark.line + 1)

    def build(self, node: yaml.Node, path: str, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.error(f"YAML expands to more than {MAX_NODES:,} values (aliases or"
                             " merge keys)", path, node)
        if depth > MAX_DEPTH:
            raise self.error(f"YAML nested more than {MAX_DEPTH} levels deep", path, node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if node.tag not in _PLAIN_TAGS:
            # SafeLoader would refuse it; walking the nodes ourselves we must too.
            raise self.error(f"malformed YAML: unsupported tag {node.tag!r}", path, node)
        if id(node) in self.active:
            raise self.error("malformed YAML: an alias refers to a value that contains it",
                             path, node)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path, depth)
            items = []
            for i, item in enumerate(node.value):
                child = join_path(path, i)
                self.lines[child] = item.start_mark.line + 1
                items.append(self.build(item, child, depth + 1))
            return items
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        explicit: set[str] = set()
        merges = [value for key, value in node.value if key.tag == _MERGE_TAG]
        for value_node in merges:
            # `<<: *a` or `<<: [*a, *b]`: keys written here win, then earlier merges.
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in reversed(sources):
                if not isinstance(source, yaml.MappingNode):
                    raise self.error("malformed YAML: '<<' merges mappings only", path, source)
                out.update(self.build(source, path, depth + 1))
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("keys must be plain scalars", file=self.file,
                                  key_path=path or None, line=line)
            key = str(key_node.value)  # the text as typed: `on:` stays "on"
            child = join_path(path, key) if not key.isdigit() else f"{path}.{key}".lstrip(".")
            if key in explicit:
                raise ConfigError(f"duplicate key {key!r}", file=self.file, key_path=child,
                                  line=line)
            explicit.add(key)
            self.lines[child] = line
            out[key] = self.build(value_node, child, depth + 1)
        return out

    def scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        text = str(node.value)
        if node.tag == "tag:yaml.org,2002:int" and len(text) > 100:
            # Refused before conversion: a long (e.g. base-60) integer is slow to build.
            raise self.error("integer too large (the limit is 64 bits)", path, node)
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            raise self.error(f"malformed YAML: not a valid {kind}", path, node) from None
        if isinstance(value, int) and not isinstance(value, bool) and not (
            _INT_MIN <= value <= _INT_MAX
        ):
            raise self.error("integer too large (the limit is 64 bits)", path, node)
        if isinstance(value, float) and not math.isfinite(value) and (
            text.replace("_", "").lower() not in _EXPLICIT_INF_NAN
        ):
            raise self.error("number too large for a float", path, node)
        return value


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
    if len(text) > 20 or not _INT_MIN <= int(text) <= _INT_MAX:
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
        if decoded is None or _depth(decoded) > MAX_DEPTH:
            raise ConfigError(
                f"environment variable {var}: JSON nested more than {MAX_DEPTH} levels deep",
                file=file,
            )


def too_deep(value: Any) -> bool:
    """Mappings and lists nested past ``MAX_DEPTH`` (or containing themselves)."""
    return _depth(value) > MAX_DEPTH


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest
