"""A malformed stream event is an error, not a shorter reply.

For every provider's streaming wire (OpenAI Responses and Chat Completions, Anthropic
Messages, Gemini generateContent and Interactions, Cohere v2 chat, Mistral chat and
Conversations), in hybrid and, where it exists, native mode: a stream with one event that
is not JSON (``bad_event``), with its terminal event out of place (``out_of_order``) or
that ends cleanly before its terminal event (``truncated``) fails the turn with
``ProviderBadResponse``. Nothing of the turn is committed (``get_history()`` unchanged),
``get_history(include_failed=True)`` shows it failed, and the next turn works and never
sends the failed message. The whole-reply path likewise, for a body that is not JSON
(``malformed``, before the route runs; ``bad_event``, after it ran). Checked on SQLite,
PostgreSQL and Redis.

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
#: (fault, streamed)
FAULTS = [
    ("bad_event", True),
    ("out_of_order", True),
    ("truncated", True),
    ("malformed", False),
    ("bad_event", False),
]


@pytest.fixture
def open_manager(
    tmp_path: Path,
    storage_kind: str,
    storage_config: dict[str, Any],
    provider_emulator: ProviderEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    """``async with open_manager(provider, backend, **entry)``: a SessionManager from a
    swarm.yaml on this test's storage, its one provider entry pointing at the emulator."""
    # The storage plugin, and no other installed plugin, is loaded.
    monkeypatch.setenv("LANGSWARM_LOAD_PLUGINS", "" if storage_kind == "sqlite" else storage_kind)

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
                    # Retries allowed: a spoiled answer is still never replayed.
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


async def say(session: Any, text: str, streamed: bool) -> str:
    if streamed:
        return await stream(session, text)
    return str((await session.send_message(text)).content)


def _wires(*names: str) -> list[Any]:
    return [pytest.param(p, e, b, id=case) for case, p, e, b in WIRES if not names or case in names]


_faults = pytest.mark.parametrize(
    ("fault", "streamed"),
    [pytest.param(f, s, id=f"{f}-{'streamed' if s else 'plain'}") for f, s in FAULTS],
)


@_faults
@pytest.mark.parametrize(("provider", "entry", "backend"), _wires())
@pytest.mark.parametrize("storage_kind", ["sqlite"], indirect=True)
async def test_spoiled_answer_fails_the_turn(
    open_manager: Callable[..., Any],
    provider_emulator: ProviderEmulator,
    provider: str,
    entry: dict[str, Any],
    backend: str,
    fault: str,
    streamed: bool,
) -> None:
    """Every wire, on SQLite."""
    await _check_spoiled_turn(
        open_manager, provider_emulator, provider, entry, backend, fault, streamed
    )


@_faults
@pytest.mark.parametrize(
    ("provider", "entry", "backend"), _wires("cohere-chat", "openai-conversations")
)
async def test_spoiled_answer_commits_nothing_on_every_storage(
    open_manager: Callable[..., Any],
    provider_emulator: ProviderEmulator,
    provider: str,
    entry: dict[str, Any],
    backend: str,
    fault: str,
    streamed: bool,
) -> None:
    """The same on SQLite, PostgreSQL and Redis, for a hybrid and a native wire."""
    await _check_spoiled_turn(
        open_manager, provider_emulator, provider, entry, backend, fault, streamed
    )


async def _check_spoiled_turn(
    open_manager: Callable[..., Any],
    provider_emulator: ProviderEmulator,
    provider: str,
    entry: dict[str, Any],
    backend: str,
    fault: str,
    streamed: bool,
) -> None:
    async with open_manager(provider, backend, **entry) as manager:
        session = await manager.create_session(user_id="u")
        assert session.backend.value == backend
        assert await stream(session, "kept") == "echo: kept [earlier messages: 0]"
        before = await session.get_history()
        provider_emulator.clear()
        provider_emulator.inject(fault)

        with pytest.raises(ProviderBadResponse) as info:
            await say(session, "lost", streamed)

        assert type(info.value) is ProviderBadResponse, repr(info.value)
        assert [r.fault for r in provider_emulator.requests] == [fault], "never replayed"
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
