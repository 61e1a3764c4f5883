"""The pieces of a rich turn that need no session: what callers may send, the events a
turn yields, structured-output schemas and their checks, and which tool calls are owed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ValidationError

from langswarm_runtime.errors import (
    InvalidMessage,
    LangSwarmError,
    ProviderBadResponse,
    ProviderError,
)
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

__all__ = [
    "TurnEvent",
    "answered_results",
    "describe",
    "owed_calls",
    "parse_reply",
    "reraise",
    "response_format_spec",
    "user_message",
]

_INPUT_PARTS = (TextPart, ImagePart, FilePart)


@dataclass(frozen=True)
class TurnEvent:
    """One event of ``Session.stream_events``; ``type`` says which field is set:

    - ``text``: ``text``, a delta of the model's text;
    - ``reasoning``: ``reasoning``, a ReasoningPart of a reply;
    - ``tool_call``: ``call``, a ToolCall the model made (run next, or owed by the caller);
    - ``tool_result``: ``result``, the ToolResult of a tool the runtime ran;
    - ``done``: ``message``, the turn's final reply as committed (with ``tool_calls``
      when the caller owes results).
    """

    type: Literal["text", "reasoning", "tool_call", "tool_result", "done"]
    text: str = ""
    reasoning: ReasoningPart | None = None
    call: ToolCall | None = None
    result: ToolResult | None = None
    message: Message | None = None


def user_message(content: object) -> Message:
    """A user message from a string, one part, or a list of strings and parts. Only
    text, images and files come from a caller (tool results go through
    ``send_tool_results``)."""
    if isinstance(content, str):
        return Message(role="user", content=content)
    items: Sequence[object]
    if isinstance(content, BaseModel):
        items = [content]
    elif isinstance(content, (list, tuple)):
        items = content
    else:
        raise InvalidMessage(
            f"message must be a string, a part or a list of them, not {type(content).__name__}"
        )
    parts: list[Part] = []
    for item in items:
        if isinstance(item, str):
            parts.append(TextPart(text=item))
        elif isinstance(item, _INPUT_PARTS):
            parts.append(item)
        elif isinstance(item, (ToolCall, ToolResult, ReasoningPart)):
            hint = " (send tool results with send_tool_results)" if isinstance(
                item, ToolResult) else ""  # fmt: skip
            raise InvalidMessage(f"a user message cannot hold a {item.type} part{hint}")
        else:
            raise InvalidMessage(f"not a message part: {type(item).__name__}")
    if not parts:
        raise InvalidMessage("message is empty")
    return Message(role="user", parts=parts)


def response_format_spec(response_format: object) -> dict[str, Any] | None:
    """``{"name", "schema", "strict"}`` for a pydantic model class or a JSON Schema."""
    if response_format is None:
        return None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return {
            "name": response_format.__name__,
            "schema": response_format.model_json_schema(),
            "strict": True,
        }
    if isinstance(response_format, dict):
        if response_format.get("type") not in ("object", None):
            raise InvalidMessage("response_format must describe a JSON object")
        name = str(response_format.get("title") or "response")
        return {"name": name, "schema": response_format, "strict": False}
    raise InvalidMessage(
        "response_format must be a pydantic model class or a JSON Schema dict, not "
        f"{type(response_format).__name__}"
    )


def parse_reply(text: str, response_format: object, *, provider: str) -> Any:
    """The reply's JSON validated against ``response_format``; ``ProviderBadResponse``
    when it is not JSON or does not validate."""
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        try:
            return response_format.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "reply"
            raise ProviderBadResponse(
                f"reply does not match {response_format.__name__}: {where}: {first['msg']}",
                provider=provider,
            ) from None
    try:
        value = json.loads(text)
    except ValueError:
        raise ProviderBadResponse("reply is not JSON", provider=provider) from None
    assert isinstance(response_format, dict)
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema ships with the test extra
        return value
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(response_format).iter_errors(value)
    )
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "reply"
        raise ProviderBadResponse(
            f"reply does not match the schema: {where}: {error.message}", provider=provider
        )
    return value


def owed_calls(tail: Sequence[Message]) -> list[ToolCall]:
    """The tool calls the committed history still owes results for: those of its last
    assistant message with calls, when only tool messages follow it."""
    answered: set[str] = set()
    for message in reversed(tail):
        if message.role == "tool":
            answered.update(r.call_id for r in message.tool_results)
            continue
        if message.role == "assistant":
            return [c for c in message.tool_calls if c.id not in answered]
        return []
    return []


def describe(message: Message) -> str:
    """A message as readable text: its text, then one line per tool call, tool result,
    attachment or reasoning part (for summaries, the CLI and markdown exports)."""
    lines = [message.content] if message.content else []
    for part in message.parts:
        if isinstance(part, ToolCall):
            lines.append(f"[tool call {part.name} {json.dumps(part.arguments, ensure_ascii=False)}]")
        elif isinstance(part, ToolResult):
            status = " (error)" if part.is_error else ""
            lines.append(f"[tool {part.name or part.call_id} returned{status}: {part.content}]")
        elif isinstance(part, (ImagePart, FilePart)):
            name = f" {part.name}" if isinstance(part, FilePart) and part.name else ""
            where = part.url or (f"{part.size} bytes" if part.size is not None else "")
            lines.append(f"[{part.type}{name} {part.media_type} {where}]".replace("  ", " "))
        elif isinstance(part, ReasoningPart) and part.text:
            lines.append(f"[reasoning: {part.text}]")
    return "\n".join(lines)


def answered_results(tail: Sequence[Message]) -> list[ToolResult]:
    """The results already committed for the last assistant message with calls (the
    runtime's own, in a round where the caller owes the rest)."""
    found: list[ToolResult] = []
    for message in reversed(tail):
        if message.role == "tool":
            found[:0] = message.tool_results
            continue
        return found if message.role == "assistant" and message.tool_calls else []
    return []


def reraise(exc: BaseException, provider: str) -> NoReturn:
    """Raise ``exc`` itself when it is already typed (or a cancellation), else its
    ProviderError translation chained to it."""
    translated = translate(exc, provider)
    if translated is exc:
        raise exc
    raise translated from exc


def translate(exc: BaseException, provider: str) -> BaseException:
    """Typed errors pass through; anything else from an adapter becomes a ProviderError
    (without the original message, which could carry request details)."""
    if isinstance(exc, (LangSwarmError, asyncio.CancelledError, GeneratorExit)):
        return exc
    if not isinstance(exc, Exception):
        return exc
    return ProviderError(
        f"unexpected {type(exc).__name__} from the provider adapter", provider=provider
    )
