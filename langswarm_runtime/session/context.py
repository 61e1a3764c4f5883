"""Context-window policy for hybrid sessions (minimal version: newest max_messages,
whole turns). The middleware/context work replaces this with the full policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from langswarm_runtime.providers.base import ContextConfig
from langswarm_runtime.session.models import Message, MessageStatus
from langswarm_runtime.session.storage.base import ISessionStorage


async def select_context(
    storage: ISessionStorage,
    session_id: str,
    policy: ContextConfig,
    *,
    system_prompt: str | None = None,
    count_tokens: Callable[[str], int] | None = None,
    summarize: Callable[[list[Message]], Awaitable[str]] | None = None,
) -> list[Message]:
    messages = await storage.load_messages(
        session_id, last=policy.max_messages, statuses=[MessageStatus.COMMITTED]
    )
    messages = [m for m in messages if m.role in ("user", "assistant")]
    # never start the window in the middle of a turn
    while messages and messages[0].role != "user":
        messages.pop(0)
    return messages
