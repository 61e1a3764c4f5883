"""OpenAI wire API: Responses (plain and SSE), Conversations, Chat Completions.

Mounted under ``/openai``; point the SDK at ``emu.url("openai") + "/v1"``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from langswarm_runtime.testing.emulator._cache import Segment, prompt_cache
from langswarm_runtime.testing.emulator._wire import content_text
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


def _items(raw: Any) -> list[dict[str, Any]]:
    """Normalise a Responses ``input`` (a str or a list of items) to message items."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise EmulatorHTTPError(400, "'input' must be a string or a list of items")
    items = []
    for item in raw:
        if not isinstance(item, dict) or "role" not in item:
            raise EmulatorHTTPError(400, "each input item needs a 'role'")
        items.append({"type": "message", "role": item["role"], "content": item.get("content")})
    return items


def _turn(messages: list[dict[str, Any]], instructions: str | None) -> tuple[str, int, int]:
    """(new user text, earlier messages, input words) for the context the model sees."""
    chat = [m for m in messages if m.get("role") not in _SYSTEM_ROLES]
    if not chat or chat[-1].get("role") != "user":
        raise EmulatorHTTPError(400, "the last input item must be a user message")
    words = count_words(instructions, *(_text(m.get("content")) for m in messages))
    return _text(chat[-1].get("content")), len(chat) - 1, words


def _segments(instructions: Any, items: list[Any]) -> list[Segment]:
    """The prompt as cacheable segments: the instructions, then each item as sent."""
    segments = [Segment({"instructions": instructions}, count_words(instructions))]
    segments += [Segment(m, count_words(_text(m.get("content")))) for m in items]
    return segments


def _usage(input_words: int, output_words: int, cached: int) -> dict[str, Any]:
    cached = min(cached, input_words)
    return {
        "input_tokens": input_words,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_words,
        "output_tokens_details": {"reasoning_tokens": 0},
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


@route("GET", r"/v1/conversations/(?P<cid>[^/]+)/items", provider=P)
def list_items(req: EmulatorRequest) -> JSONResponse:
    with req.lock:
        items = list(_conversation(req, req.match["cid"])["items"])
    data = [
        {
            "id": new_id("msg_"),
            "status": "completed",
            **item,
            "content": [
                {
                    "type": "output_text" if item["role"] == "assistant" else "input_text",
                    "text": _text(item["content"]),
                }
            ],
        }
        for item in items
    ]
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
    data = [{"id": new_id("msg_"), "status": "completed", **item} for item in items]
    return JSONResponse(
        {"object": "list", "data": data, "first_id": None, "last_id": None, "has_more": False}
    )


# ------------------------------------------------------------------------- responses


def _response_body(
    req: EmulatorRequest,
    rid: str,
    mid: str,
    text: str,
    usage: dict[str, Any] | None,
    conv_id: str | None,
    status: str,
) -> dict[str, Any]:
    body = req.json
    output = []
    if status == "completed":
        output = [
            {
                "type": "message",
                "id": mid,
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                ],
            }
        ]
    return {
        "id": rid,
        "object": "response",
        "created_at": time.time(),
        "status": status,
        "model": body.get("model"),
        "output": output,
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
        "tools": [],
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
    with req.lock:
        if conv_id:
            conv = _conversation(req, conv_id)
            context = conv["items"] + new
        else:
            conv, context = None, new
        user_text, earlier, input_words = _turn(context, instructions)
        reply = echo_reply(user_text, earlier)
        if conv is not None:  # the turn becomes part of the server-side conversation
            conv["items"].extend(new)
            conv["items"].append({"type": "message", "role": "assistant", "content": reply})
    if conv_id:  # the conversation is held server-side: no prompt prefix to account
        cached = req.emulator.cached_tokens
    else:
        segments = _segments(
            instructions, body["input"] if isinstance(body["input"], list) else new
        )
        cached = prompt_cache(req.emulator, P, str(body["model"]), segments).read
    usage = _usage(input_words, count_words(reply), cached)
    rid, mid = new_id("resp_"), new_id("msg_")
    if not body.get("stream"):
        return JSONResponse(_response_body(req, rid, mid, reply, usage, conv_id, "completed"))
    return SSEResponse(_response_events(req, rid, mid, reply, usage, conv_id))


def _response_events(
    req: EmulatorRequest,
    rid: str,
    mid: str,
    reply: str,
    usage: dict[str, Any],
    conv_id: str | None,
) -> Iterator[tuple[str | None, Any]]:
    seq = iter(range(1_000_000))

    def ev(kind: str, **data: Any) -> tuple[str, Any]:
        return kind, {"type": kind, "sequence_number": next(seq), **data}

    pending = _response_body(req, rid, mid, "", None, conv_id, "in_progress")
    yield ev("response.created", response=pending)
    yield ev("response.in_progress", response=pending)
    item = {
        "type": "message",
        "id": mid,
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    yield ev("response.output_item.added", output_index=0, item=item)
    part = {"type": "output_text", "text": "", "annotations": []}
    yield ev("response.content_part.added", item_id=mid, output_index=0, content_index=0, part=part)
    for delta in word_deltas(reply):
        yield ev(
            "response.output_text.delta",
            item_id=mid,
            output_index=0,
            content_index=0,
            delta=delta,
            logprobs=[],
        )
    yield ev(
        "response.output_text.done",
        item_id=mid,
        output_index=0,
        content_index=0,
        text=reply,
        logprobs=[],
    )
    done = _response_body(req, rid, mid, reply, usage, conv_id, "completed")
    yield ev(
        "response.content_part.done",
        item_id=mid,
        output_index=0,
        content_index=0,
        part={**part, "text": reply},
    )
    yield ev("response.output_item.done", output_index=0, item=done["output"][0])
    yield ev("response.completed", response=done)


# ------------------------------------------------------------------------- chat completions


@route("POST", r"/v1/chat/completions", provider=P)
def chat_completions(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    body = req.json
    if not isinstance(body, dict) or not body.get("model"):
        raise EmulatorHTTPError(400, "Missing required parameter: 'model'.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise EmulatorHTTPError(400, "'messages' must be a list of objects")
    user_text, earlier, input_words = _turn(messages, None)
    reply = echo_reply(user_text, earlier)
    segments = [Segment(m, count_words(_text(m.get("content")))) for m in messages]
    cached = min(prompt_cache(req.emulator, P, str(body["model"]), segments).read, input_words)
    usage = {
        "prompt_tokens": input_words,
        "completion_tokens": count_words(reply),
        "total_tokens": input_words + count_words(reply),
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    cid, created, model = new_id("chatcmpl-"), int(time.time()), body["model"]
    base = {"id": cid, "created": created, "model": model}
    if not body.get("stream"):
        return JSONResponse(
            {
                **base,
                "object": "chat.completion",
                "usage": usage,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "logprobs": None,
                        "message": {"role": "assistant", "content": reply},
                    }
                ],
            }
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def events() -> Iterator[tuple[str | None, Any]]:
        chunk = {**base, "object": "chat.completion.chunk"}
        yield (
            None,
            {
                **chunk,
                "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
            },
        )
        for delta in word_deltas(reply):
            yield (
                None,
                {
                    **chunk,
                    "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}],
                },
            )
        yield None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if include_usage:
            yield None, {**chunk, "choices": [], "usage": usage}
        yield None, "[DONE]"

    return SSEResponse(events())
