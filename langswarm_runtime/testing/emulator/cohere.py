"""Cohere wire API: v2 chat, plain JSON and SSE streaming.

Mounted under ``/cohere``; point the SDK at ``emu.url("cohere")`` (the host root: the SDK
adds ``/v2/chat`` itself). Cohere keeps no conversation state, so there is no native form.
Token counts are reported as floats, as the real API does.

The model follows the shared rules (``_model_rules``): with ``tools`` offered, ``call NAME
{json}`` lines make it call them; tool messages are answered ``tool NAME returned ...``;
``image_url`` parts are acknowledged (their base64 decoded); ``response_format: {type:
json_object, json_schema}`` gets a structured reply (not taken together with tools, as on
the real API). Reasoning only when asked for (``thinking: {type: enabled}``): a thinking
item, and a ``tool_plan`` with tool calls (the real API plans always; the rules keep
reasoning to requests that ask for it). User content takes ``text`` and ``image_url``
items only (no documents).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    reasoning_for,
    require_bearer_key,
    route,
    structured_reply,
    tool_answer,
    tool_calls_asked,
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


# ------------------------------------------------------------------------- reading


def _bad(message: str) -> EmulatorHTTPError:
    return EmulatorHTTPError(400, f"invalid request: {message}")


def _media(url: Any) -> tuple[str, int | None, str | None]:
    """``(media type, size, url)`` of an image URL: a base64 ``data:`` URL is decoded."""
    if not isinstance(url, str) or not url:
        raise _bad("image_url.url must be a non-empty string")
    if not url.startswith("data:"):
        return mimetypes.guess_type(url)[0] or "image/png", None, url
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise _bad("a data URL must be base64: data:<type>;base64,<data>")
    try:
        size = len(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        raise _bad("the data URL's base64 is invalid") from None
    return head[5 : -len(";base64")] or "application/octet-stream", size, None


def _user(content: Any) -> tuple[str, list[tuple[str, int | None, str | None]]]:
    """(text, media) of a user message's content: a str or text / image_url items."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list) or not content:
        raise _bad("user content must be a string or a non-empty list")
    texts: list[str] = []
    media = []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and isinstance(item.get("text"), str):
            texts.append(item["text"])
        elif kind == "image_url" and isinstance(item.get("image_url"), dict):
            media.append(_media(item["image_url"].get("url")))
        else:
            raise _bad(f"user content items are text or image_url, not {kind!r}")
    return "".join(texts), media


def _calls_of(message: dict[str, Any]) -> dict[str, str]:
    """{call id: tool name} of an assistant message's ``tool_calls`` (checked)."""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad("tool_calls must be a list")
    found: dict[str, str] = {}
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not call.get("id") or not function.get("name"):
            raise _bad("a tool call needs an id and a function name")
        try:
            json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            raise _bad("tool call arguments must be JSON text") from None
        found[str(call["id"])] = str(function["name"])
    if not calls and message.get("content") in (None, "", []):
        raise _bad("an assistant message needs content or tool_calls")
    return found


