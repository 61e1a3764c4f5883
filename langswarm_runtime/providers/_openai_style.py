"""The OpenAI-style chat format, shared by the APIs that took it over: OpenAI Chat
Completions (and the servers compatible with it), Cohere v2 chat and Mistral chat.

Pure functions, no I/O and no SDK import: our messages (with their parts) to the wire's
message dicts, tool specs to tool definitions, a response format to the API's JSON-schema
mode, and tool calls read back out of a reply (whole, or as streamed deltas).

The shapes they share:

- an assistant message carries ``tool_calls: [{id, type: "function", function: {name,
  arguments}}]``, ``arguments`` being JSON text;
- each tool result is a message of its own, ``{role: "tool", tool_call_id, content}``;
  the results answering one assistant message go out in the order of its calls;
- a user message's content is a string, or a list of parts (``text``, ``image_url``);
- a tool is offered as ``{type: "function", function: {name, description, parameters}}``.

Where the APIs differ, a :class:`ChatStyle` says how: how an image and a file go out
(Mistral: ``image_url`` as a string and ``document_url``; Cohere: no documents), whether
the tool message names the tool (Mistral), how replayed reasoning travels (Cohere's
``thinking`` items and ``tool_plan``, Mistral's ``thinking`` chunks; Chat Completions
has none), and the shape of the JSON-schema response format (Cohere's ``json_object``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from langswarm_runtime.errors import InvalidMessage, ProviderBadResponse
from langswarm_runtime.providers._common import SUMMARY_PREFIX
from langswarm_runtime.providers._kept import KeptHistories, KeptMessages, KeptTurns
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.tools.spec import ToolSpec

__all__ = [
    "CHAT_COMPLETIONS",
    "COHERE",
    "MISTRAL",
    "ChatStyle",
    "ToolCallStream",
    "arguments_json",
    "data_url",
    "parse_arguments",
    "response_format_param",
    "to_messages",
    "tool_call",
    "tool_calls_from",
    "tools_param",
]

Wire = dict[str, Any]


# ------------------------------------------------------------------------------- media


def data_url(part: ImagePart | FilePart) -> str:
    """The part's URL, or its bytes as a ``data:`` URL (base64)."""
    if part.url is not None:
        return part.url
    if part.data is None:
        raise InvalidMessage(f"the {part.type} {part.sha256} has neither bytes nor a URL to send")
    return f"data:{part.media_type};base64,{base64.b64encode(part.data).decode('ascii')}"


def _image_object(part: ImagePart) -> Wire:
    return {"type": "image_url", "image_url": {"url": data_url(part)}}


def _image_string(part: ImagePart) -> Wire:
    return {"type": "image_url", "image_url": data_url(part)}


def _file_part(part: FilePart) -> Wire:
    # Chat Completions: inline files only (a file_id would need an upload first).
    if part.url is not None:
        return {"type": "text", "text": _file_note(part, "at " + part.url)}
    return {
        "type": "file",
        "file": {"filename": part.name or "file", "file_data": data_url(part)},
    }


def _document_url(part: FilePart) -> Wire:
    chunk: Wire = {"type": "document_url", "document_url": data_url(part)}
    if part.name:
        chunk["document_name"] = part.name
    return chunk


#: Media types whose bytes are text (sent as text where an API takes no documents).
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml")


def _file_as_text(part: FilePart) -> Wire:
    """For APIs without document parts: a text file's text, else a note saying what was
    left out (so a history with a PDF can still go to such an API after a switch)."""
    if part.data is not None and part.media_type.startswith(_TEXT_TYPES):
        try:
            text = part.data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return {"type": "text", "text": f"[file {part.name or 'file'}]\n{text}"}
    where = f"at {part.url}" if part.url else f"{part.size} bytes"
    return {"type": "text", "text": _file_note(part, where + ", not sent")}


def _file_note(part: FilePart, where: str) -> str:
    return f"[file {part.name or 'file'} ({part.media_type}, {where})]"


# --------------------------------------------------------------------------- reasoning


def _cohere_assistant(wire: Wire, reasoning: list[ReasoningPart]) -> None:
    """Cohere v2: the plan that came with tool calls goes back as ``tool_plan``; thinking
    as ``{"type": "thinking"}`` content items ahead of the text."""
    thinking: list[Wire] = []
    for part in reasoning:
        if (part.data or {}).get("kind") == "tool_plan":
            if wire.get("tool_calls"):
                wire["tool_plan"] = part.text
        elif part.text:
            thinking.append({"type": "thinking", "thinking": part.text})
    if thinking:
        text = wire.pop("content", "")
        wire["content"] = [*thinking, *([{"type": "text", "text": text}] if text else [])]


def _mistral_assistant(wire: Wire, reasoning: list[ReasoningPart]) -> None:
    """Mistral (reasoning models): ``thinking`` chunks ahead of the text."""
    chunks = [thinking_chunk(p) for p in reasoning if p.text]
    if chunks:
        text = wire.pop("content", "")
        wire["content"] = [*chunks, *([{"type": "text", "text": text}] if text else [])]


