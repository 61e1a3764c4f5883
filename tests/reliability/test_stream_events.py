"""A malformed stream event is an error, not a shorter reply.

For every provider's streaming wire (OpenAI Responses and Chat Completions, Anthropic
Messages, Gemini generateContent and Interactions, Cohere v2 chat, Mistral chat and
Conversations), in hybrid and, where it exists, native mode: a stream with one event that
is not JSON (``bad_event``), with its terminal event out of place (``out_of_order``) or
that ends cleanly before its terminal event (``truncated``) fails the turn with
``ProviderBadResponse``. Nothing of the turn is committed (``get_history()`` unchanged),
``get_history(include_failed=True)`` shows it failed, and the next turn works and never
sends the failed message. Checked on SQLite, PostgreSQL and Redis.

Real parts: the official SDKs over HTTP to the loopback emulator, which spoils the
stream after the route ran (so native server-side state has changed, as when a real
answer is lost on the way back); the real storages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import MessageStatus, SessionManager
from langswarm_runtime.errors import ProviderBadResponse
from langswarm_runtime.testing.emulator import ProviderEmulator

#: (case id, provider type, extra entry options, backend)
WIRES = [
    ("openai-responses", "openai", {}, "hybrid"),
    ("openai-conversations", "openai", {}, "native"),
    ("openai-chat-completions", "openai", {"api": "chat_completions"}, "hybrid"),
    ("anthropic-messages", "anthropic", {}, "hybrid"),
    ("anthropic-threads", "anthropic", {}, "native"),
    ("gemini-generate-content", "gemini", {}, "hybrid"),
    ("gemini-interactions", "gemini", {}, "native"),
    ("cohere-chat", "cohere", {}, "hybrid"),
    ("mistral-chat", "mistral", {}, "hybrid"),
    ("mistral-conversations", "mistral", {}, "native"),
]
FAULTS = ("bad_event", "out_of_order", "truncated")


@pytest.fixture
def open_manager(
    tmp_path: Path, storage_config: dict[str, Any], provider_emulator: ProviderEmulator
) -> Callable[..., Any]:
    """``async with open_manager(provider, backend, **entry)``: a SessionManager from a
    swarm.yaml on this test's storage, its one provider entry pointing at the emulator."""

    @asynccontextmanager
    async def open_(provider: str, backend: str, **entry: Any) -> AsyncIterator[Any]:
        doc = {
            "version": 1,
            "storage": storage_config,
            "defaults": {"provider": "subject", "backend": backend},
            "providers": {
                "subject": {
                    "type": provider,
                    "model": "test-model",
                    "api_key": "test-key-0123456789abcdef",
                    "base_url": provider_emulator.url(provider),
                    # Retries allowed: a stream that began is still never replayed.
                    "max_retries": 2,
                    "timeout": 10,
                    **entry,
                }
            },
        }
        path = tmp_path / "swarm.yaml"
        path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
        async with SessionManager.from_config(path) as manager:
            yield manager

    return open_


async def stream(session: Any, text: str) -> str:
    return "".join([chunk async for chunk in session.stream_message(text)])


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize(
    ("provider", "entry", "backend"),
    [pytest.param(p, e, b, id=case) for case, p, e, b in WIRES],
)
async def test_spoiled_stream_fails_the_turn(
    open_manager: Callable[..., Any],
    provider_emulator: ProviderEmulator,
    provider: str,
    entry: dict[str, Any],
    backend: str,
    fault: str,
) -> None:
    async with open_manager(provider, backend, **entry) as manager:
        session = await manager.create_session(user_id="u")
        assert session.backend.value == backend
        assert await stream(session, "kept") == "echo: kept [earlier messages: 0]"
        before = await session.get_history()
        provider_emulator.clear()
        provider_emulator.inject(fault)

        with pytest.raises(ProviderBadResponse) as info:
            await stream(session, "lost")

        assert type(info.value) is ProviderBadResponse, repr(info.value)
        assert [r.fault for r in provider_emulator.requests] == [fault], (
            "a begun stream is not replayed"
        )
        assert await session.get_history() == before, "nothing of the turn committed"
        everything = await session.get_history(include_failed=True)
        failed = [(m.role, m.content) for m in everything if m.status is MessageStatus.FAILED]
        assert failed == [("user", "lost")]
        assert [m for m in everything if m.status is not MessageStatus.FAILED] == before
        # The session goes on; the failed message never reaches the provider again.
        assert await stream(session, "after") == "echo: after [earlier messages: 2]"
        sent = json.dumps(provider_emulator.requests[-1].json)
        assert "lost" not in sent
        sid = session.session_id
    async with open_manager(provider, backend, **entry) as manager:  # and after a restart
        again = await manager.get_session(sid, user_id="u")
        assert again is not None
        assert [(m.role, m.content) for m in await again.get_history()] == [
            ("user", "kept"), ("assistant", "echo: kept [earlier messages: 0]"),
            ("user", "after"), ("assistant", "echo: after [earlier messages: 2]"),
        ]  # fmt: skip
