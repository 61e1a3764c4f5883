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

if TYPE_CHECKING:
    from langswarm_runtime.session.session import Session

__all__ = ["ISessionMiddleware", "middleware_name", "run_incoming", "run_outgoing"]


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


def middleware_name(mw: object) -> str:
    return getattr(mw, "name", None) or type(mw).__name__


async def _call(mw: object, hook: str, session: Session, message: Message) -> Message:
    fn = getattr(mw, hook, None)
    if fn is None:
        return message
    try:
        result = fn(session, message)
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
        return message
    if not isinstance(result, Message):
        raise MiddlewareError(
            f"middleware {middleware_name(mw)!r} returned {type(result).__name__} from {hook},"
            " expected a Message",
            middleware=middleware_name(mw),
        )
    return result


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