def thinking_chunk(part: ReasoningPart) -> Wire:
    """A Mistral ``thinking`` content chunk (with its signature when it had one)."""
    chunk: Wire = {"type": "thinking", "thinking": [{"type": "text", "text": part.text}]}
    signature = (part.data or {}).get("signature")
    if isinstance(signature, str):
        chunk["signature"] = signature
    return chunk


# ------------------------------------------------------------------------------- style


@dataclass(frozen=True)
class ChatStyle:
    """How one API departs from Chat Completions (see the module docstring)."""

    name: str
    image: Callable[[ImagePart], Wire] = _image_object
    file: Callable[[FilePart], Wire] = _file_part
    #: Whether a tool message also carries the tool's ``name``.
    tool_result_name: bool = False
    #: Adds replayed reasoning (already filtered to this provider) to an assistant
    #: message; None: reasoning is not sent back.
    reasoning: Callable[[Wire, list[ReasoningPart]], None] | None = None
    #: Cohere spells the JSON-schema mode ``{"type": "json_object", "json_schema": ...}``.
    cohere_response_format: bool = False


CHAT_COMPLETIONS = ChatStyle("chat_completions")
COHERE = ChatStyle(
    "cohere", file=_file_as_text, reasoning=_cohere_assistant, cohere_response_format=True
)
MISTRAL = ChatStyle(
    "mistral",
    image=_image_string,
    file=_document_url,
    tool_result_name=True,
    reasoning=_mistral_assistant,
)


# ---------------------------------------------------------------------------- messages


#: Wire forms of stored messages with parts, and of recent histories (see ``_kept``).
_MESSAGES: KeptMessages[Any] = KeptMessages()
_HISTORIES: KeptHistories[tuple[list[Wire], dict[str, int], bool]] = KeptHistories()
_TURNS: KeptTurns[Wire, dict[str, int]] = KeptTurns()


def _memo(message: Message, style: ChatStyle, make: Callable[[Message, ChatStyle], Any]) -> Any:
    """``make(message, style)``, made once per stored message with parts and style (a
    tool loop's calls and results are most of the translating)."""
    return _MESSAGES.get(message, style.name, lambda m: make(m, style))


def _tool_messages(message: Message, style: ChatStyle) -> list[tuple[str, Wire]]:
    return [(r.call_id, _tool_message(r, style)) for r in message.tool_results]


def to_messages(
    messages: Iterable[Message],
    style: ChatStyle = CHAT_COMPLETIONS,
    *,
    history: Sequence[Message] | None = None,
) -> list[Wire]:
    """The wire messages for ``messages`` (oldest first; the system prompt is the
    caller's to put first). A stored summary becomes a system note; a ``tool`` message
    becomes one tool message per result, the results after an assistant message in the
    order of its calls.

    ``history``: the request's history list, when ``messages`` starts with it (a hybrid
    call's conversation). A tool loop sends the same list on every call of a turn, so
    its translation is kept (by list object) and only the turn's messages are
    translated on the later calls."""
    messages = list(messages)
    n = _HISTORIES.prefix(messages, history)
    if history and n and history[-1].role != "tool":  # its results wait for what follows

        def piece(messages: Sequence[Message]) -> tuple[list[Wire], dict[str, int]]:
            done: list[Wire] = []
            return done, _translate(messages, style, done, {})

        def make() -> tuple[list[Wire], dict[str, int], bool]:
            # Turn by turn: a user message flushes the results before it and the call
            # order is set anew by each assistant message, so the pieces add up to the
            # whole; all but the newest turn come from the turn before's translation.
            return _TURNS.translate(history, style.name, piece, {})

        kept, order, _ = _HISTORIES.get(history, style.name, make, keep=lambda v: v[2])
        out = list(kept)
        _translate(messages[n:], style, out, dict(order))
        return out
    out = []
    _translate(messages, style, out, {})
    return out


def _translate(
    messages: Iterable[Message], style: ChatStyle, out: list[Wire], order: dict[str, int]
) -> dict[str, int]:
    """Append the wire messages for ``messages`` to ``out``; ``order``: call id ->
    position in the last assistant message so far. Returns the order after them."""
    results: list[tuple[str, Wire]] = []  # the run of tool results being collected

    def flush() -> None:
        ranked = sorted(
            enumerate(results), key=lambda item: (order.get(item[1][0], len(order)), item[0])
        )
        out.extend(wire for _, (_, wire) in ranked)
        results.clear()

    for message in messages:
        if message.role == "tool":
            results.extend(_memo(message, style, _tool_messages))
            continue
        if results:
            flush()
        if message.role == "summary":
            out.append({"role": "system", "content": SUMMARY_PREFIX + message.content})
        elif message.role == "assistant":
            wire = _memo(message, style, _assistant_message)
            order = {c["id"]: i for i, c in enumerate(wire.get("tool_calls", ()))}
            out.append(wire)
        elif message.role == "user":
            out.append({"role": "user", "content": _memo(message, style, _user_content)})
        else:
            out.append({"role": message.role, "content": message.content})
    if results:
        flush()
    return order


