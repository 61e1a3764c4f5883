"""The deterministic "model" behind the offline ``echo`` provider and every route of the
provider emulator, so tests and offline demos see the same behaviour everywhere
(docs/testing.md lists the rules).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "chained_calls",
    "count_words",
    "media_note",
    "reasoning_for",
    "schema_instance",
    "signature_of",
    "structured_reply",
    "tool_answer",
    "tool_calls_asked",
]


def count_words(*texts: str | None) -> int:
    """Deterministic 'token' count: whitespace-separated words."""
    return sum(len(t.split()) for t in texts if t)


# Rules:
# - with tools offered, each line ``call NAME {json}`` of the newest user message asks for
#   tool NAME with those arguments (several lines: parallel calls);
# - tool results make it answer ``tool NAME returned CONTENT`` (joined by "; "), except
#   that results whose content is itself ``call NAME {json}`` lines naming offered tools
#   make it call those (so a test or benchmark can chain rounds);
# - media parts are acknowledged in the reply: `` [image/png 68 bytes]`` or a url;
# - with a JSON schema asked for, ``json {...}`` returns that text as it is (to test
#   replies that do not validate), anything else an instance made from the schema;
# - with reasoning asked for, a reasoning block ``thought about: TEXT`` whose signature
#   the emulator checks when it is replayed.

_CALL_LINE = re.compile(r"^call ([A-Za-z0-9_.-]+)(?: (\{.*\}))?$")


def tool_calls_asked(text: str, offered: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls a user message asks for: ``(name, arguments)`` per line
    ``call NAME {json}`` naming an offered tool."""
    names = set(offered)
    calls: list[tuple[str, dict[str, Any]]] = []
    if not names:
        return calls
    for line in text.splitlines():
        found = _CALL_LINE.match(line.strip())
        if found and found.group(1) in names:
            try:
                arguments = json.loads(found.group(2) or "{}")
            except ValueError:
                arguments = {"raw": found.group(2)}
            calls.append((found.group(1), arguments if isinstance(arguments, dict) else {}))
    return calls


def chained_calls(
    results: Iterable[tuple[str | None, str]], offered: Iterable[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The calls tool results ask for (see the rules above); empty: answer in text."""
    names = list(offered)
    calls: list[tuple[str, dict[str, Any]]] = []
    for _, content in results:
        calls.extend(tool_calls_asked(content, names))
    return calls


def tool_answer(results: Iterable[tuple[str | None, str]]) -> str:
    """The answer to tool results: ``tool NAME returned CONTENT``, joined by "; "."""
    return "; ".join(f"tool {name or 'unknown'} returned {content}" for name, content in results)


def media_note(items: Iterable[tuple[str, int | None, str | None]]) -> str:
    """What the reply says about the media it was sent: `` [image/png 68 bytes]`` per
    ``(media_type, size, url)``; empty without media."""
    notes = [
        f"[{kind} {url}]" if url else f"[{kind} {size} bytes]" for kind, size, url in items
    ]
    return (" " + " ".join(notes)) if notes else ""


def schema_instance(schema: Any, text: str) -> Any:
    """A value that satisfies a (simple) JSON Schema: strings are ``text``, numbers the
    word count of ``text``, booleans true, arrays one item, objects every property."""
    if not isinstance(schema, dict):
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], text)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: schema_instance(sub, text) for name, sub in props.items()}
    if kind == "array":
        return [schema_instance(schema.get("items") or {}, text)]
    if kind == "integer":
        return count_words(text)
    if kind == "number":
        return float(count_words(text))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


def structured_reply(schema: Any, text: str) -> str:
    """The JSON text of a reply asked for with a schema (see the rules above)."""
    if text.startswith("json "):
        return text[5:]
    return json.dumps(schema_instance(schema, text), separators=(",", ":"))


def signature_of(text: str) -> str:
    """The signature the emulator gives a reasoning text (and checks on replay)."""
    return "sig-" + hashlib.sha256(("emulator:" + text).encode()).hexdigest()[:32]


def reasoning_for(text: str) -> tuple[str, str]:
    """``(reasoning text, signature)`` of a reply to ``text``."""
    thought = f"thought about: {text}"
    return thought, signature_of(thought)
