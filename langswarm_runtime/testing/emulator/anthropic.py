"""Anthropic wire API: Messages (plain and SSE) and the beta message threads.

Mounted under ``/anthropic``; point the SDK at ``emu.url("anthropic")`` (the host root:
the SDK adds ``/v1/messages`` itself).

Message threads (beta header ``anthropic-beta: message-threads-2026-08-12``): a request
with ``thread: {"type": "create"}`` makes the server hold the conversation under the
response's ``id``; ``{"type": "continue", "previous_message_id": id}`` sends only the new
turn. Each response can be continued once, and a ``continue`` may not repeat ``system``,
as on the real API. A key starting with ``invalid`` is refused with 401, so adapters can
test their auth error mapping.

Prompt caching (stateless requests): ``cache_control`` breakpoints on system or message
blocks write the prefix up to them; later requests read the longest written prefix
(see ``_cache``) and report ``cache_read_input_tokens`` / ``cache_creation_input_tokens``
apart from ``input_tokens``, as the real API does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langswarm_runtime.testing.emulator._cache import CacheResult, Segment, prompt_cache
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

P = "anthropic"
THREADS_BETA = "message-threads-2026-08-12"
# Error codes the SDK maps to its typed thread errors (``error.details.error_code``).
_THREAD_CODES = frozenset(
    {"thread_not_found", "thread_already_continued", "thread_continue_in_flight"}
)


@error_shape(P)
def _error(status: int, message: str, code: str | None) -> Any:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    error: dict[str, Any] = {"type": kind, "message": message}
    if code == "not_found":  # the core's generic "conversation lost" fault
        code = "thread_not_found"
    if code in _THREAD_CODES:
        error["details"] = {"error_code": code}
    return {"type": "error", "error": error, "request_id": new_id("req_")}



def _check_auth(req: EmulatorRequest) -> None:
    key = req.headers.get("x-api-key") or req.headers.get("authorization", "").removeprefix(
        "Bearer "
    )
    if key.startswith("invalid"):
        raise EmulatorHTTPError(401, "invalid x-api-key")


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") for m in messages
    ):
        raise EmulatorHTTPError(400, "messages: each message needs role 'user' or 'assistant'")
    return [{"role": m["role"], "content": content_text(m.get("content"))} for m in messages]


def _blocks(content: Any) -> list[Any]:
    """Content as a list of blocks without their ``cache_control`` (a marker, not part of
    the prompt: moving it must not change the cached prefix)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    return [
        {k: v for k, v in b.items() if k != "cache_control"} if isinstance(b, dict) else b
        for b in content
    ]


def _marked(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("cache_control") for b in content
    )


def _cache(req: EmulatorRequest, body: dict[str, Any]) -> CacheResult:
    """Prompt-cache accounting of a stateless request: segments are the system blocks,
    then the messages; breakpoints are where ``cache_control`` marks a block (a top-level
    ``cache_control`` marks the last one)."""
    segments: list[Segment] = []
    marks: list[int] = []
    system = body.get("system")
    for block in _blocks(system):
        segments.append(Segment(block, count_words(content_text([block]))))
        if isinstance(system, list) and _marked([system[len(segments) - 1]]):
            marks.append(len(segments))
    for m in body["messages"]:
        blocks = _blocks(m.get("content"))
        segments.append(Segment({"role": m["role"], "content": blocks}, count_words(content_text(blocks))))
        if _marked(m.get("content")):
            marks.append(len(segments))
    if body.get("cache_control"):
        marks.append(len(segments))
    return prompt_cache(req.emulator, P, str(body["model"]), segments, marks)


def _usage(input_words: int, output_words: int, cache: CacheResult) -> dict[str, Any]:
    read = min(cache.read, input_words)
    written = min(cache.written, input_words - read)
    # Anthropic reports cache reads and writes apart from (not inside) input_tokens.
    return {
        "input_tokens": input_words - read - written,
        "output_tokens": output_words,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }


def _thread_context(
    req: EmulatorRequest, body: dict[str, Any], new: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str | None, dict[str, Any] | None]:
    """(context the model sees, system prompt, thread record continued) for this request.
    Caller holds the lock."""
    thread = body.get("thread")
    system = content_text(body.get("system")) or None
    if thread is None:
        return new, system, None
    if THREADS_BETA not in req.headers.get("anthropic-beta", ""):
        raise EmulatorHTTPError(400, f"thread: requires the beta header {THREADS_BETA!r}")
    kind = thread.get("type") if isinstance(thread, dict) else None
    if kind == "create":
        return new, system, None
    if kind != "continue" or not thread.get("previous_message_id"):
        raise EmulatorHTTPError(400, "thread: expected type 'create' or 'continue'")
    if "system" in body:
        raise EmulatorHTTPError(400, "thread: `system` is fixed when the thread is created")
    prev_id = thread["previous_message_id"]
    prev = req.state.setdefault("threads", {}).get(prev_id)
    if prev is None:
        raise EmulatorHTTPError(
            404, f"No thread state for previous_message_id '{prev_id}'", code="thread_not_found"
        )
    if prev["continued"]:
        raise EmulatorHTTPError(
            400, f"Message '{prev_id}' was already continued", code="thread_already_continued"
        )
    return prev["messages"] + new, prev["system"], prev


@route("POST", r"/v1/messages", provider=P)
def create_message(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    _check_auth(req)
    body = req.json
    if not isinstance(body, dict) or not body.get("model"):
        raise EmulatorHTTPError(400, "model: Field required")
    if not isinstance(body.get("max_tokens"), int):
        raise EmulatorHTTPError(400, "max_tokens: Field required")
    new = _messages(body)
    with req.lock:
        context, system, prev = _thread_context(req, body, new)
        if not context or context[-1]["role"] != "user":
            raise EmulatorHTTPError(400, "messages: the last message must have role 'user'")
        reply = echo_reply(context[-1]["content"], len(context) - 1)
        mid = new_id("msg_")
        if body.get("thread") is not None:
            if prev is not None:
                prev["continued"] = True
            req.state.setdefault("threads", {})[mid] = {
                "messages": context + [{"role": "assistant", "content": reply}],
                "system": system,
                "continued": False,
            }
    input_words = count_words(system, *(m["content"] for m in context))
    if body.get("thread") is None:
        cache = _cache(req, body)
    else:  # a thread's context is held server-side: no prompt prefix to account
        cache = CacheResult(read=min(req.emulator.cached_tokens, input_words))
    usage = _usage(input_words, count_words(reply), cache)
    message = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": reply}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return JSONResponse(message)
    return SSEResponse(_events(message, reply, usage))


def _events(
    message: dict[str, Any], reply: str, usage: dict[str, Any]
) -> Iterator[tuple[str | None, Any]]:
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield "message_start", {"type": "message_start", "message": start}
    yield (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
    )
    yield "ping", {"type": "ping"}
    for delta in word_deltas(reply):
        yield (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": delta},
            },
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}
