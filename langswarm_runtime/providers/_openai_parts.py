"""Our messages and parts <-> OpenAI Responses API shapes: pure functions, no I/O.

- A user message with parts is one ``message`` item whose content holds ``input_text``,
  ``input_image`` (a data URL or the image's URL) and ``input_file`` (``file_data`` as a
  data URL with a ``filename``, or a ``file_url``) parts; a message of text alone keeps
  the short ``{"role", "content": str}`` form.
- An assistant message becomes its items in order: ``reasoning`` items (replayed only
  with the ``encrypted_content`` OpenAI gave, the only form a stateless request can use),
  a ``message`` for its text, a ``function_call`` per tool call.
- A ``tool`` message becomes one ``function_call_output`` per result.
- Tools are ``{"type": "function", ...}``; a schema the reply must follow is
  ``text.format`` of type ``json_schema``.

Replies come back the other way (:func:`reply_parts`) from the response's output items
as plain dicts (the SDK objects' ``to_dict()``).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langswarm_runtime.errors import ProviderBadResponse
from langswarm_runtime.providers._common import SUMMARY_PREFIX
from langswarm_runtime.providers._kept import KeptHistories, KeptTurns
from langswarm_runtime.providers._openai_style import arguments_json, data_url, parse_arguments
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
    "function_tools",
    "input_items",
    "message_items",
    "reply_parts",
    "strict_format",
    "strict_schema",
    "text_format",
]

Item = dict[str, Any]


#: Translations of recent histories (see ``_kept``).
_HISTORIES: KeptHistories[tuple[list[Item], None, bool]] = KeptHistories()
_TURNS: KeptTurns[Item, None] = KeptTurns()


def input_items(
    messages: Iterable[Message],
    *,
    system_role: str = "system",
    history: Sequence[Message] | None = None,
) -> list[Item]:
    """The Responses ``input`` (or Conversations ``items``) for ``messages``.

    ``history``: the request's history list, when ``messages`` starts with it. Each
    message maps to its own items, so a tool loop's history (the same list on every
    call of a turn) is translated once, kept by list object, and shared (never
    changed) by the later calls; and a new turn's history is put together from the
    kept items of its turns (``KeptTurns``), translating only the newest."""
    messages = list(messages)
    n = _HISTORIES.prefix(messages, history)
    if history and n:

        def make() -> tuple[list[Item], None, bool]:
            return _TURNS.translate(
                history, system_role, lambda turn: (_items(turn, system_role), None), None
            )

        kept, _, _ = _HISTORIES.get(history, system_role, make, keep=lambda v: v[2])
        return [*kept, *_items(messages[n:], system_role)]
    return _items(messages, system_role)


def _items(messages: Iterable[Message], system_role: str) -> list[Item]:
    items: list[Item] = []
    for message in messages:
        items.extend(message_items(message, system_role=system_role))
    return items


def message_items(message: Message, *, system_role: str = "system") -> list[Item]:
    """The input items of one message (see the module docstring)."""
    role = message.role
    if role == "summary":
        return [{"role": system_role, "content": SUMMARY_PREFIX + message.content}]
    if role == "system":
        return [{"role": system_role, "content": message.content}]
    if role == "tool":
        return [_call_output(r) for r in message.tool_results]
    if not message.parts:
        return [{"role": role, "content": message.content}]
    if role == "assistant":
        return _assistant_items(message.parts)
    content = [c for c in (_user_content(p) for p in message.parts) if c is not None]
    return [{"role": role, "content": content}]


def _call_output(result: ToolResult) -> Item:
    return {"type": "function_call_output", "call_id": result.call_id, "output": result.content}


def _user_content(part: Part) -> Item | None:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):  # a data URL, or the image's own URL
        return {"type": "input_image", "image_url": data_url(part), "detail": "auto"}
    if isinstance(part, FilePart):
        if part.url is not None:
            return {"type": "input_file", "file_url": part.url}
        return {"type": "input_file", "filename": _filename(part), "file_data": data_url(part)}
    return None  # reasoning, tool calls and results have no place in a user message


def _filename(part: FilePart) -> str:
    # The API wants a name with inline file data.
    if part.name:
        return part.name
    return "file" + (mimetypes.guess_extension(part.media_type) or "")


def _assistant_items(parts: Iterable[Part]) -> list[Item]:
    items: list[Item] = []
    text: list[str] = []

    def flush() -> None:
        if text:
            items.append({"role": "assistant", "content": "".join(text)})
            text.clear()

    for part in parts:
        if isinstance(part, TextPart):
            text.append(part.text)
            continue
        if isinstance(part, ToolCall):
            flush()
            items.append({"type": "function_call", "call_id": part.id, "name": part.name,
                          "arguments": arguments_json(part.arguments)})  # fmt: skip
        elif isinstance(part, ReasoningPart):
            item = _reasoning_item(part)
            if item is not None:
                flush()
                items.append(item)
    flush()
    return items


def _reasoning_item(part: ReasoningPart) -> Item | None:
    """A reasoning item to replay, or None: without OpenAI's encrypted content the
    reasoning cannot be sent back to a stateless request."""
    data = part.data or {}
    encrypted = data.get("encrypted_content")
    if not isinstance(encrypted, str) or not isinstance(data.get("id"), str):
        return None
    summary = data.get("summary")
    texts = summary if isinstance(summary, list) else ([part.text] if part.text else [])
    return {
        "type": "reasoning",
        "id": data["id"],
        "summary": [{"type": "summary_text", "text": str(t)} for t in texts],
        "encrypted_content": encrypted,
    }


def function_tools(tools: Iterable[ToolSpec]) -> list[Item]:
    """The ``tools`` of a Responses request. Not strict: a tool's schema may have
    optional arguments, which strict mode refuses (the runtime validates arguments)."""
    return [
        {"type": "function", "name": t.name, "description": t.description,
         "parameters": t.parameters, "strict": False}
        for t in tools
    ]  # fmt: skip


def strict_schema(schema: Any) -> dict[str, Any] | None:
    """``schema`` in the form strict structured output takes (every object closed with
    ``additionalProperties: false``), or None when it cannot be strict: an object with
    properties it does not require (strict mode requires them all)."""
    if not isinstance(schema, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            if not isinstance(value, dict):
                return None
            sub: dict[str, Any] = {}
            for name, inner in value.items():
                converted = strict_schema(inner)
                if converted is None:
                    return None
                sub[name] = converted
            out[key] = sub
        elif key in ("items", "not", "additionalProperties") and isinstance(value, dict):
            converted = strict_schema(value)
            if converted is None:
                return None
            out[key] = converted
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            converted_list = [strict_schema(v) for v in value]
            if any(c is None for c in converted_list):
                return None
            out[key] = converted_list
        else:
            out[key] = value
    is_object = out.get("type") == "object" or "properties" in out
    if is_object:
        props = out.get("properties") or {}
        if set(props) - set(out.get("required") or []):
            return None
        out.setdefault("additionalProperties", False)
    return out


def strict_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name", "schema", "strict"}`` as OpenAI takes it (Responses and Chat
    Completions): a name of the allowed characters, and a strict schema in strict form,
    or not strict when it cannot be."""
    schema = response_format["schema"]
    strict = bool(response_format.get("strict"))
    if strict:
        converted = strict_schema(schema)
        if converted is None:
            strict = False
        else:
            schema = converted
    return {"name": _format_name(response_format.get("name")), "schema": schema,
            "strict": strict}  # fmt: skip


