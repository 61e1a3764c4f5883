"""Cohere wire API: v2 chat, plain JSON and SSE streaming.

Mounted under ``/cohere``; point the SDK at ``emu.url("cohere")`` (the host root: the SDK
adds ``/v2/chat`` itself). Cohere keeps no conversation state, so there is no native form.
Token counts are reported as floats, as the real API does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
    route,
    word_deltas,
)

P = "cohere"
_ROLES = ("system", "user", "assistant", "tool")


@error_shape(P)
def _error(status: int, message: str, code: str | None) -> Any:
    # Cohere's error body: an id and a message, nothing nested.
    return {"id": str(uuid.uuid4()), "message": message}




def _usage(input_words: int, output_words: int, cached: int) -> dict[str, Any]:
    cached = min(cached, input_words)
    # Floats on purpose: the real API sends 12.0, and adapters must cope.
    return {
        "billed_units": {"input_tokens": float(input_words), "output_tokens": float(output_words)},
        "tokens": {"input_tokens": float(input_words), "output_tokens": float(output_words)},
        "cached_tokens": float(cached),
    }


@route("POST", r"/v2/chat", provider=P)
def chat(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    require_bearer_key(req)
    body = req.json
    if not isinstance(body, dict) or not body.get("model"):
        raise EmulatorHTTPError(400, "invalid request: model must be specified")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise EmulatorHTTPError(400, "invalid request: messages must be a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise EmulatorHTTPError(400, f"invalid request: message role must be one of {_ROLES}")
    chat_msgs = [m for m in messages if m["role"] != "system"]
    if not chat_msgs or chat_msgs[-1]["role"] != "user":
        raise EmulatorHTTPError(400, "invalid request: the last message must be from the user")
    user_text = content_text(chat_msgs[-1].get("content"))
    reply = echo_reply(user_text, len(chat_msgs) - 1)
    segments = [Segment(m, count_words(content_text(m.get("content")))) for m in messages]
    cached = prompt_cache(req.emulator, P, str(body["model"]), segments).read
    usage = _usage(sum(s.tokens for s in segments), count_words(reply), cached)
    reply_id = str(uuid.uuid4())
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": reply_id,
                "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "content": [{"type": "text", "text": reply}]},
                "usage": usage,
            }
        )
    return SSEResponse(_events(reply_id, reply, usage))


def _events(reply_id: str, reply: str, usage: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    def ev(kind: str, **data: Any) -> tuple[str, Any]:
        return kind, {"type": kind, **data}

    yield ev(
        "message-start",
        id=reply_id,
        delta={
            "message": {
                "role": "assistant",
                "content": [],
                "tool_plan": "",
                "tool_calls": [],
                "citations": [],
            }
        },
    )
    yield ev("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}})
    for delta in word_deltas(reply):
        yield ev("content-delta", index=0, delta={"message": {"content": {"text": delta}}})
    yield ev("content-end", index=0)
    yield ev("message-end", delta={"finish_reason": "COMPLETE", "usage": usage})
