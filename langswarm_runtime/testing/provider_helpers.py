"""Small helpers for provider adapter tests: build a ``ProviderRequest``, run one turn
plain or streamed (checking the streaming contract on the way), talk to a session.

Used by :mod:`langswarm_runtime.testing.provider_suite` and by the provider-specific tests
that sit next to it; plugin authors can use them for their own wire-shape tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langswarm_runtime.providers.base import Provider, ProviderReply, ProviderRequest
from langswarm_runtime.session.models import Message, SessionBackend

__all__ = [
    "HISTORY",
    "collect_stream",
    "content_text",
    "make_request",
    "provider_turn",
    "say",
    "sqlite_files_contain",
]

#: One earlier exchange, for requests that need some history.
HISTORY: list[Message] = [
    Message(role="user", content="first question"),
    Message(role="assistant", content="first answer"),
]


def content_text(content: Any) -> str:
    """The text of a wire message's content: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


def make_request(
    text: str = "hello there",
    *,
    backend: SessionBackend = SessionBackend.HYBRID,
    history: list[Message] | None = None,
    mirror: list[Message] | None = None,
    state: dict[str, Any] | None = None,
    system_prompt: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> ProviderRequest:
    """A request as a session builds it. HYBRID sends ``history``; NATIVE sends none and
    ``load_history()`` returns the local mirror (``mirror``, else ``history``) for
    seeding a new remote conversation."""
    hybrid = backend is SessionBackend.HYBRID
    seed = list(mirror if mirror is not None else (history or []))

    async def load_history() -> list[Message]:
        return list(seed)

    return ProviderRequest(
        message=Message(role="user", content=text),
        model=None,
        backend=backend,
        system_prompt=system_prompt,
        history=list(history or []) if hybrid else [],
        state=dict(state or {}),
        load_history=load_history,
        max_tokens=max_tokens,
        temperature=temperature,
    )


async def collect_stream(
    provider: Provider, request: ProviderRequest
) -> tuple[list[str], ProviderReply]:
    """Run ``provider.stream`` to the end; checks the contract: text deltas first, then
    exactly one final ``ProviderReply`` whose content is the deltas joined."""
    deltas: list[str] = []
    final: ProviderReply | None = None
    async for item in provider.stream(request):
        if isinstance(item, ProviderReply):
            assert final is None, "exactly one final reply"
            final = item
        else:
            assert final is None, "deltas come before the final reply"
            assert isinstance(item, str), f"a delta is text, not {type(item).__name__}"
            deltas.append(item)
    assert final is not None, "the stream ended without a final reply"
    assert "".join(deltas) == final.content, "the final reply is the deltas joined"
    return deltas, final


async def provider_turn(
    provider: Provider, request: ProviderRequest, streamed: bool
) -> ProviderReply:
    """One turn through ``send`` or ``stream`` (the streaming contract checked)."""
    if not streamed:
        return await provider.send(request)
    _, final = await collect_stream(provider, request)
    return final


async def say(session: Any, text: str, streamed: bool) -> str:
    """One session turn, plain or streamed; returns the reply text."""
    if streamed:
        return "".join([chunk async for chunk in session.stream_message(text)])
    reply = await session.send_message(text)
    return str(reply.content)


def sqlite_files_contain(db: Path, needle: str) -> bool:
    """Whether ``needle`` occurs in the SQLite database file or its journal/WAL files."""
    data = needle.encode()
    for path in db.parent.glob(db.name + "*"):
        if path.is_file() and data in path.read_bytes():
            return True
    return False
