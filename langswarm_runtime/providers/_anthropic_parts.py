"""Our messages (with their parts) to and from the Anthropic Messages API's content
blocks. Pure functions, no I/O and no SDK import.

The shapes (the ``anthropic`` SDK's ``*BlockParam`` types):

- text is ``{type: text}``; an image is ``{type: image, source}`` and a document (PDF or
  plain text) ``{type: document, source}``, the source being base64 data or a URL;
- the assistant's tool calls are ``{type: tool_use, id, name, input}`` blocks; their
  results go back in the *next user message* as ``{type: tool_result, tool_use_id,
  content, is_error}`` blocks, first in that message and in the order of the calls
  (consecutive tool messages become one user message);
- reasoning is ``{type: thinking, thinking, signature}`` (or ``{type: redacted_thinking,
  data}``), replayed exactly as it came: the signature travels in ``ReasoningPart.data``;
- a tool is ``{name, description, input_schema}``; structured output is
  ``output_config: {format: {type: json_schema, schema}}``.

Messages that are only text keep the plain-string content they always had.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langswarm_runtime.errors import ProviderBadResponse
from langswarm_runtime.providers._common import SUMMARY_PREFIX
from langswarm_runtime.providers._kept import KeptHistories, KeptTurns
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    Part,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.tools.spec import ToolSpec

__all__ = [
    "PROVIDER",
    "BlockStream",
    "mark_cache",
    "output_config",
    "parts_from_blocks",
    "thinking_block",
    "to_messages",
    "tools_param",
]

Wire = dict[str, Any]

#: What reasoning parts made here record as their provider.
PROVIDER = "anthropic"
#: Images the API takes as base64 data.
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
#: Blocks that carry no ``cache_control`` (the API refuses it on thinking blocks).
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})


# ---------------------------------------------------------------------------- messages


#: Translations of recent histories, and of their whole turns (see ``_kept``).
_HISTORIES: KeptHistories[tuple[list[str], list[Wire], bool]] = KeptHistories()
_TURNS: KeptTurns[Wire, list[str]] = KeptTurns()


def to_messages(
    messages: Iterable[Message], *, history: Sequence[Message] | None = None
) -> tuple[list[str], list[Wire]]:
    """``(system notes, wire messages)`` for ``messages``, oldest first. The Messages API
    has no system role: stored system messages and summaries come back as notes for
    ``system=``. Consecutive messages of one role are merged into one (tool results
    into the user message that answers the calls), each run of tool results ordered
    as the calls of the assistant message before it.

    ``history``: the request's history list, when ``messages`` starts with it. A tool
    loop sends the same list on every call of a turn, so its translation is kept (by
    list object) and only the turn's messages are translated on the later calls. The
    kept wire messages are shared: what follows replaces a message's ``content`` in a
    copy of it, never changes them (see ``mark_cache``)."""
    messages = list(messages)
    n = _HISTORIES.prefix(messages, history)
    if history and n:

        def make() -> tuple[list[str], list[Wire], bool]:
            return _join_turns(_TURNS.pieces(history, "anthropic", _turn_piece))

        kept_notes, kept, _ = _HISTORIES.get(history, "anthropic", make, keep=lambda v: v[2])
        notes, out = list(kept_notes), list(kept)
        if out:
            out[-1] = dict(out[-1])  # the turn's first message may merge into it
        _translate(messages[n:], notes, out)
        _order_results(out, max(0, len(kept) - 2))
        return notes, out
    notes, out = [], []
    _translate(messages, notes, out)
    _order_results(out, 0)
    return notes, out


def _turn_piece(messages: Sequence[Message]) -> tuple[list[Wire], list[str]]:
    """One whole turn's wire messages and notes, translated on its own."""
    notes: list[str] = []
    out: list[Wire] = []
    _translate(messages, notes, out)
    _order_results(out, 0)
    return out, notes


