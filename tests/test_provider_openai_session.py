"""OpenAI sessions end to end: SessionManager -> adapter -> real SDK -> emulator, across a
restart (a new manager on the same SQLite file), native and hybrid, plain and streamed."""

from __future__ import annotations

from pathlib import Path

import pytest

from langswarm_runtime import SessionManager
from langswarm_runtime.errors import ProviderUnavailable
from langswarm_runtime.session.models import MessageStatus, SessionBackend
from langswarm_runtime.testing.emulator import ProviderEmulator

KEY = "sk-session-secret-abcdef0123456789"

CONFIG = """\
version: 1
storage: {{type: sqlite, path: "{db}"}}
providers:
  gpt:
    type: openai
    model: gpt-test
    api_key: {key}
    base_url: "{url}"
    max_retries: 0
    timeout: 5
"""


@pytest.fixture
def swarm_yaml(tmp_path: Path, provider_emulator: ProviderEmulator) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        CONFIG.format(db=tmp_path / "s.db", key=KEY, url=provider_emulator.url("openai")),
        encoding="utf-8",
    )
    return path


async def _say(session: object, text: str, streamed: bool) -> str:
    if streamed:
        return "".join([d async for d in session.stream_message(text)])  # type: ignore[attr-defined]
    return (await session.send_message(text)).content  # type: ignore[attr-defined]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("backend", [SessionBackend.HYBRID, SessionBackend.NATIVE])
async def test_restart_mid_conversation(
    swarm_yaml: Path,
    provider_emulator: ProviderEmulator,
    backend: SessionBackend,
    streamed: bool,
) -> None:
    async with SessionManager.from_config(swarm_yaml) as manager:
        session = await manager.create_session(
            user_id="u1", provider="gpt", backend=backend, system_prompt="Be terse."
        )
        sid = session.session_id
        assert await _say(session, "one", streamed) == "echo: one [earlier messages: 0]"
        assert await _say(session, "two", streamed) == "echo: two [earlier messages: 2]"

    async with SessionManager.from_config(swarm_yaml) as manager:  # the "restart"
        session = await manager.get_session(sid, user_id="u1")
        assert session is not None
        assert await _say(session, "three", streamed) == "echo: three [earlier messages: 4]"
        history = await session.get_history()
        assert [m.content for m in history if m.role == "user"] == ["one", "two", "three"]

    turns = [r for r in provider_emulator.requests if r.path.endswith("/responses")]
    if backend is SessionBackend.NATIVE:
        # one conversation, created once; every turn sends only its new message
        assert (
            len([r for r in provider_emulator.requests if r.path.endswith("/conversations")]) == 1
        )
        assert len({r.json["conversation"] for r in turns}) == 1
        assert all(len(r.json["input"]) == 1 for r in turns)
    else:
        assert all(r.json["store"] is False for r in turns)
        assert len(turns[-1].json["input"]) == 1 + 4 + 1  # system + history + new
    assert all(KEY not in repr(r.headers) for r in provider_emulator.requests)


async def test_native_lost_conversation_after_restart_is_reseeded(
    swarm_yaml: Path, provider_emulator: ProviderEmulator
) -> None:
    async with SessionManager.from_config(swarm_yaml) as manager:
        session = await manager.create_session(
            user_id="u1", provider="gpt", backend=SessionBackend.NATIVE
        )
        sid = session.session_id
        await session.send_message("one")
    provider_emulator.forget_conversations()
    async with SessionManager.from_config(swarm_yaml) as manager:
        session = await manager.get_session(sid, user_id="u1")
        assert session is not None
        reply = await session.send_message("two")
        # the new conversation was seeded from the local mirror: no error, full context
        assert reply.content == "echo: two [earlier messages: 2]"
        reply = await session.send_message("three")
        assert reply.content == "echo: three [earlier messages: 4]"


@pytest.mark.parametrize("streamed", [False, True])
async def test_fault_leaves_failed_turn_and_clean_history(
    swarm_yaml: Path, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    async with SessionManager.from_config(swarm_yaml) as manager:
        session = await manager.create_session(
            user_id="u1", provider="gpt", backend=SessionBackend.HYBRID
        )
        await session.send_message("one")
        provider_emulator.inject("stream_break" if streamed else "503", path=r"/responses$")
        with pytest.raises(ProviderUnavailable):
            await _say(session, "lost", streamed)
        reply = await session.send_message("two")
        assert reply.content == "echo: two [earlier messages: 2]"  # the failed turn is out
        committed = await session.get_history()
        assert [m.content for m in committed if m.role == "user"] == ["one", "two"]
        everything = await session.get_history(include_failed=True)
        assert [m.content for m in everything if m.status is MessageStatus.FAILED] == ["lost"]
