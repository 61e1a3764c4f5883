"""OpenAI wire API: Responses (plain and SSE), Conversations, Chat Completions.

Mounted under ``/openai``; point the SDK at ``emu.url("openai") + "/v1"``.

Both APIs follow the model rules of ``_model_rules``: with tools offered, ``call NAME
{json}`` lines of the newest user message are answered with tool calls (Responses:
``function_call`` output items; Chat Completions: ``tool_calls``), and tool results
(``function_call_output`` items, ``tool`` messages) with ``tool NAME returned ...``;
images and files are acknowledged; ``text.format`` / ``response_format`` of type
``json_schema`` gets a ``structured_reply``. As on the real API, every tool output must
answer a call, and every call in the input must have its output. A Responses request
asking for ``reasoning`` gets a reasoning output item first (its ``encrypted_content``,
when ``include`` asks for it, is the emulator's signature of its summary); a reasoning
item sent back is refused (400) unless it carries a signature the emulator made.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from langswarm_runtime.testing.emulator._cache import Segment, prompt_cache
from langswarm_runtime.testing.emulator._wire import (
    chained_calls,
    content_text,
    media_note,
    reasoning_for,
    signature_of,
    structured_reply,
    tool_answer,
    tool_calls_asked,
)
from langswarm_runtime.testing.emulator.server import (
    EmulatorHTTPError,
    EmulatorRequest,
    JSONResponse,
    SSEResponse,
    count_words,
    echo_reply,
    error_shape,
    new_id,
    route,
    word_deltas,
)

P = "openai"
_SYSTEM_ROLES = ("system", "developer")
Item = dict[str, Any]


@error_shape(P)
def _error(status: int, message: str, code: str | None) -> Any:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "invalid_request_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _text(content: Any) -> str:
    """Text of a message's content: a str, or a list of text parts of any type
    (Responses input uses ``input_text``/``output_text``)."""
    return content_text(content, part_type=None)


# ------------------------------------------------------------------------- input items


def _items(raw: Any) -> list[Item]:
    """Normalise a Responses ``input`` (a str or a list of items) or Conversations
    ``items`` to typed items: ``message``, ``function_call``, ``function_call_output``,
    ``reasoning``."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise EmulatorHTTPError(400, "'input' must be a string or a list of items")
    return [_item(item) for item in raw]


def _item(item: Any) -> Item:
    if not isinstance(item, dict):
        raise EmulatorHTTPError(400, "each input item must be an object")
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        if "role" not in item:
            raise EmulatorHTTPError(400, "each message item needs a 'role'")
        return {"type": "message", "role": item["role"], "content": item.get("content")}
    if kind == "function_call":
        _require(item, kind, call_id=str, name=str, arguments=str)
        return {k: item[k] for k in ("type", "call_id", "name", "arguments")}
    if kind == "function_call_output":
        _require(item, kind, call_id=str, output=str)
        return {k: item[k] for k in ("type", "call_id", "output")}
    if kind == "reasoning":
        _require(item, kind, id=str, summary=list)
        _check_signature(item)
        return {k: item.get(k) for k in ("type", "id", "summary", "encrypted_content")}
    raise EmulatorHTTPError(400, f"unsupported input item type {kind!r}")


def _require(item: Item, kind: str, **fields: type) -> None:
    for name, expected in fields.items():
        if not isinstance(item.get(name), expected):
            raise EmulatorHTTPError(400, f"a {kind} item needs '{name}'")


def _summary(item: Item) -> str:
    return "\n\n".join(str(s.get("text", "")) for s in item.get("summary") or []
                       if isinstance(s, dict))  # fmt: skip


def _check_signature(item: Item) -> None:
    """A reasoning item sent back must carry the signature the emulator gave it."""
    encrypted = item.get("encrypted_content")
    if not encrypted:
        raise EmulatorHTTPError(
            400,
            f"Item with id '{item['id']}' not found. Items are not persisted when `store` "
            "is false: send reasoning items back with their encrypted_content.",
        )
    if encrypted != signature_of(_summary(item)):
        raise EmulatorHTTPError(
            400, f"The encrypted content for item {item['id']} could not be verified."
        )


def _data_url(url: str) -> tuple[str, int]:
    """(media type, size in bytes) of a base64 ``data:`` URL."""
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise EmulatorHTTPError(400, "a data URL must be base64: data:<type>;base64,<data>")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise EmulatorHTTPError(400, "the data URL's base64 is invalid") from None
    return head[5 : -len(";base64")] or "application/octet-stream", len(data)


