"""What makes a history portable across providers: pure functions, no I/O.

Before a request goes to an adapter, the session passes the messages through
:func:`for_provider`: reasoning parts another provider (or model family) produced are
left out, because their opaque payloads (signatures, encrypted content) mean nothing
elsewhere and some APIs reject them; and tool-call ids are rewritten where the target
accepts only ids of its own form (:func:`rewrite_call_id`). The rewrite is a pure
function of the id, so a call and its result always get the same new id, in every
request, in every process, and the stored history keeps the ids the providers made.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from functools import lru_cache

from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import ReasoningPart, ToolCall, ToolResult

__all__ = ["for_provider", "model_family", "rewrite_call_id"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: A trailing snapshot date (``-2025-08-07``, ``-20250807``) or ``-latest``.
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)$")
_LENGTH = re.compile(r"\{(\d+)\}\$?$")


def model_family(model: str | None) -> str:
    """The model name without a snapshot date or ``-latest``: reasoning made by
    ``gpt-5-2025-08-07`` goes back to ``gpt-5``, not to ``gpt-5-mini``."""
    return _SNAPSHOT.sub("", (model or "").strip().lower())


@lru_cache(maxsize=4096)
def rewrite_call_id(call_id: str, pattern: str | None) -> str:
    """``call_id`` when it matches ``pattern`` (or there is none), else an id made of
    letters and digits derived from its sha256: as long as the pattern's ``{N}`` says
    (Mistral: 9), or 24 characters."""
    if pattern is None or re.fullmatch(pattern, call_id):
        return call_id
    found = _LENGTH.search(pattern.rstrip("$"))
    length = int(found.group(1)) if found else 24
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest(), "big")
    chars: list[str] = []
    while len(chars) < length:
        number, rest = divmod(number, 62)
        chars.append(_ALPHABET[rest])
    new = "".join(chars)
    if not re.fullmatch(pattern, new):
        raise ValueError(f"no id of the form {pattern!r} can be derived")
    return new


def for_provider(
    messages: Iterable[Message],
    *,
    provider: str,
    model: str | None,
    wire_call_id: Callable[[str], str] | None = None,
) -> list[Message]:
    """The messages as ``provider`` (its type name) running ``model`` may receive them
    (see the module docstring). Messages without such parts are passed as they are."""
    family = model_family(model)
    out: list[Message] = []
    for message in messages:
        if not message.parts:
            out.append(message)
            continue
        parts = []
        changed = False
        for part in message.parts:
            if isinstance(part, ReasoningPart):
                if part.provider != provider or model_family(part.model) != family:
                    changed = True
                    continue
            elif wire_call_id is not None and isinstance(part, ToolCall):
                new_id = wire_call_id(part.id)
                if new_id != part.id:
                    part = part.model_copy(update={"id": new_id})
                    changed = True
            elif wire_call_id is not None and isinstance(part, ToolResult):
                new_id = wire_call_id(part.call_id)
                if new_id != part.call_id:
                    part = part.model_copy(update={"call_id": new_id})
                    changed = True
            parts.append(part)
        if changed:
            message = message.model_copy(update={"parts": parts})
        out.append(message)
    return out
