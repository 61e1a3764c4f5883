"""Mistral wire API: chat completions and the beta Conversations API, plain and SSE.

Mounted under ``/mistral``; point the SDK's ``server_url`` at ``emu.url("mistral")`` (no
``/v1``: the SDK adds it). Conversations are kept server-side in the emulator's state, so
a conversation's reply counts the entries the server holds, and ``forget_conversations()``
makes the next append a 404, as when the real service loses one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from langswarm_runtime.testing.emulator._cache import Segment, prompt_cache
from langswarm_runtime.testing.emulator._wire import content_text, require_bearer_key
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

P = "mistral"


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


# ------------------------------------------------------------------------- chat completions


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
    if not chat or chat[-1].get("role") != "user":
        raise EmulatorHTTPError(400, "the last message must have role 'user'")
    reply = echo_reply(content_text(chat[-1].get("content")), len(chat) - 1)
    segments = [Segment(m, count_words(content_text(m.get("content")))) for m in messages]
    cached = prompt_cache(req.emulator, P, str(body["model"]), segments).read
    usage = _usage(sum(s.tokens for s in segments), count_words(reply), cached)
    base = {"id": new_id("cmpl-"), "created": int(time.time()), "model": body["model"]}
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
                        "message": {"role": "assistant", "content": reply, "tool_calls": None},
                    }
                ],
            }
        )

    def events() -> Iterator[tuple[str | None, Any]]:
        chunk = {**base, "object": "chat.completion.chunk"}
        first = {"role": "assistant", "content": ""}
        yield None, {**chunk, "choices": [{"index": 0, "delta": first, "finish_reason": None}]}
        for delta in word_deltas(reply):
            yield (
                None,
                {
                    **chunk,
                    "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}],
                },
            )
        # Mistral sends the usage on the chunk that carries the finish reason.
        last = {"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}
        yield None, {**chunk, "choices": [last], "usage": usage}
        yield None, "[DONE]"

    return SSEResponse(events())


# ------------------------------------------------------------------------- conversations


def _entries(raw: Any) -> list[dict[str, Any]]:
    """Normalise Conversations ``inputs`` (a str or a list of entries) to role/content."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise EmulatorHTTPError(400, "inputs must be a string or a non-empty list of entries")
    entries = []
    for item in raw:
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            raise EmulatorHTTPError(400, "each input entry needs role 'user' or 'assistant'")
        entries.append({"role": item["role"], "content": content_text(item.get("content"))})
    return entries


def _conversation(req: EmulatorRequest, conv_id: str) -> dict[str, Any]:
    conv = req.state.setdefault("conversations", {}).get(conv_id)
    if conv is None:
        raise EmulatorHTTPError(404, f"Conversation {conv_id} not found", code="3001")
    return conv  # type: ignore[no-any-return]


def _run(req: EmulatorRequest, conv: dict[str, Any], conv_id: str) -> JSONResponse | SSEResponse:
    """Append the request's inputs to ``conv`` and answer; caller holds the lock."""
    body = req.json
    new = _entries(body.get("inputs"))
    if new[-1]["role"] != "user":
        raise EmulatorHTTPError(400, "the last input entry must have role 'user'")
    # The model sees everything the server holds for this conversation, plus the new entries.
    context = conv["entries"] + new
    reply = echo_reply(new[-1]["content"], len(context) - 1)
    words = count_words(conv.get("instructions"), *(e["content"] for e in context))
    if body.get("store", True):
        conv["entries"] = context + [{"role": "assistant", "content": reply}]
    # Server-held context: no prompt prefix to account (a fixed count still applies).
    usage = _usage(words, count_words(reply), req.emulator.cached_tokens)
    usage.update(connector_tokens=None, connectors=None)
    entry_id, model = new_id("msg_"), conv.get("model")
    if not body.get("stream"):
        output = {
            "object": "entry",
            "type": "message.output",
            "created_at": _now(),
            "completed_at": _now(),
            "id": entry_id,
            "model": model,
            "role": "assistant",
            "content": reply,
        }
        return JSONResponse(
            {
                "object": "conversation.response",
                "conversation_id": conv_id,
                "outputs": [output],
                "usage": usage,
            }
        )

    def events() -> Iterator[tuple[str | None, Any]]:
        def ev(kind: str, **data: Any) -> tuple[str, Any]:
            return kind, {"type": kind, "created_at": _now(), **data}

        yield ev("conversation.response.started", conversation_id=conv_id)
        for delta in word_deltas(reply):
            yield ev(
                "message.output.delta",
                id=entry_id,
                output_index=0,
                content_index=0,
                model=model,
                role="assistant",
                content=delta,
            )
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