def _media(url: str, default: str) -> tuple[str, int | None, str | None]:
    """``(media type, size, url)`` for ``media_note``."""
    if url.startswith("data:"):
        kind, size = _data_url(url)
        return kind, size, None
    return mimetypes.guess_type(url)[0] or default, None, url


def _user_media(content: Any) -> list[tuple[str, int | None, str | None]]:
    """The media parts of a user message's content (Responses and Chat Completions)."""
    found: list[tuple[str, int | None, str | None]] = []
    for part in content if isinstance(content, list) else []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_image":
            found.append(_media(str(part.get("image_url") or ""), "image/png"))
        elif kind == "input_file":
            if part.get("file_data"):
                kind_, size = _data_url(str(part["file_data"]))
                found.append((kind_, size, None))
            else:
                found.append(_media(str(part.get("file_url") or ""), "application/octet-stream"))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            found.append(_media(str(url or ""), "image/png"))
        elif kind == "file":
            file = part.get("file") if isinstance(part.get("file"), dict) else {}
            if not file.get("file_data"):
                raise EmulatorHTTPError(400, "a file part needs file_data")
            kind_, size = _data_url(str(file["file_data"]))
            found.append((kind_, size, None))
    return found


def _user_text(content: Any) -> str:
    """The text parts of a user message (not other parts' text fields)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(
        str(p.get("text", ""))
        for p in parts
        if isinstance(p, dict) and p.get("type") in ("input_text", "text", "output_text")
    )


# ------------------------------------------------------------------------- the model


@dataclass
class _Answer:
    """What the model says to one request."""

    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    reasoning: tuple[str, str] | None = None
    input_words: int = 0


def _answer(
    context: list[Item],
    instructions: str | None,
    *,
    tools: list[str],
    schema: Any,
    reasoning: bool,
) -> _Answer:
    """Apply the model rules to the whole context (typed items, see ``_items``)."""
    names: dict[str, str] = {}
    answered: set[str] = set()
    for item in context:
        if item["type"] == "function_call":
            names[item["call_id"]] = item["name"]
        elif item["type"] == "function_call_output":
            if item["call_id"] not in names:
                missing = item["call_id"]
                raise EmulatorHTTPError(
                    400, f"No tool call found for function call output with call_id {missing}."
                )
            answered.add(item["call_id"])
    for call_id in names.keys() - answered:
        raise EmulatorHTTPError(400, f"No tool output found for function call {call_id}.")
    chat = [i for i in context if not (i["type"] == "message" and i["role"] in _SYSTEM_ROLES)]
    messages = [i for i in chat if i["type"] == "message"]
    words = count_words(
        instructions,
        *(_text(i.get("content")) for i in context if i["type"] == "message"),
        *(i["output"] for i in context if i["type"] == "function_call_output"),
    )
    users = [i for i in messages if i["role"] == "user"]
    thought = reasoning_for(_user_text(users[-1].get("content"))) if users else None
    out = _Answer(input_words=words, reasoning=thought if reasoning else None)
    outputs: list[Item] = []
    for item in reversed(chat):
        if item["type"] != "function_call_output":
            break
        outputs.insert(0, item)
    if outputs:
        results = [(names[o["call_id"]], o["output"]) for o in outputs]
        out.calls = chained_calls(results, tools)
        if not out.calls:
            out.text = tool_answer(results)
        return out
    if not chat or chat[-1]["type"] != "message" or chat[-1]["role"] != "user":
        raise EmulatorHTTPError(400, "the last input item must be a user message")
    content = chat[-1].get("content")
    text = _user_text(content)
    media = _user_media(content)
    out.calls = tool_calls_asked(text, tools)
    if out.calls:
        return out
    if schema is not None:
        out.text = structured_reply(schema, text)
    else:
        out.text = echo_reply(text + media_note(media), len(messages) - 1)
    return out


def _output_items(answer: _Answer, include: list[str]) -> list[Item]:
    """The Responses output items of an answer (ids fresh)."""
    items: list[Item] = []
    if answer.reasoning is not None:
        thought, signature = answer.reasoning
        encrypted = signature if "reasoning.encrypted_content" in include else None
        items.append({"type": "reasoning", "id": new_id("rs_"), "status": "completed",
                      "summary": [{"type": "summary_text", "text": thought}],
                      "encrypted_content": encrypted})  # fmt: skip
    if answer.text:
        items.append({
            "type": "message", "id": new_id("msg_"), "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": answer.text, "annotations": [],
                         "logprobs": []}],
        })  # fmt: skip
    for name, arguments in answer.calls:
        items.append({"type": "function_call", "id": new_id("fc_"), "status": "completed",
                      "call_id": new_id("call_"), "name": name,
                      "arguments": json.dumps(arguments)})  # fmt: skip
    return items


def _stored(item: Item) -> Item:
    """An output item as the conversation keeps it (in ``_items`` form)."""
    if item["type"] == "message":
        return {"type": "message", "role": "assistant", "content": _text(item["content"])}
    return _item({**item, "encrypted_content": signature_of(_summary(item))}
                 if item["type"] == "reasoning" else item)  # fmt: skip


def _tool_names(tools: Any, *, chat: bool) -> list[str]:
    names = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            spec = tool.get("function") if chat else tool
            if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                names.append(spec["name"])
    return names


def _json_schema(fmt: Any) -> Any:
    """The schema of a ``json_schema`` format (Responses ``text.format``, Chat
    Completions ``response_format.json_schema``), or None."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    inner = fmt.get("json_schema", fmt)
    schema = inner.get("schema") if isinstance(inner, dict) else None
    if not isinstance(schema, dict):
        raise EmulatorHTTPError(400, "a json_schema format needs a 'schema' object")
    return schema