def _join_turns(
    pieces: list[tuple[list[Wire], list[str], bool]],
) -> tuple[list[str], list[Wire], bool]:
    """The whole history's ``(notes, wire, keepable)`` from its turns translated one by
    one: what ``_translate`` and ``_order_results`` give for the whole list. A turn
    whose first wire message has the role of the turn before's last (that turn ended on
    the user's side, or this one's user message had nothing to send) is merged into it,
    and the results at each join are ordered as the calls before them. Kept wire
    messages are never changed: what a join changes is a new dict."""
    notes: list[str] = []
    out: list[Wire] = []
    keepable = True
    for wire, piece_notes, kept in pieces:
        notes += piece_notes
        keepable = keepable and kept
        if not wire:
            continue
        join = len(out)
        if out and out[-1]["role"] == wire[0]["role"]:
            join -= 1  # merged: its pair with the next message may order anew too
            content = _blocks(out[-1]["content"]) + _blocks(wire[0]["content"])
            out[-1] = {**out[-1], "content": content}
            out += wire[1:]
            if len(wire) > 1:
                _order_pair(out, join + 1)
        else:
            out += wire
        if join > 0:
            _order_pair(out, join)
    return notes, out, keepable


def _order_pair(messages: list[Wire], i: int) -> None:
    """``_order_results`` for the one pair ``messages[i - 1], messages[i]``, replacing
    ``messages[i]`` with a reordered copy (never changing it) when its order changes."""
    before, message = messages[i - 1], messages[i]
    if before["role"] != "assistant" or not isinstance(message["content"], list):
        return
    probe = [before, {**message}]
    _order_results(probe, 0)
    if probe[1]["content"] != message["content"]:
        messages[i] = probe[1]


def _translate(messages: Iterable[Message], notes: list[str], out: list[Wire]) -> None:
    for message in messages:
        if message.role == "system":
            notes.append(message.content)
            continue
        if message.role == "summary":
            notes.append(SUMMARY_PREFIX + message.content)
            continue
        if message.role == "tool":
            wire: Wire = {
                "role": "user",
                "content": [_tool_result(r) for r in message.tool_results],
            }
        elif message.role == "assistant":
            wire = {"role": "assistant", "content": _assistant_content(message)}
        else:
            wire = {"role": "user", "content": _user_content(message)}
        if not wire["content"]:
            continue  # nothing the API can take (e.g. only reasoning it cannot verify)
        if out and out[-1]["role"] == wire["role"]:
            out[-1]["content"] = _blocks(out[-1]["content"]) + _blocks(wire["content"])
        else:
            out.append(wire)


def _blocks(content: str | list[Wire]) -> list[Wire]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _order_results(messages: list[Wire], start: int) -> None:
    """Put the tool results of each user message first, in the order of the calls of
    the assistant message before it (the API pairs them by position as well as id);
    from ``messages[start]`` on."""
    for before, message in itertools.pairwise(messages[start:]):
        if before["role"] != "assistant" or not isinstance(message["content"], list):
            continue
        content = before["content"]
        calls = [b["id"] for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
        if not calls:
            continue
        rank = {call_id: i for i, call_id in enumerate(calls)}
        blocks = message["content"]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        rest = [b for b in blocks if b.get("type") != "tool_result"]
        results.sort(key=lambda b: rank.get(b["tool_use_id"], len(rank)))
        message["content"] = results + rest


def _user_content(message: Message) -> str | list[Wire]:
    if not message.parts:
        return message.content
    blocks: list[Wire] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image(part))
        elif isinstance(part, FilePart):
            blocks.append(_document(part))
        elif isinstance(part, ToolResult):
            blocks.append(_tool_result(part))
    return blocks