def _tool_results(chat: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    """(tool name, content) of the trailing tool messages, checked against the calls of
    the assistant message before them."""
    at = len(chat)
    while at and chat[at - 1]["role"] == "tool":
        at -= 1
    if not at or chat[at - 1]["role"] != "assistant":
        raise _bad("tool messages must follow an assistant message with tool_calls")
    calls = _calls_of(chat[at - 1])
    results: list[tuple[str | None, str]] = []
    for message in chat[at:]:
        call_id = message.get("tool_call_id")
        if call_id not in calls:
            raise _bad(f"tool_call_id {call_id!r} answers no tool call")
        results.append((calls[call_id], content_text(message.get("content"))))
    return results


def _offered(tools: Any) -> list[str]:
    return function_tool_names(tools, _bad, require_parameters=True)


def _schema(fmt: Any) -> Any:
    """The JSON schema asked for (None: plain text)."""
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_object":
        raise _bad("response_format type must be text or json_object")
    return fmt.get("json_schema") or {"type": "object"}


# ------------------------------------------------------------------------- the model


@dataclass
class _Answer:
    text: str = ""
    thinking: str = ""
    tool_plan: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return "TOOL_CALL" if self.calls else "COMPLETE"

    def words(self) -> int:
        args = (c["function"]["arguments"] for c in self.calls)
        return count_words(self.text, self.thinking, self.tool_plan, *args)

    def message(self) -> dict[str, Any]:
        content = []
        if self.thinking:
            content.append({"type": "thinking", "thinking": self.thinking})
        if self.text or not self.calls:
            content.append({"type": "text", "text": self.text})
        out: dict[str, Any] = {"role": "assistant", "content": content}
        if self.calls:
            out["tool_calls"] = self.calls
            if self.tool_plan:
                out["tool_plan"] = self.tool_plan
        return out


def _answer(body: dict[str, Any], chat: list[dict[str, Any]]) -> _Answer:
    for message in chat:
        if message["role"] == "assistant":
            _calls_of(message)
    offered = _offered(body.get("tools"))
    schema = _schema(body.get("response_format"))
    if schema is not None and offered:
        raise _bad("response_format is not supported with tools")
    last = chat[-1]
    if last["role"] == "tool":
        results = _tool_results(chat)
        if not chained_calls(results, offered):
            return _Answer(text=tool_answer(results))
        text, media = "\n".join(content for _, content in results), list[Any]()
    else:
        text, media = _user(last.get("content"))
    thinking = body.get("thinking")
    thought = ""
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        thought = reasoning_for(text)[0]
    asked = tool_calls_asked(text, offered)
    if asked:
        calls = [
            {
                "id": f"{name}_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for name, arguments in asked
        ]
        plan = ("I will call " + ", ".join(name for name, _ in asked) + ".") if thought else ""
        return _Answer(thinking=thought, tool_plan=plan, calls=calls)
    if schema is not None:
        return _Answer(text=structured_reply(schema, text), thinking=thought)
    return _Answer(text=echo_reply(text + media_note(media), len(chat) - 1), thinking=thought)


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
    if not chat_msgs or chat_msgs[-1]["role"] not in ("user", "tool"):
        raise EmulatorHTTPError(
            400, "invalid request: the last message must be from the user or a tool"
        )
    answer = _answer(body, chat_msgs)
    segments = [Segment(m, count_words(content_text(m.get("content")))) for m in messages]
    cached = prompt_cache(req.emulator, P, str(body["model"]), segments).read
    usage = _usage(sum(s.tokens for s in segments), answer.words(), cached)
    reply_id = str(uuid.uuid4())
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": reply_id,
                "finish_reason": answer.finish_reason,
                "message": answer.message(),
                "usage": usage,
            }
        )
    return SSEResponse(_events(reply_id, answer, usage))


def _events(
    reply_id: str, answer: _Answer, usage: dict[str, Any]
) -> Iterator[tuple[str | None, Any]]:
    def ev(kind: str, **data: Any) -> tuple[str, Any]:
        return kind, {"type": kind, **data}

    def content(**fields: Any) -> dict[str, Any]:
        return {"message": {"content": fields}}

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
    index = 0
    if answer.thinking:
        yield ev("content-start", index=index, delta=content(type="thinking", thinking=""))
        for delta in word_deltas(answer.thinking):
            yield ev("content-delta", index=index, delta=content(thinking=delta))
        yield ev("content-end", index=index)
        index += 1
    if answer.text or not answer.calls:
        yield ev("content-start", index=index, delta=content(type="text", text=""))
        for delta in word_deltas(answer.text):
            yield ev("content-delta", index=index, delta=content(text=delta))
        yield ev("content-end", index=index)
    for delta in word_deltas(answer.tool_plan) if answer.tool_plan else ():
        yield ev("tool-plan-delta", delta={"message": {"tool_plan": delta}})
    for i, call in enumerate(answer.calls):
        start = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        yield ev("tool-call-start", index=i, delta={"message": {"tool_calls": start}})
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):  # in pieces, as on the real API
            piece_call = {"function": {"arguments": piece}}
            yield ev("tool-call-delta", index=i, delta={"message": {"tool_calls": piece_call}})
        yield ev("tool-call-end", index=i)
    yield ev("message-end", delta={"finish_reason": answer.finish_reason, "usage": usage})