def _segments(instructions: Any, items: list[Any]) -> list[Segment]:
    """The prompt as cacheable segments: the instructions, then each item as sent."""
    segments = [Segment({"instructions": instructions}, count_words(instructions))]
    segments += [Segment(m, count_words(_text(m.get("content")))) for m in items]
    return segments


def _usage(input_words: int, output_words: int, cached: int, reasoning: int) -> dict[str, Any]:
    cached = min(cached, input_words)
    return {
        "input_tokens": input_words,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_words,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_words + output_words,
    }


def _conversation(req: EmulatorRequest, conv_id: str) -> dict[str, Any]:
    conv = req.state.setdefault("conversations", {}).get(conv_id)
    if conv is None:
        raise EmulatorHTTPError(404, f"Conversation with id '{conv_id}' not found.")
    return conv  # type: ignore[no-any-return]


# ------------------------------------------------------------------------- conversations


@route("POST", r"/v1/conversations", provider=P)
def create_conversation(req: EmulatorRequest) -> JSONResponse:
    body = req.json or {}
    items = _items(body.get("items") or [])
    if len(items) > 20:
        raise EmulatorHTTPError(400, "at most 20 items can be added at a time")
    conv = {
        "id": new_id("conv_"),
        "object": "conversation",
        "created_at": int(time.time()),
        "metadata": body.get("metadata") or {},
    }
    with req.lock:
        req.state.setdefault("conversations", {})[conv["id"]] = {"meta": conv, "items": items}
    return JSONResponse(conv)


@route("GET", r"/v1/conversations/(?P<cid>[^/]+)", provider=P)
def get_conversation(req: EmulatorRequest) -> JSONResponse:
    with req.lock:
        return JSONResponse(_conversation(req, req.match["cid"])["meta"])


@route("DELETE", r"/v1/conversations/(?P<cid>[^/]+)", provider=P)
def delete_conversation(req: EmulatorRequest) -> JSONResponse:
    cid = req.match["cid"]
    with req.lock:
        _conversation(req, cid)
        del req.state["conversations"][cid]
    return JSONResponse({"id": cid, "object": "conversation.deleted", "deleted": True})


def _listed(item: Item) -> Item:
    """A stored item as the items endpoints show it."""
    if item["type"] != "message":
        return {"id": new_id("item_"), "status": "completed", **item}
    content = item["content"]
    if not isinstance(content, list):
        kind = "output_text" if item["role"] == "assistant" else "input_text"
        content = [{"type": kind, "text": _text(content)}]
    return {"id": new_id("msg_"), "status": "completed", **item, "content": content}


@route("GET", r"/v1/conversations/(?P<cid>[^/]+)/items", provider=P)
def list_items(req: EmulatorRequest) -> JSONResponse:
    with req.lock:
        items = list(_conversation(req, req.match["cid"])["items"])
    data = [_listed(item) for item in items]
    return JSONResponse(
        {"object": "list", "data": data, "first_id": None, "last_id": None, "has_more": False}
    )


@route("POST", r"/v1/conversations/(?P<cid>[^/]+)/items", provider=P)
def add_items(req: EmulatorRequest) -> JSONResponse:
    items = _items((req.json or {}).get("items") or [])
    if len(items) > 20:
        raise EmulatorHTTPError(400, "at most 20 items can be added at a time")
    with req.lock:
        _conversation(req, req.match["cid"])["items"].extend(items)
    data = [_listed(item) for item in items]
    return JSONResponse(
        {"object": "list", "data": data, "first_id": None, "last_id": None, "has_more": False}
    )


