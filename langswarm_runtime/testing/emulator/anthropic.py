"""Anthropic wire API: Messages (plain and SSE) and the beta message threads.

Mounted under ``/anthropic``; point the SDK at ``emu.url("anthropic")`` (the host root:
the SDK adds ``/v1/messages`` itself).

Message threads (beta header ``anthropic-beta: message-threads-2026-08-12``): a request
with ``thread: {"type": "create"}`` makes the server hold the conversation under the
response's ``id``; ``{"type": "continue", "previous_message_id": id}`` sends only the new
turn. Each response can be continued once, and a ``continue`` may not repeat ``system``,
as on the real API. A key starting with ``invalid`` is refused with 401, so adapters can
test their auth error mapping.

Rich turns follow the model rules of ``_model_rules``: with ``tools`` offered, ``call
NAME {json}`` lines of the newest user message are answered with ``tool_use`` blocks;
``tool_result`` blocks with ``tool NAME returned ...``; image and document blocks are
acknowledged (base64 decoded to count bytes); ``output_config.format`` of type
``json_schema`` gets a ``structured_reply``; ``thinking`` of type ``enabled`` or
``adaptive`` puts a thinking block first, signed with ``signature_of``. As on the real
API, every ``tool_use`` needs its ``tool_result`` first in the next message (and the
reverse), tool blocks need ``tools`` defined, ids must match ``^[a-zA-Z0-9_-]+$``, a
thinking block sent back must carry the signature the emulator gave it, and with
thinking on the assistant message whose calls are answered must start with its thinking
block: anything else is a 400. A thread keeps its tools, as it keeps its system prompt.

Prompt caching (stateless requests): ``cache_control`` breakpoints on system or message
blocks write the prefix up to them; later requests read the longest written prefix
(see ``_cache``) and report ``cache_read_input_tokens`` / ``cache_creation_input_tokens``
apart from ``input_tokens``, as the real API does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any

from langswarm_runtime.testing.emulator._cache import CacheResult, Segment, prompt_cache
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


_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)
_THINKING_TYPES = frozenset({"enabled", "adaptive"})
Block = dict[str, Any]


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages with their content as a list of blocks, each block checked
    as the real API checks it."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") for m in messages
    ):
        raise EmulatorHTTPError(400, "messages: each message needs role 'user' or 'assistant'")
    out = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if isinstance(content, str):
            blocks: list[Block] = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            blocks = [_check_block(b, f"messages.{i}.content.{j}", m["role"])
                      for j, b in enumerate(content)]  # fmt: skip
        else:
            raise EmulatorHTTPError(400, f"messages.{i}.content: expected a string or a list")
        out.append({"role": m["role"], "content": blocks})
    return out


def _check_block(raw: Any, where: str, role: str) -> Block:
    if not isinstance(raw, dict) or raw.get("type") not in _BLOCK_TYPES:
        kind = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
        raise EmulatorHTTPError(400, f"{where}: unknown content block type {kind!r}")
    kind = raw["type"]
    block: Block = {k: v for k, v in raw.items() if k != "cache_control"}
    if kind == "text" and not isinstance(block.get("text"), str):
        raise EmulatorHTTPError(400, f"{where}.text: Field required")
    if kind in ("tool_use", "thinking", "redacted_thinking") and role != "assistant":
        raise EmulatorHTTPError(400, f"{where}: `{kind}` blocks belong to assistant messages")
    if kind in ("tool_result", "image", "document") and role != "user":
        raise EmulatorHTTPError(400, f"{where}: `{kind}` blocks belong to user messages")
    if kind == "tool_use":
        if not isinstance(block.get("id"), str) or not _ID.fullmatch(block["id"]):
            raise EmulatorHTTPError(
                400, f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
            )
        if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
            raise EmulatorHTTPError(400, f"{where}: tool_use needs a name and an input object")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str) or not _ID.fullmatch(block["tool_use_id"]):
            raise EmulatorHTTPError(
                400, f"{where}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'"
            )
    elif kind == "thinking":
        thought, signature = block.get("thinking"), block.get("signature")
        if not isinstance(thought, str) or signature != signature_of(thought):
            raise EmulatorHTTPError(400, f"{where}: Invalid `signature` in `thinking` block")
    elif kind == "redacted_thinking":  # the emulator never redacts: none can be its own
        raise EmulatorHTTPError(400, f"{where}: Invalid `data` in `redacted_thinking` block")
    elif kind in ("image", "document"):
        block["_media"] = _media(block, where)
    return block


def _media(block: Block, where: str) -> tuple[str, int | None, str | None]:
    """``(media type, size, url)`` of an image or document block (what the reply notes)."""
    source = block.get("source")
    if not isinstance(source, dict):
        source = {}
    kind = source.get("type")
    if kind == "url" and isinstance(source.get("url"), str):
        default = "image" if block["type"] == "image" else "application/pdf"
        return default, None, source["url"]
    if kind == "base64":
        media_type = source.get("media_type")
        allowed = _IMAGE_TYPES if block["type"] == "image" else {"application/pdf"}
        if media_type not in allowed:
            raise EmulatorHTTPError(400, f"{where}.source.media_type: {media_type!r} not supported")
        try:
            data = base64.b64decode(str(source.get("data", "")), validate=True)
        except (binascii.Error, ValueError):
            raise EmulatorHTTPError(400, f"{where}.source.data: invalid base64") from None
        return str(media_type), len(data), None
    if kind == "text" and block["type"] == "document" and isinstance(source.get("data"), str):
        return "text/plain", len(source["data"].encode()), None
    raise EmulatorHTTPError(400, f"{where}.source: expected a base64, url or text source")


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise EmulatorHTTPError(400, "tools: expected a list")
    for i, tool in enumerate(tools):
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise EmulatorHTTPError(400, f"tools.{i}.name: String should match pattern")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise EmulatorHTTPError(400, f"tools.{i}.input_schema.type: Input should be 'object'")
    return tools


def _schema(body: dict[str, Any]) -> Any:
    """The JSON schema ``output_config.format`` asks the reply to follow (None: none)."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise EmulatorHTTPError(400, "output_config.format.type: Input should be 'json_schema'")
    if not isinstance(fmt.get("schema"), dict):
        raise EmulatorHTTPError(400, "output_config.format.schema: Field required")
    return fmt["schema"]