def text_format(response_format: Mapping[str, Any]) -> Item:
    """The Responses ``text`` option asking for JSON following ``response_format``."""
    return {"format": {"type": "json_schema", **strict_format(response_format)}}


def _format_name(name: Any) -> str:
    # a-z, A-Z, 0-9, _ and -, at most 64 characters
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in str(name))
    return cleaned[:64] or "response"


def reply_parts(
    output: Iterable[Mapping[str, Any]], *, provider: str, model: str | None, name: str
) -> tuple[str, list[Part]]:
    """``(text, parts)`` of a response's output items, in their order: reasoning (its
    summary as text; id, encrypted content and summary kept in ``data`` for replay),
    text, tool calls. ``name`` is the provider entry's, for errors."""
    texts: list[str] = []
    parts: list[Part] = []
    for item in output:
        kind = item.get("type")
        if kind == "message":
            text = "".join(
                str(c.get("text") or "")
                for c in item.get("content") or []
                if isinstance(c, Mapping) and c.get("type") == "output_text"
            )
            if text:
                texts.append(text)
                parts.append(TextPart(text=text))
        elif kind == "function_call":
            parts.append(_tool_call(item, name))
        elif kind == "reasoning":
            parts.append(_reasoning_part(item, provider, model))
    return "".join(texts), parts


def _tool_call(item: Mapping[str, Any], name: str) -> ToolCall:
    call_id, tool = item.get("call_id"), item.get("name")
    if not isinstance(call_id, str) or not call_id or not isinstance(tool, str) or not tool:
        raise ProviderBadResponse("a tool call without a call id or name", provider=name)
    # Arguments that are not a JSON object are kept as {"raw": text}: the tool's schema
    # check reports them to the model instead of failing the turn.
    return ToolCall(id=call_id, name=tool, arguments=parse_arguments(item.get("arguments")))


def _reasoning_part(item: Mapping[str, Any], provider: str, model: str | None) -> ReasoningPart:
    summary = _texts(item.get("summary"))
    data: dict[str, Any] = {"id": item.get("id"), "summary": summary}
    if item.get("encrypted_content"):
        data["encrypted_content"] = item["encrypted_content"]
    # Without a summary, the reasoning text itself where the server gives it (open models).
    text = "\n\n".join(summary or _texts(item.get("content")))
    return ReasoningPart(text=text, provider=provider, model=model, data=data)


def _texts(entries: Any) -> list[str]:
    return [str(e.get("text") or "") for e in entries or [] if isinstance(e, Mapping)]