# ------------------------------------------------------------------------- responses


def _response_body(
    req: EmulatorRequest,
    rid: str,
    output: list[Item],
    usage: dict[str, Any] | None,
    conv_id: str | None,
    status: str,
) -> dict[str, Any]:
    body = req.json
    return {
        "id": rid,
        "object": "response",
        "created_at": time.time(),
        "status": status,
        "model": body.get("model"),
        "output": output if status == "completed" else [],
        "usage": usage,
        "conversation": {"id": conv_id} if conv_id else None,
        "instructions": body.get("instructions"),
        "error": None,
        "incomplete_details": None,
        "max_output_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature"),
        "top_p": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "store": body.get("store", True),
    }


@route("POST", r"/v1/responses", provider=P)
def create_response(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    body = req.json
    if not isinstance(body, dict) or not body.get("model"):
        raise EmulatorHTTPError(400, "Missing required parameter: 'model'.")
    new = _items(body.get("input"))
    instructions = body.get("instructions")
    conv_ref = body.get("conversation")
    conv_id = conv_ref.get("id") if isinstance(conv_ref, dict) else conv_ref
    text_options = body.get("text")
    text_format = text_options.get("format") if isinstance(text_options, dict) else None
    include = [str(i) for i in body.get("include") or []]
    with req.lock:
        if conv_id:
            conv = _conversation(req, conv_id)
            context = conv["items"] + new
        else:
            conv, context = None, new
        answer = _answer(
            context,
            instructions,
            tools=_tool_names(body.get("tools"), chat=False),
            schema=_json_schema(text_format),
            reasoning=bool(body.get("reasoning")),
        )
        output = _output_items(answer, include)
        if conv is not None:  # the turn becomes part of the server-side conversation
            conv["items"].extend(new)
            conv["items"].extend(_stored(item) for item in output)
    if conv_id:  # the conversation is held server-side: no prompt prefix to account
        cached = req.emulator.cached_tokens
    else:
        segments = _segments(
            instructions, body["input"] if isinstance(body["input"], list) else new
        )
        cached = prompt_cache(req.emulator, P, str(body["model"]), segments).read
    thought = count_words(answer.reasoning[0]) if answer.reasoning else 0
    out_words = count_words(answer.text) + len(answer.calls) + thought
    usage = _usage(answer.input_words, out_words, cached, thought)
    rid = new_id("resp_")
    if not body.get("stream"):
        return JSONResponse(_response_body(req, rid, output, usage, conv_id, "completed"))
    return SSEResponse(_response_events(req, rid, output, usage, conv_id))


def _response_events(
    req: EmulatorRequest,
    rid: str,
    output: list[Item],
    usage: dict[str, Any],
    conv_id: str | None,
) -> Iterator[tuple[str | None, Any]]:
    seq = iter(range(1_000_000))

    def ev(kind: str, **data: Any) -> tuple[str, Any]:
        return kind, {"type": kind, "sequence_number": next(seq), **data}

    pending = _response_body(req, rid, [], None, conv_id, "in_progress")
    yield ev("response.created", response=pending)
    yield ev("response.in_progress", response=pending)
    for index, item in enumerate(output):
        at = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            yield ev("response.output_item.added", output_index=index,
                     item={**item, "status": "in_progress", "content": []})  # fmt: skip
            part = {"type": "output_text", "text": "", "annotations": []}
            yield ev("response.content_part.added", **at, content_index=0, part=part)
            for delta in word_deltas(text):
                yield ev("response.output_text.delta", **at, content_index=0, delta=delta,
                         logprobs=[])  # fmt: skip
            yield ev("response.output_text.done", **at, content_index=0, text=text, logprobs=[])
            yield ev("response.content_part.done", **at, content_index=0,
                     part={**part, "text": text})  # fmt: skip
        elif item["type"] == "reasoning":
            thought = item["summary"][0]["text"]
            yield ev("response.output_item.added", output_index=index,
                     item={**item, "status": "in_progress", "summary": [],
                           "encrypted_content": None})  # fmt: skip
            part = {"type": "summary_text", "text": ""}
            yield ev("response.reasoning_summary_part.added", **at, summary_index=0, part=part)
            for delta in word_deltas(thought):
                yield ev("response.reasoning_summary_text.delta", **at, summary_index=0,
                         delta=delta)  # fmt: skip
            yield ev("response.reasoning_summary_text.done", **at, summary_index=0, text=thought)
            yield ev("response.reasoning_summary_part.done", **at, summary_index=0,
                     part={**part, "text": thought})  # fmt: skip
        else:  # function_call: the arguments in two deltas
            arguments = item["arguments"]
            yield ev("response.output_item.added", output_index=index,
                     item={**item, "status": "in_progress", "arguments": ""})  # fmt: skip
            half = len(arguments) // 2
            for delta in (arguments[:half], arguments[half:]):
                yield ev("response.function_call_arguments.delta", **at, delta=delta)
            yield ev("response.function_call_arguments.done", **at, arguments=arguments)
        yield ev("response.output_item.done", output_index=index, item=item)
    done = _response_body(req, rid, output, usage, conv_id, "completed")
    yield ev("response.completed", response=done)


# ------------------------------------------------------------------------- chat completions


def _chat_items(messages: list[Any]) -> list[Item]:
    """Chat Completions messages as the typed items ``_answer`` reads."""
    items: list[Item] = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m:
            raise EmulatorHTTPError(400, "each message needs a 'role'")
        role = m["role"]
        if role == "tool":
            if not isinstance(m.get("tool_call_id"), str):
                raise EmulatorHTTPError(400, "a tool message needs 'tool_call_id'")
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"],
                          "output": _text(m.get("content"))})  # fmt: skip
            continue
        items.append({"type": "message", "role": role, "content": m.get("content")})
        calls = m.get("tool_calls") if role == "assistant" else None
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(call.get("id"), str):
                raise EmulatorHTTPError(400, "a tool call needs an 'id' and a 'function'")
            items.append({"type": "function_call", "call_id": call["id"],
                          "name": str(function.get("name")),
                          "arguments": str(function.get("arguments") or "{}")})  # fmt: skip
    return items