def _thinking(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in _THINKING_TYPES


def _check_pairs(context: list[dict[str, Any]], *, tools: bool, thinking: bool) -> None:
    """Tool blocks as the real API wants them: each ``tool_use`` answered by a
    ``tool_result`` at the start of the next message, each result answering a call of
    the message before it, tools defined; with thinking on, the assistant message whose
    calls the request answers starts with its thinking block."""
    has_tool_blocks = False
    for i, message in enumerate(context):
        blocks = message["content"]
        calls = [b["id"] for b in blocks if b["type"] == "tool_use"]
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        has_tool_blocks = has_tool_blocks or bool(calls or results)
        if results:
            before = context[i - 1]["content"] if i else []
            asked = {b["id"] for b in before if b["type"] == "tool_use"}
            stray = [r for r in results if r not in asked]
            if stray:
                raise EmulatorHTTPError(
                    400,
                    f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{stray[0]}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message.",
                )
            leading = len(results)
            if any(b["type"] != "tool_result" for b in blocks[:leading]):
                raise EmulatorHTTPError(
                    400, f"messages.{i}: `tool_result` blocks must come first in the message"
                )
        if calls:
            after = context[i + 1]["content"] if i + 1 < len(context) else None
            answered = {b["tool_use_id"] for b in after or [] if b["type"] == "tool_result"}
            missing = [c for c in calls if c not in answered]
            if after is not None and missing:
                raise EmulatorHTTPError(
                    400,
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {missing[0]}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message.",
                )
    if has_tool_blocks and not tools:
        raise EmulatorHTTPError(
            400, "Requests which include `tool_use` or `tool_result` blocks must define tools."
        )
    if thinking and len(context) >= 2:
        asking = context[-2]["content"]
        if any(b["type"] == "tool_use" for b in asking) and asking[0]["type"] not in (
            "thinking",
            "redacted_thinking",
        ):
            raise EmulatorHTTPError(
                400,
                f"messages.{len(context) - 2}.content.0.type: Expected `thinking` or "
                f"`redacted_thinking`, but found `{asking[0]['type']}`. When `thinking` is "
                "enabled, a final `assistant` message must start with a thinking block.",
            )


def _text_of(blocks: list[Block]) -> str:
    return "".join(b["text"] for b in blocks if b["type"] == "text")


def _result_text(block: Block) -> str:
    content = block.get("content")
    return content if isinstance(content, str) else content_text(content)


def _words(context: list[dict[str, Any]]) -> list[str]:
    """The texts of the context the model reads (what the usage counts)."""
    texts: list[str] = []
    for m in context:
        for b in m["content"]:
            if b["type"] == "text":
                texts.append(b["text"])
            elif b["type"] == "tool_result":
                texts.append(_result_text(b))
    return texts


def _answer(
    context: list[dict[str, Any]], tools: list[dict[str, Any]], schema: Any, thinking: bool
) -> list[Block]:
    """The model's reply blocks to ``context`` (see ``_model_rules``)."""
    last = context[-1]["content"]
    results = [b for b in last if b["type"] == "tool_result"]
    blocks: list[Block] = []
    if results:
        before = context[-2]["content"] if len(context) >= 2 else []
        names = {b["id"]: b["name"] for b in before if b["type"] == "tool_use"}
        pairs = [(names.get(b["tool_use_id"]), _result_text(b)) for b in results]
        chained = chained_calls(pairs, [t["name"] for t in tools])
        prompt = "\n".join(c for _, c in pairs) if chained else tool_answer(pairs)
        if chained:  # the results ask for more calls
            blocks += [
                {"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": arguments}
                for name, arguments in chained
            ]
        else:
            blocks.append({"type": "text", "text": prompt})
    else:
        prompt = _text_of(last)
        asked = tool_calls_asked(prompt, [t["name"] for t in tools])
        if asked:
            blocks += [
                {"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": arguments}
                for name, arguments in asked
            ]
        elif schema is not None:
            blocks.append({"type": "text", "text": structured_reply(schema, prompt)})
        else:
            media = [b["_media"] for b in last if "_media" in b]
            reply = echo_reply(prompt + media_note(media), len(context) - 1)
            blocks.append({"type": "text", "text": reply})
    if thinking:
        thought, signature = reasoning_for(prompt)
        blocks.insert(0, {"type": "thinking", "thinking": thought, "signature": signature})
    return blocks


def _stored(context: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as a thread keeps them (without the emulator's own notes on blocks)."""
    return [
        {"role": m["role"],
         "content": [{k: v for k, v in b.items() if k != "_media"} for b in m["content"]]}
        for m in context
    ]  # fmt: skip


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
        segments.append(
            Segment({"role": m["role"], "content": blocks}, count_words(content_text(blocks)))
        )
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
) -> tuple[list[dict[str, Any]], str | None, list[dict[str, Any]], dict[str, Any] | None]:
    """(context the model sees, system prompt, tools, thread record continued) for this
    request. Caller holds the lock."""
    thread = body.get("thread")
    system = content_text(body.get("system")) or None
    tools = _tools(body)
    if thread is None:
        return new, system, tools, None
    if THREADS_BETA not in req.headers.get("anthropic-beta", ""):
        raise EmulatorHTTPError(400, f"thread: requires the beta header {THREADS_BETA!r}")
    kind = thread.get("type") if isinstance(thread, dict) else None
    if kind == "create":
        return new, system, tools, None
    if kind != "continue" or not thread.get("previous_message_id"):
        raise EmulatorHTTPError(400, "thread: expected type 'create' or 'continue'")
    if "system" in body:
        raise EmulatorHTTPError(400, "thread: `system` is fixed when the thread is created")
    if "tools" in body:
        raise EmulatorHTTPError(400, "thread: `tools` are fixed when the thread is created")
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
    return prev["messages"] + new, prev["system"], prev.get("tools", []), prev


@route("POST", r"/v1/messages", provider=P)
def create_message(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    _check_auth(req)
    body = req.json
    if not isinstance(body, dict) or not body.get("model"):
        raise EmulatorHTTPError(400, "model: Field required")
    if not isinstance(body.get("max_tokens"), int):
        raise EmulatorHTTPError(400, "max_tokens: Field required")
    new = _messages(body)
    schema, thinking = _schema(body), _thinking(body)
    with req.lock:
        context, system, tools, prev = _thread_context(req, body, new)
        if not context or context[-1]["role"] != "user":
            raise EmulatorHTTPError(400, "messages: the last message must have role 'user'")
        _check_pairs(context, tools=bool(tools), thinking=thinking)
        blocks = _answer(context, tools, schema, thinking)
        mid = new_id("msg_")
        if body.get("thread") is not None:
            if prev is not None:
                prev["continued"] = True
            req.state.setdefault("threads", {})[mid] = {
                "messages": _stored(context) + [{"role": "assistant", "content": blocks}],
                "system": system,
                "tools": tools,
                "continued": False,
            }
    input_words = count_words(system, *_words(context))
    output_words = sum(
        count_words(b.get("text"), b.get("thinking")) + (b["type"] == "tool_use") for b in blocks
    )
    if body.get("thread") is None:
        cache = _cache(req, body)
    else:  # a thread's context is held server-side: no prompt prefix to account
        cache = CacheResult(read=min(req.emulator.cached_tokens, input_words))
    usage = _usage(input_words, output_words, cache)
    calls = any(b["type"] == "tool_use" for b in blocks)
    message = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": "tool_use" if calls else "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return JSONResponse(message)
    return SSEResponse(_events(message, usage))


def _events(message: dict[str, Any], usage: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(message["content"]):
        yield from _block_events(index, block)
        if index == 0:
            yield "ping", {"type": "ping"}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _block_events(index: int, block: Block) -> Iterator[tuple[str | None, Any]]:
    def delta(data: dict[str, Any]) -> tuple[str, Any]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": data}

    kind = block["type"]
    if kind == "text":
        opening: Block = {"type": "text", "text": ""}
    elif kind == "thinking":
        opening = {"type": "thinking", "thinking": "", "signature": ""}
    else:
        opening = {**block, "input": {}}
    yield "content_block_start", {"type": "content_block_start", "index": index,
                                  "content_block": opening}  # fmt: skip
    if kind == "text":
        for piece in word_deltas(block["text"]):
            yield delta({"type": "text_delta", "text": piece})
    elif kind == "thinking":
        for piece in word_deltas(block["thinking"]):
            yield delta({"type": "thinking_delta", "thinking": piece})
        yield delta({"type": "signature_delta", "signature": block["signature"]})
    else:  # tool_use: its input as JSON text, in two pieces
        text = json.dumps(block["input"])
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            yield delta({"type": "input_json_delta", "partial_json": piece})
    yield "content_block_stop", {"type": "content_block_stop", "index": index}
