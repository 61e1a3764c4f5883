"""Mistral wire API: chat completions and the beta Conversations API, plain and SSE.

Mounted under ``/mistral``; point the SDK's ``server_url`` at ``emu.url("mistral")`` (no
``/v1``: the SDK adds it). Conversations are kept server-side in the emulator's state, so
a conversation's reply counts the entries the server holds, and ``forget_conversations()``
makes the next append a 404, as when the real service loses one.

The model follows the shared rules (``_model_rules``), on both APIs: with tools offered
(chat: ``tools``; Conversations: the tools the conversation was started with), ``call
NAME {json}`` lines make it call them; tool results (``role: tool`` messages,
``function.result`` entries) are answered ``tool NAME returned ...``; ``image_url`` and
``document_url`` chunks are acknowledged (base64 ``data:`` URLs decoded); a
``json_schema`` response format gets a structured reply; with reasoning asked for
(``reasoning_effort`` other than ``none``, or ``prompt_mode: reasoning``) a ``thinking``
chunk comes first, signed, and the signature is checked when it comes back. As on the
real API, tool-call ids must be 9 letters and digits, and a result must answer a call.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import secrets
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langswarm_runtime.testing.emulator._cache import Segment, prompt_cache
from langswarm_runtime.testing.emulator._wire import (
    EmulatorHTTPError,
    EmulatorRequest,
    JSONResponse,
    SSEResponse,
    chained_calls,
    content_text,
    count_words,
    echo_reply,
    error_shape,
    function_tool_names,
    media_note,
    new_id,
    reasoning_for,
    require_bearer_key,
    route,
    signature_of,
    structured_reply,
    tool_answer,
    tool_calls_asked,
    word_deltas,
)

P = "mistral"
_CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")
_ID_CHARS = string.ascii_letters + string.digits

Media = tuple[str, int | None, str | None]


@error_shape(P)
def _error(status: int, message: str, code: str | None) -> Any:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "api_error")
    return {"object": "error", "message": message, "type": kind, "param": None, "code": code}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _usage(input_words: int, output_words: int, cached: int) -> dict[str, Any]:
    cached = min(cached, input_words)
    return {
        "prompt_tokens": input_words,
        "completion_tokens": output_words,
        "total_tokens": input_words + output_words,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


# ------------------------------------------------------------------------- reading


def _bad(message: str) -> EmulatorHTTPError:
    return EmulatorHTTPError(400, message)


def _call_id(value: Any) -> str:
    if not isinstance(value, str) or not _CALL_ID.fullmatch(value):
        raise _bad(f"Tool call id was {value!r} but must be a-z, A-Z, 0-9, with a length of 9.")
    return value


def _media(url: Any, default: str) -> Media:
    """``(media type, size, url)`` of a chunk's URL: a base64 ``data:`` URL is decoded."""
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        raise _bad("a media chunk needs a URL")
    if not url.startswith("data:"):
        return mimetypes.guess_type(url)[0] or default, None, url
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise _bad("a data URL must be base64: data:<type>;base64,<data>")
    try:
        size = len(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise _bad("the data URL's base64 is invalid") from None
    return head[5 : -len(";base64")] or default, size, None


def _user(content: Any) -> tuple[str, list[Media]]:
    """(text, media) of user content: a str, or text / image_url / document_url chunks."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise _bad("user content must be a string or a list of chunks")
    texts: list[str] = []
    media: list[Media] = []
    for chunk in content:
        kind = chunk.get("type") if isinstance(chunk, dict) else None
        if kind == "text" and isinstance(chunk.get("text"), str):
            texts.append(chunk["text"])
        elif kind == "image_url":
            media.append(_media(chunk.get("image_url"), "image/png"))
        elif kind == "document_url":
            media.append(_media(chunk.get("document_url"), "application/pdf"))
        else:
            raise _bad(f"unsupported user content chunk {kind!r}")
    return "".join(texts), media


def _check_thinking(content: Any) -> None:
    """Replayed ``thinking`` chunks must carry the signature the emulator gave them."""
    for chunk in content if isinstance(content, list) else []:
        if isinstance(chunk, dict) and chunk.get("type") == "thinking" and chunk.get("signature"):
            text = content_text(chunk.get("thinking"))
            if chunk["signature"] != signature_of(text):
                raise _bad("the signature of a thinking chunk could not be verified")


def _arguments(value: Any) -> None:
    if isinstance(value, dict):
        return
    try:
        json.loads(value if isinstance(value, str) else "")
    except ValueError:
        raise _bad("tool call arguments must be a JSON object or JSON text") from None


def _offered(tools: Any) -> list[str]:
    return function_tool_names(tools, _bad, require_parameters=False)


def _schema(fmt: Any) -> Any:
    """The JSON schema asked for (None: plain text)."""
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") in (None, "text")):
        return None
    if not isinstance(fmt, dict):
        raise _bad("response_format must be an object")
    if fmt.get("type") == "json_object":
        return {"type": "object"}
    spec = fmt.get("json_schema")
    if fmt.get("type") != "json_schema" or not isinstance(spec, dict):
        raise _bad("response_format type json_schema needs a json_schema object")
    if not spec.get("name") or not isinstance(spec.get("schema"), dict):
        raise _bad("json_schema needs a name and a schema")
    return spec["schema"]


def _reasoning(options: dict[str, Any]) -> bool:
    effort = options.get("reasoning_effort")
    return (effort not in (None, "none")) or options.get("prompt_mode") == "reasoning"


# ------------------------------------------------------------------------- the model


@dataclass
class _Answer:
    text: str = ""
    thinking: str = ""
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)

    def words(self) -> int:
        return count_words(self.text, self.thinking, *(a for _, _, a in self.calls))

    def thinking_chunk(self, text: str | None = None, *, signed: bool = True) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "type": "thinking",
            "thinking": [{"type": "text", "text": self.thinking if text is None else text}],
        }
        if signed:
            chunk["signature"] = signature_of(self.thinking)
        return chunk

    def content(self) -> Any:
        if not self.thinking:
            return self.text
        return [self.thinking_chunk(), {"type": "text", "text": self.text}]


def _answer(
    text: str,
    media: list[Media],
    *,
    offered: list[str],
    schema: Any,
    reasoning: bool,
    earlier: int,
) -> _Answer:
    """The answer to a user message."""
    thought = reasoning_for(text)[0] if reasoning else ""
    asked = tool_calls_asked(text, offered)
    if asked:
        calls = [
            ("".join(secrets.choice(_ID_CHARS) for _ in range(9)), name, json.dumps(arguments))
            for name, arguments in asked
        ]
        return _Answer(thinking=thought, calls=calls)
    if schema is not None:
        return _Answer(text=structured_reply(schema, text), thinking=thought)
    return _Answer(text=echo_reply(text + media_note(media), earlier), thinking=thought)


# ------------------------------------------------------------------------- chat completions


def _tool_results(chat: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    """(tool name, content) of the trailing tool messages, checked against the calls of
    the assistant message before them."""
    at = len(chat)
    while at and chat[at - 1].get("role") == "tool":
        at -= 1
    if not at or not chat[at - 1].get("tool_calls"):
        raise _bad("tool messages must follow an assistant message with tool_calls")
    calls = {c["id"]: c["function"]["name"] for c in chat[at - 1]["tool_calls"]}
    results: list[tuple[str | None, str]] = []
    for message in chat[at:]:
        call_id = _call_id(message.get("tool_call_id"))
        if call_id not in calls:
            raise _bad(f"tool_call_id {call_id} answers no tool call")
        results.append((calls[call_id], content_text(message.get("content"))))
    return results


def _check_chat(chat: list[dict[str, Any]]) -> None:
    for message in chat:
        role = message.get("role")
        if role not in ("user", "assistant", "tool"):
            raise _bad(f"unknown role {role!r}")
        if role != "assistant":
            continue
        _check_thinking(message.get("content"))
        calls = message.get("tool_calls") or []
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not function.get("name"):
                raise _bad("a tool call needs a function name")
            _call_id(call.get("id"))
            _arguments(function.get("arguments"))
        if not calls and message.get("content") in (None, "", []):
            raise _bad("an assistant message needs content or tool_calls")


@route("POST", r"/v1/chat/completions", provider=P)
def chat_completions(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    require_bearer_key(req)
    body = req.json
    if not isinstance(body, dict) or not body.get("model"):
        raise EmulatorHTTPError(400, "model is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise EmulatorHTTPError(400, "messages must be a list of objects")
    chat = [m for m in messages if m.get("role") != "system"]
    if not chat or chat[-1].get("role") not in ("user", "tool"):
        raise EmulatorHTTPError(400, "the last message must have role 'user' or 'tool'")
    _check_chat(chat)
    offered = _offered(body.get("tools"))
    schema = _schema(body.get("response_format"))
    results = _tool_results(chat) if chat[-1]["role"] == "tool" else []
    if results and chained_calls(results, offered):  # the results ask for more calls
        answer = _answer("\n".join(c for _, c in results), [], offered=offered, schema=None,
                         reasoning=_reasoning(body), earlier=len(chat) - 1)  # fmt: skip
    elif results:
        answer = _Answer(text=tool_answer(results))
    else:
        text, media = _user(chat[-1].get("content"))
        answer = _answer(text, media, offered=offered, schema=schema,
                         reasoning=_reasoning(body), earlier=len(chat) - 1)  # fmt: skip
    segments = [Segment(m, count_words(content_text(m.get("content")))) for m in messages]
    cached = prompt_cache(req.emulator, P, str(body["model"]), segments).read
    usage = _usage(sum(s.tokens for s in segments), answer.words(), cached)
    base = {"id": new_id("cmpl-"), "created": int(time.time()), "model": body["model"]}
    finish_reason = "tool_calls" if answer.calls else "stop"
    tool_calls = [
        {"id": ident, "type": "function", "function": {"name": name, "arguments": args},
         "index": i}
        for i, (ident, name, args) in enumerate(answer.calls)
    ] or None  # fmt: skip
    if not body.get("stream"):
        message = {"role": "assistant", "content": answer.content(), "tool_calls": tool_calls}
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "usage": usage,
                "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
            }
        )

    def events() -> Iterator[tuple[str | None, Any]]:
        chunk = {**base, "object": "chat.completion.chunk"}

        def delta(content: Any = None, **more: Any) -> tuple[None, Any]:
            choice = {"index": 0, "delta": {"content": content, **more}, "finish_reason": None}
            return None, {**chunk, "choices": [choice]}

        yield delta("", role="assistant")
        if answer.thinking:
            pieces = word_deltas(answer.thinking)
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                yield delta([answer.thinking_chunk(piece, signed=last)])
        for piece in word_deltas(answer.text) if answer.text else ():
            yield delta(piece)
        if tool_calls:
            # Mistral sends each call whole, in one chunk, every one with index 0.
            yield delta("", tool_calls=[{**c, "index": 0} for c in tool_calls])
        # Mistral sends the usage on the chunk that carries the finish reason.
        end = {"index": 0, "delta": {"content": ""}, "finish_reason": finish_reason}
        yield None, {**chunk, "choices": [end], "usage": usage}
        yield None, "[DONE]"

    return SSEResponse(events())


# ------------------------------------------------------------------------- conversations

# A conversation holds entries as {"kind": "message", "role", "text"}, {"kind": "call",
# "id", "name"} and {"kind": "result", "id", "text"}.


def _entries(raw: Any) -> tuple[list[dict[str, Any]], list[Media]]:
    """Conversations ``inputs`` (a str or a list of entries), normalised, and the media
    of the user entries."""
    if isinstance(raw, str):
        return [{"kind": "message", "role": "user", "text": raw}], []
    if not isinstance(raw, list) or not raw:
        raise EmulatorHTTPError(400, "inputs must be a string or a non-empty list of entries")
    entries: list[dict[str, Any]] = []
    media: list[Media] = []
    for item in raw:
        kind = item.get("type", "message.input") if isinstance(item, dict) else None
        if kind in ("message.input", "message.output"):
            role = item.get("role", "assistant" if kind == "message.output" else None)
            if role not in ("user", "assistant"):
                raise EmulatorHTTPError(400, "each input entry needs role 'user' or 'assistant'")
            if role == "user":
                text, found = _user(item.get("content"))
                media = found  # the newest user entry's
            else:
                _check_thinking(item.get("content"))
                text = content_text(item.get("content"))
            entries.append({"kind": "message", "role": role, "text": text})
        elif kind == "function.call":
            if not item.get("name"):
                raise _bad("a function.call entry needs a name")
            _arguments(item.get("arguments"))
            entries.append({"kind": "call", "id": _call_id(item.get("tool_call_id")),
                            "name": item["name"]})  # fmt: skip
        elif kind == "function.result":
            if not isinstance(item.get("result"), str):
                raise _bad("a function.result entry needs a result string")
            entries.append({"kind": "result", "id": _call_id(item.get("tool_call_id")),
                            "text": item["result"]})  # fmt: skip
        else:
            raise _bad(f"unsupported input entry type {kind!r}")
    return entries, media


def _conversation(req: EmulatorRequest, conv_id: str) -> dict[str, Any]:
    conv = req.state.setdefault("conversations", {}).get(conv_id)
    if conv is None:
        raise EmulatorHTTPError(404, f"Conversation {conv_id} not found", code="3001")
    return conv  # type: ignore[no-any-return]


def _conversation_answer(
    conv: dict[str, Any], context: list[dict[str, Any]], new: list[dict[str, Any]],
    media: list[Media], options: dict[str, Any],
) -> _Answer:  # fmt: skip
    last = new[-1]
    if last["kind"] == "result":
        names = {e["id"]: e["name"] for e in context if e["kind"] == "call"}
        results: list[tuple[str | None, str]] = []
        for entry in reversed(new):
            if entry["kind"] != "result":
                break
            if entry["id"] not in names:
                raise _bad(f"function.result {entry['id']} answers no function.call")
            results.insert(0, (names[entry["id"]], entry["text"]))
        offered = conv.get("tools") or []
        if chained_calls(results, offered):
            return _answer("\n".join(c for _, c in results), [], offered=offered, schema=None,
                           reasoning=_reasoning(options), earlier=len(context) - 1)  # fmt: skip
        return _Answer(text=tool_answer(results))
    if last["kind"] != "message" or last["role"] != "user":
        raise EmulatorHTTPError(400, "the last input entry must have role 'user'")
    return _answer(last["text"], media, offered=conv.get("tools") or [],
                   schema=_schema(options.get("response_format")),
                   reasoning=_reasoning(options), earlier=len(context) - 1)  # fmt: skip


def _run(req: EmulatorRequest, conv: dict[str, Any], conv_id: str) -> JSONResponse | SSEResponse:
    """Append the request's inputs to ``conv`` and answer; caller holds the lock."""
    body = req.json
    new, media = _entries(body.get("inputs"))
    options = body.get("completion_args") or {}
    if not isinstance(options, dict):
        raise _bad("completion_args must be an object")
    # The model sees everything the server holds for this conversation, plus the new entries.
    context = conv["entries"] + new
    answer = _conversation_answer(conv, context, new, media, options)
    words = count_words(conv.get("instructions"), *(e.get("text") for e in context))
    if body.get("store", True):
        made = [{"kind": "call", "id": i, "name": n} for i, n, _ in answer.calls]
        if not answer.calls:
            made = [{"kind": "message", "role": "assistant", "text": answer.text}]
        conv["entries"] = context + made
    # Server-held context: no prompt prefix to account (a fixed count still applies).
    usage = _usage(words, answer.words(), req.emulator.cached_tokens)
    usage.update(connector_tokens=None, connectors=None)
    model = conv.get("model")
    entry_ids = [new_id("fc_") for _ in answer.calls] or [new_id("msg_")]
    if not body.get("stream"):
        stamp = {"object": "entry", "created_at": _now(), "completed_at": _now(), "model": model}
        outputs: list[dict[str, Any]] = [
            {**stamp, "type": "function.call", "id": entry_id, "tool_call_id": ident,
             "name": name, "arguments": args}
            for entry_id, (ident, name, args) in zip(entry_ids, answer.calls, strict=False)
        ]  # fmt: skip
        if not answer.calls:
            outputs = [{**stamp, "type": "message.output", "id": entry_ids[0],
                        "role": "assistant", "content": answer.content()}]  # fmt: skip
        return JSONResponse(
            {
                "object": "conversation.response",
                "conversation_id": conv_id,
                "outputs": outputs,
                "usage": usage,
            }
        )

    def events() -> Iterator[tuple[str | None, Any]]:
        def ev(kind: str, **data: Any) -> tuple[str, Any]:
            return kind, {"type": kind, "created_at": _now(), **data}

        yield ev("conversation.response.started", conversation_id=conv_id)
        for i, (ident, name, args) in enumerate(answer.calls):
            half = len(args) // 2
            for piece in (args[:half], args[half:]):  # the arguments in pieces
                yield ev("function.call.delta", id=entry_ids[i], output_index=i, model=model,
                         tool_call_id=ident, name=name, arguments=piece)  # fmt: skip
        if not answer.calls:
            pieces: list[Any] = []
            if answer.thinking:
                pieces.append(answer.thinking_chunk())
            pieces += word_deltas(answer.text)
            for piece in pieces:
                yield ev("message.output.delta", id=entry_ids[0], output_index=0,
                         content_index=0, model=model, role="assistant",
                         content=piece)  # fmt: skip
        yield ev("conversation.response.done", usage=usage)

    return SSEResponse(events())


@route("POST", r"/v1/conversations", provider=P)
def start_conversation(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    require_bearer_key(req)
    body = req.json
    if not isinstance(body, dict):
        raise EmulatorHTTPError(400, "request body must be an object")
    if not body.get("model") and not body.get("agent_id"):
        raise EmulatorHTTPError(400, "one of model or agent_id is required")
    conv_id = new_id("conv_")
    conv: dict[str, Any] = {
        "id": conv_id,
        "model": body.get("model"),
        "instructions": body.get("instructions"),
        "tools": _offered(body.get("tools")),
        "created_at": _now(),
        "entries": [],
    }
    with req.lock:
        response = _run(req, conv, conv_id)
        if body.get("store", True):
            req.state.setdefault("conversations", {})[conv_id] = conv
    return response


@route("POST", r"/v1/conversations/(?P<cid>[^/]+)", provider=P)
def append_conversation(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    require_bearer_key(req)
    if not isinstance(req.json, dict):
        raise EmulatorHTTPError(400, "request body must be an object")
    cid = req.match["cid"]
    with req.lock:
        return _run(req, _conversation(req, cid), cid)


@route("GET", r"/v1/conversations/(?P<cid>[^/]+)", provider=P)
def get_conversation(req: EmulatorRequest) -> JSONResponse:
    require_bearer_key(req)
    with req.lock:
        conv = _conversation(req, req.match["cid"])
        return JSONResponse(
            {
                "object": "conversation",
                "id": conv["id"],
                "model": conv["model"],
                "instructions": conv["instructions"],
                "created_at": conv["created_at"],
                "updated_at": _now(),
            }
        )