@route("POST", r"/v1/chat/completions", provider=P)
def chat_completions(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    body = req.json
    if not isinstance(body, dict) or not body.get("model"):
        raise EmulatorHTTPError(400, "Missing required parameter: 'model'.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise EmulatorHTTPError(400, "'messages' must be a list of objects")
    answer = _answer(
        _chat_items(messages),
        None,
        tools=_tool_names(body.get("tools"), chat=True),
        schema=_json_schema(body.get("response_format")),
        reasoning=False,
    )
    input_words = answer.input_words
    segments = [Segment(m, count_words(_text(m.get("content")))) for m in messages]
    cached = min(prompt_cache(req.emulator, P, str(body["model"]), segments).read, input_words)
    output_words = count_words(answer.text) + len(answer.calls)
    usage = {
        "prompt_tokens": input_words,
        "completion_tokens": output_words,
        "total_tokens": input_words + output_words,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    calls = [(new_id("call_"), name, json.dumps(arguments)) for name, arguments in answer.calls]
    finish = "tool_calls" if calls else "stop"
    cid, created, model = new_id("chatcmpl-"), int(time.time()), body["model"]
    base = {"id": cid, "created": created, "model": model}
    if not body.get("stream"):
        message: Item = {"role": "assistant", "content": answer.text or None}
        if calls:
            message["tool_calls"] = [
                {"id": ident, "type": "function", "function": {"name": name, "arguments": args}}
                for ident, name, args in calls
            ]
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "usage": usage,
                "choices": [
                    {"index": 0, "finish_reason": finish, "logprobs": None, "message": message}
                ],
            }
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def events() -> Iterator[tuple[str | None, Any]]:
        chunk = {**base, "object": "chat.completion.chunk"}

        def delta(content: Item, finish_reason: str | None = None) -> tuple[None, Any]:
            choice = {"index": 0, "delta": content, "finish_reason": finish_reason}
            return None, {**chunk, "choices": [choice]}

        yield delta({"role": "assistant"})
        for text in word_deltas(answer.text) if answer.text else []:
            yield delta({"content": text})
        for index, (ident, name, args) in enumerate(calls):  # the arguments in a second chunk
            opening = {"id": ident, "type": "function", "function": {"name": name, "arguments": ""}}
            yield delta({"tool_calls": [{"index": index, **opening}]})
            yield delta({"tool_calls": [{"index": index, "function": {"arguments": args}}]})
        yield delta({}, finish)
        if include_usage:
            yield None, {**chunk, "choices": [], "usage": usage}
        yield None, "[DONE]"

    return SSEResponse(events())