def _user_content(message: Message, style: ChatStyle) -> str | list[Wire]:
    if not any(isinstance(p, (ImagePart, FilePart)) for p in message.parts):
        return message.content
    content: list[Wire] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:
                content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append(style.image(part))
        elif isinstance(part, FilePart):
            content.append(style.file(part))
    return content


def _assistant_message(message: Message, style: ChatStyle) -> Wire:
    wire: Wire = {"role": "assistant"}
    calls = message.tool_calls
    if message.content or not calls:
        wire["content"] = message.content
    if calls:
        wire["tool_calls"] = [tool_call(c) for c in calls]
    reasoning = [p for p in message.parts if isinstance(p, ReasoningPart)]
    if reasoning and style.reasoning is not None:
        style.reasoning(wire, reasoning)
    return wire


def tool_call(call: ToolCall) -> Wire:
    """A call as it goes back in an assistant message's ``tool_calls``."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments_json(call.arguments)},
    }


def _tool_message(result: ToolResult, style: ChatStyle) -> Wire:
    wire: Wire = {"role": "tool", "tool_call_id": result.call_id, "content": result.content}
    if style.tool_result_name and result.name:
        wire["name"] = result.name
    return wire


def arguments_json(arguments: dict[str, Any]) -> str:
    """A call's arguments as the JSON text the wire carries."""
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------- tools and formats


def tools_param(tools: Sequence[ToolSpec]) -> list[Wire]:
    """Tool definitions: ``{type: function, function: {name, description, parameters}}``."""
    out: list[Wire] = []
    for spec in tools:
        function: Wire = {"name": spec.name, "parameters": spec.parameters}
        if spec.description:
            function["description"] = spec.description
        out.append({"type": "function", "function": function})
    return out


def response_format_param(response_format: dict[str, Any], style: ChatStyle) -> Wire:
    """The API's JSON-schema output mode for ``{"name", "schema", "strict"}``."""
    schema = response_format["schema"]
    if style.cohere_response_format:
        return {"type": "json_object", "json_schema": schema}
    spec: Wire = {"name": response_format.get("name") or "reply", "schema": schema}
    if response_format.get("strict") is not None:
        spec["strict"] = bool(response_format["strict"])
    return {"type": "json_schema", "json_schema": spec}


# ------------------------------------------------------------------ reading calls back


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for a dict, ``obj.key`` for an SDK object (None when absent)."""
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A call's arguments as a dict: JSON text is parsed, a dict taken as it is. Text
    that is not a JSON object is kept as ``{"raw": text}``, so the tool's schema check
    reports it to the model instead of the turn failing."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return dict(arguments)
    if isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except ValueError:
            return {"raw": arguments}
        return value if isinstance(value, dict) else {"raw": arguments}
    return {"raw": str(arguments)}


def tool_calls_from(
    raw_calls: Iterable[Any] | None, *, provider: str | None = None
) -> list[ToolCall]:
    """The ``ToolCall`` parts of a reply's ``tool_calls`` (SDK objects or dicts). A call
    without an id (some compatible servers) gets one; one without a name is a
    ``ProviderBadResponse`` (of ``provider``)."""
    calls: list[ToolCall] = []
    for raw in raw_calls or ():
        function = _get(raw, "function")
        name = _get(function, "name")
        if not isinstance(name, str) or not name:
            raise ProviderBadResponse("a tool call without a function name", provider=provider)
        ident = _get(raw, "id")
        if not isinstance(ident, str) or not ident or ident == "null":
            ident = _new_call_id()
        calls.append(
            ToolCall(id=ident, name=name, arguments=parse_arguments(_get(function, "arguments")))
        )
    return calls


def _new_call_id() -> str:
    return "call" + uuid.uuid4().hex[:20]


class ToolCallStream:
    """Tool calls assembled from streamed deltas: each delta names its call by ``index``
    (and usually brings the ``id`` and ``name`` first, then pieces of the arguments).
    A delta whose id differs from the one already at its index starts a new call (Mistral
    numbers every call of a chunk 0)."""

    def __init__(self) -> None:
        self._calls: list[dict[str, Any]] = []
        self._by_index: dict[int, int] = {}

    def add(
        self,
        index: int | None = None,
        *,
        id: str | None = None,
        name: str | None = None,
        arguments: str | dict[str, Any] | None = None,
    ) -> None:
        key = index if index is not None else len(self._calls)
        at = self._by_index.get(key)
        if id == "null":
            id = None
        if at is None or (id and self._calls[at]["id"] and self._calls[at]["id"] != id):
            self._calls.append({"id": id, "name": name, "arguments": ""})
            at = self._by_index[key] = len(self._calls) - 1
        entry = self._calls[at]
        if id and not entry["id"]:
            entry["id"] = id
        if name and not entry["name"]:
            entry["name"] = name
        if isinstance(arguments, dict):
            entry["arguments"] = arguments_json(arguments)
        elif arguments:
            entry["arguments"] += arguments

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self, *, provider: str | None = None) -> list[ToolCall]:
        """The calls so far, in the order they started."""
        return tool_calls_from(
            (
                {"id": c["id"], "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in self._calls
            ),
            provider=provider,
        )