def _assistant_content(message: Message) -> str | list[Wire]:
    if not message.parts:
        return message.content
    blocks: list[Wire] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCall):
            blocks.append(
                {"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments}
            )
        elif isinstance(part, ReasoningPart):
            block = thinking_block(part)
            if block is not None:
                blocks.append(block)
    return blocks


def thinking_block(part: ReasoningPart) -> Wire | None:
    """The block a reasoning part replays as; None when it carries nothing the API can
    verify (thinking is only taken back with its signature)."""
    data = part.data or {}
    if isinstance(data.get("redacted"), str):
        return {"type": "redacted_thinking", "data": data["redacted"]}
    if isinstance(data.get("signature"), str):
        return {"type": "thinking", "thinking": part.text, "signature": data["signature"]}
    return None


def _tool_result(result: ToolResult) -> Wire:
    block: Wire = {"type": "tool_result", "tool_use_id": result.call_id, "content": result.content}
    if result.is_error:
        block["is_error"] = True
    return block


def _source(part: ImagePart | FilePart) -> Wire:
    if part.data is not None:
        data = base64.b64encode(part.data).decode("ascii")
        return {"type": "base64", "media_type": part.media_type, "data": data}
    if part.url is not None:
        return {"type": "url", "url": part.url}
    raise ValueError(f"the {part.type} {part.sha256} has neither its bytes nor a URL")


def _image(part: ImagePart) -> Wire:
    if part.data is not None and part.media_type not in _IMAGE_TYPES:
        return _note(part, "an image type the API does not take")
    return {"type": "image", "source": _source(part)}


def _document(part: FilePart) -> Wire:
    """PDFs as base64 or URL documents, plain text as a text document; any other file
    as a note saying what was left out (so a history holding one still goes through)."""
    block: Wire
    if part.media_type == "application/pdf":
        block = {"type": "document", "source": _source(part)}
    elif part.media_type.startswith("text/") and part.data is not None:
        try:
            text = part.data.decode("utf-8")
        except UnicodeDecodeError:
            return _note(part, "not UTF-8 text")
        block = {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": text},
        }
    else:
        return _note(part, "a file type the API does not take")
    if part.name:
        block["title"] = part.name
    return block


def _note(part: ImagePart | FilePart, why: str) -> Wire:
    name = getattr(part, "name", None) or part.type
    where = part.url or f"{part.size} bytes"
    return {"type": "text", "text": f"[{name} ({part.media_type}, {where}) not sent: {why}]"}


def mark_cache(message: Wire, marker: Wire) -> None:
    """Put ``cache_control`` on the last block of ``message`` that can carry one, in new
    blocks: ``message`` must be the caller's own dict (``to_messages`` may share its
    content with later calls)."""
    content = message["content"]
    if isinstance(content, str):
        message["content"] = [{"type": "text", "text": content, "cache_control": marker}]
        return
    for i in range(len(content) - 1, -1, -1):
        if content[i].get("type") not in _UNCACHEABLE:
            # A new list and block: the blocks may be shared with a kept translation.
            marked = {**content[i], "cache_control": marker}
            message["content"] = [*content[:i], marked, *content[i + 1 :]]
            return


# ------------------------------------------------------------------- tools and formats


def tools_param(tools: Sequence[ToolSpec]) -> list[Wire]:
    """Tool definitions: ``{name, description, input_schema}``."""
    out: list[Wire] = []
    for spec in tools:
        schema = dict(spec.parameters)
        schema.setdefault("type", "object")
        tool: Wire = {"name": spec.name, "input_schema": schema}
        if spec.description:
            tool["description"] = spec.description
        out.append(tool)
    return out


def output_config(
    response_format: dict[str, Any],
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Wire:
    """``output_config`` asking for JSON following ``{"name", "schema", "strict"}``'s
    schema; ``transform`` makes a schema what the API accepts (the SDK's
    ``transform_schema``: ``additionalProperties: false`` on objects, and so on)."""
    schema = response_format["schema"]
    if transform is not None:
        schema = transform(schema)
    return {"format": {"type": "json_schema", "schema": schema}}


# ------------------------------------------------------------------ reading replies


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def parts_from_blocks(blocks: Iterable[Any], *, model: str | None) -> tuple[str, list[Part]]:
    """``(text, parts)`` of a reply's content blocks (SDK objects or dicts), in order:
    text, tool calls and reasoning (its signature kept for the replay)."""
    parts: list[Part] = []
    for block in blocks:
        kind = _get(block, "type")
        if kind == "text":
            text = _get(block, "text")
            if not isinstance(text, str):
                raise ProviderBadResponse("text block without text", provider=PROVIDER)
            if text:
                parts.append(TextPart(text=text))
        elif kind == "tool_use":
            parts.append(_tool_call(_get(block, "id"), _get(block, "name"), _get(block, "input")))
        elif kind == "thinking":
            parts.append(
                _reasoning(_get(block, "thinking") or "", model, signature=_get(block, "signature"))
            )
        elif kind == "redacted_thinking":
            data = _get(block, "data")
            if isinstance(data, str):
                parts.append(ReasoningPart(provider=PROVIDER, model=model, data={"redacted": data}))
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    return text, parts


def _tool_call(ident: Any, name: Any, arguments: Any) -> ToolCall:
    if not isinstance(ident, str) or not ident or not isinstance(name, str) or not name:
        raise ProviderBadResponse("tool_use block without an id or name", provider=PROVIDER)
    if isinstance(arguments, str):  # streamed input arrives as JSON text
        try:
            arguments = json.loads(arguments) if arguments else {}
        except ValueError:
            arguments = {"raw": arguments}
    if not isinstance(arguments, dict):
        arguments = {"raw": arguments}
    return ToolCall(id=ident, name=name, arguments=arguments)


def _reasoning(text: str, model: str | None, *, signature: Any) -> ReasoningPart:
    data = {"signature": signature} if isinstance(signature, str) and signature else None
    return ReasoningPart(text=text, provider=PROVIDER, model=model, data=data)


class BlockStream:
    """A reply's content blocks put together from stream events
    (``content_block_start`` / ``_delta`` / ``_stop``, by index)."""

    def __init__(self) -> None:
        self._blocks: dict[int, dict[str, Any]] = {}

    def start(self, index: int, block: Any) -> None:
        kind = _get(block, "type")
        entry: dict[str, Any] = {"type": kind}
        if kind == "tool_use":
            entry.update(id=_get(block, "id"), name=_get(block, "name"), json="")
            initial = _get(block, "input")
            entry["input"] = initial if isinstance(initial, dict) and initial else None
        elif kind == "thinking":
            entry.update(
                thinking=_get(block, "thinking") or "", signature=_get(block, "signature") or ""
            )
        elif kind == "redacted_thinking":
            entry["data"] = _get(block, "data")
        elif kind == "text":
            entry["text"] = _get(block, "text") or ""
        self._blocks[index] = entry

    def delta(self, index: int, delta: Any) -> str | None:
        """Apply one delta; returns the text it adds to the reply (None: none)."""
        entry = self._blocks.get(index)
        if entry is None:
            raise ProviderBadResponse("delta for a block that never started", provider=PROVIDER)
        kind = _get(delta, "type")
        if kind == "text_delta":
            text = _get(delta, "text")
            if not isinstance(text, str):
                raise ProviderBadResponse("text_delta without text", provider=PROVIDER)
            entry["text"] = entry.get("text", "") + text
            return text
        if kind == "thinking_delta":
            entry["thinking"] = entry.get("thinking", "") + (_get(delta, "thinking") or "")
        elif kind == "signature_delta":
            entry["signature"] = entry.get("signature", "") + (_get(delta, "signature") or "")
        elif kind == "input_json_delta":
            entry["json"] = entry.get("json", "") + (_get(delta, "partial_json") or "")
        return None

    def parts(self, *, model: str | None) -> tuple[str, list[Part]]:
        """``(text, parts)`` of the blocks so far, in index order."""
        blocks: list[Wire] = []
        for _, entry in sorted(self._blocks.items()):
            if entry["type"] == "tool_use":
                arguments = entry["json"] or entry["input"] or {}
                blocks.append({"type": "tool_use", "id": entry["id"], "name": entry["name"],
                               "input": arguments})  # fmt: skip
            else:
                blocks.append(entry)
        return parts_from_blocks(blocks, model=model)
