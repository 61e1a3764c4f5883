"""YAML with line numbers, under limits: the first step of loading a swarm.yaml.

Private to ``langswarm_runtime.config``. A hostile or broken file (a "billion laughs" of
aliases, nesting a hundred thousand deep, a NUL byte, a 100,000-digit integer, a file of
gigabytes) is a ``ConfigError`` naming the file and line, reached quickly and in bounded
memory; never a hang, a ``RecursionError`` or a parser's own exception.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.registry import join_path

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "parse_yaml",
    "too_deep",
]

_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}

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
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1
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
        if "maximum nesting depth" in (exc.problem or ""):
            # libyaml 0.2.5 stops a run of `[[[[` at its own depth limit (1000) while
            # scanning ahead, before the composer's check sees a node: the same refusal.
            raise ConfigError(f"YAML nested more than {MAX_DEPTH} levels deep",
                              file=file, line=line) from None  # fmt: skip
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
            INT_MIN <= value <= INT_MAX
        ):
            raise self.error("integer too large (the limit is 64 bits)", path, node)
        if isinstance(value, float) and not math.isfinite(value) and (
            text.replace("_", "").lower() not in _EXPLICIT_INF_NAN
        ):
            raise self.error("number too large for a float", path, node)
        return value


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
