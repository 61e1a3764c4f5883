"""The middleware contract and the chain runner.

A middleware sees every message going out (user -> provider) and coming back
(provider -> user). Each hook may be sync or async, returns the message to use, or raises
``MessageRejected``. Outgoing runs in declared order, incoming in reverse.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langswarm_runtime.errors import LangSwarmError, MessageRejected, MiddlewareError
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import TextPart, ToolCall, ToolResult, text_of

if TYPE_CHECKING:
    from langswarm_runtime.session.session import Session

__all__ = [
    "ISessionMiddleware",
    "middleware_name",
    "run_incoming",
    "run_outgoing",
    "run_tool_calls_chain",
    "run_tool_results_chain",
]


class ISessionMiddleware:
    """Base class for middlewares. Override either hook; the defaults pass messages through.

    ``name`` appears in errors and audit output. ``filters_deltas = True`` declares that
    ``process_stream_delta`` may rewrite streamed text deltas; otherwise streamed text is
    shown as it arrives and the chain runs on the complete reply before it is committed.
    """

    name: str | None = None
    filters_deltas: bool = False

    def process_outgoing_message(self, session: Session, message: Message) -> Any:
        return message

    def process_incoming_message(self, session: Session, message: Message) -> Any:
        return message

    def process_stream_delta(self, session: Session, delta: str) -> Any:
        return delta

    # Optional, for tool turns (a middleware without them sees tool calls and results
    # only as parts of the messages above):
    # def process_tool_call(self, session, call: ToolCall) -> ToolCall
    #     a call the model made, before it is stored and sent back with its result;
    # def process_tool_result(self, session, result: ToolResult) -> ToolResult
    #     a tool's result, before it is stored and sent to the provider.


def middleware_name(mw: object) -> str:
    return getattr(mw, "name", None) or type(mw).__name__


async def _call(mw: object, hook: str, session: Session, message: Message) -> Message:
    result = await _invoke(mw, hook, session, message, Message)
    return message if result is message else _resync(message, result)


async def _invoke(mw: object, hook: str, session: Session, value: Any, kind: type) -> Any:
    """``mw.hook(session, value)`` (sync or async): what it returns (``value`` for None),
    checked to be a ``kind``. A bug in it is a MiddlewareError naming the middleware."""
    fn = getattr(mw, hook, None)
    if fn is None:
        return value
    try:
        result = fn(session, value)
        if inspect.isawaitable(result):
            result = await result
    except MessageRejected as exc:
        if exc.middleware is None:
            exc.middleware = middleware_name(mw)
        raise
    except LangSwarmError:
        raise
    except Exception as exc:  # a middleware bug must not commit anything
        raise MiddlewareError(
            f"middleware {middleware_name(mw)!r} failed in {hook}: {type(exc).__name__}: {exc}",
            middleware=middleware_name(mw),
        ) from exc
    if result is None:
        return value
    if not isinstance(result, kind):
        raise MiddlewareError(
            f"middleware {middleware_name(mw)!r} returned {type(result).__name__} from {hook},"
            f" expected a {kind.__name__}",
            middleware=middleware_name(mw),
        )
    return result


def _resync(before: Message, after: Message) -> Message:
    """Keep ``content`` the text of ``parts`` after a middleware edited one of them
    (most edit ``content`` with ``model_copy``, which does not re-validate): edited
    content replaces the text parts (at the first one's place); edited parts give the
    content."""
    if not after.parts:
        return after
    text = text_of(after.parts)
    if after.content == text:
        return after
    if after.content != before.content:
        parts: list[Any] = []
        placed = False
        for part in after.parts:
            if isinstance(part, TextPart):
                if not placed and after.content:
                    parts.append(TextPart(text=after.content))
                placed = True
                continue
            parts.append(part)
        if not placed and after.content:
            parts.insert(0, TextPart(text=after.content))
        return after.model_copy(update={"parts": parts})
    return after.model_copy(update={"content": text})


async def _run_parts(
    chain: Sequence[object], session: Session, message: Message, hook: str, kind: type
) -> Message:
    hooked = [mw for mw in chain if getattr(mw, hook, None) is not None]
    if not hooked:
        return message
    parts = []
    for part in message.parts:
        if isinstance(part, kind):
            for mw in hooked:
                part = await _invoke(mw, hook, session, part, kind)
        parts.append(part)
    return message.model_copy(update={"parts": parts})


async def run_tool_calls_chain(
    chain: Sequence[object], session: Session, message: Message
) -> Message:
    """``process_tool_call`` of the chain (reverse order, like replies) on each call of
    an assistant message."""
    return await _run_parts(list(reversed(chain)), session, message, "process_tool_call", ToolCall)


async def run_tool_results_chain(
    chain: Sequence[object], session: Session, message: Message
) -> Message:
    """``process_tool_result`` of the chain (declared order) on each result of a tool
    message."""
    return await _run_parts(chain, session, message, "process_tool_result", ToolResult)


async def run_outgoing(
    chain: Sequence[object], session: Session, message: Message
) -> Message:
    """Run the chain in declared order on a user message."""
    for mw in chain:
        message = await _call(mw, "process_outgoing_message", session, message)
    return message


async def run_incoming(
    chain: Sequence[object], session: Session, message: Message
) -> Message:
    """Run the chain in reverse order on a provider reply."""
    for mw in reversed(chain):
        message = await _call(mw, "process_incoming_message", session, message)
    return message
