"""``session.switch_provider`` through the real SDKs against the emulator: the local
history goes to the new provider (seeded into its native conversation or sent as hybrid
history), no provider's ids ever reach another provider, the switch survives a restart,
and a failed turn is never carried over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import SessionManager
from langswarm_runtime.errors import ConfigError, ProviderUnavailable
from langswarm_runtime.session.models import SessionBackend
from langswarm_runtime.testing.emulator import ProviderEmulator

NATIVE, HYBRID = SessionBackend.NATIVE, SessionBackend.HYBRID
SYSTEM = "Answer in one line."
FAILED = "this turn failed and must never travel"
ENTRIES = {
    "gpt": "openai",
    "mistral": "mistral",
    "claude": "anthropic",
    "gemini": "gemini",
    "cohere": "cohere",
}


@pytest.fixture
def swarm(five_provider_swarm: Path) -> Path:
    return five_provider_swarm


class Wire:
    """The emulator's recorded requests from a mark on, as text to grep."""

    def __init__(self, emu: ProviderEmulator) -> None:
        self.emu = emu
        self.mark = len(emu.requests)

    def since(self) -> list[Any]:
        return self.emu.requests[self.mark :]

    def text(self) -> str:
        return "\n".join(json.dumps(r.json) + " " + r.path for r in self.since())

    def reset(self) -> None:
        self.mark = len(self.emu.requests)


async def _ids(session: Any) -> set[str]:
    """Every provider-specific id the session holds: its provider state and the ids of
    the stored replies."""
    ids = {str(v) for v in session.record.provider_state.values() if v}
    for m in await session.get_history(include_failed=True):
        if m.provider_message_id:
            ids.add(m.provider_message_id)
    return ids


def _assert_clean(wire: Wire, provider: str, foreign: set[str]) -> str:
    """What went out since the mark went to ``provider`` only, without a foreign id or the
    failed turn; returns it as text."""
    assert {r.provider for r in wire.since()} == {ENTRIES[provider]}
    text = wire.text()
    leaked = sorted(i for i in foreign if i in text)
    assert not leaked, f"ids from another provider reached {provider}: {leaked}"
    assert FAILED not in text
    return text


async def test_switch_chain_carries_history_never_ids(
    swarm: Path, provider_emulator: ProviderEmulator
) -> None:
    wire = Wire(provider_emulator)
    foreign: set[str] = set()

    # 1. OpenAI native: a remote conversation id in the provider state.
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(
            user_id="u", provider="gpt", backend=NATIVE, system_prompt=SYSTEM
        )
        sid = session.session_id
        await session.send_message("alpha one")
        await session.send_message("alpha two")
        assert session.record.provider_state["openai_conversation_id"].startswith("conv_")
        foreign |= await _ids(session)  # now: a failed native turn drops the conversation
        provider_emulator.inject("500", path="/openai/")
        with pytest.raises(ProviderUnavailable):
            await session.send_message(FAILED)
        foreign |= await _ids(session)

        # 2. -> Mistral native: a new remote conversation seeded from the local history.
        await session.switch_provider("mistral", backend="native")
        assert (session.provider, session.backend, session.model) == (
            "mistral",
            NATIVE,
            "mistral-model",
        )
        assert session.record.provider_state == {}
        wire.reset()
        reply = await session.send_message("bravo")
        assert reply.content == "echo: bravo [earlier messages: 4]"  # the failed turn: no
        text = _assert_clean(wire, "mistral", foreign)
        for said in ("alpha one", "alpha two", "echo: alpha two [earlier messages: 2]"):
            assert said in text
        assert session.record.provider_state["mistral_conversation_id"]

    # 3. Restart: the session continues on Mistral (same remote conversation).
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.get_session(sid, user_id="u")
        assert session is not None
        assert (session.provider, session.backend) == ("mistral", NATIVE)
        wire.reset()
        assert (await session.send_message("charlie")).content.endswith("[earlier messages: 6]")
        conv = session.record.provider_state["mistral_conversation_id"]
        assert conv in wire.text() and "alpha one" not in wire.text()  # appended, not resent
        foreign |= await _ids(session)

        # 4. -> Anthropic hybrid: the whole history as messages, no thread.
        await session.switch_provider("claude", backend="hybrid")
        wire.reset()
        reply = await session.send_message("delta")
        assert reply.content == "echo: delta [earlier messages: 8]"
        text = _assert_clean(wire, "claude", foreign)
        [call] = [r.json for r in wire.since()]
        assert "thread" not in call
        contents = [
            m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]
            for m in call["messages"]
        ]
        assert contents[0] == "alpha one" and contents[-1] == "delta"
        assert "echo: charlie [earlier messages: 6]" in contents
        assert session.record.provider_state == {}

    # 5. Restart: still Anthropic hybrid; -> Gemini native (an interaction seeded).
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.get_session(sid, user_id="u")
        assert session is not None
        assert (session.provider, session.backend, session.model) == (
            "claude",
            HYBRID,
            "anthropic-model",
        )
        foreign |= await _ids(session)
        await session.switch_provider("gemini", backend="native")
        wire.reset()
        reply = await session.send_message("echo")
        assert reply.content == "echo: echo [earlier messages: 10]"
        text = _assert_clean(wire, "gemini", foreign)
        for said in ("alpha one", "bravo", "charlie", "delta"):
            assert said in text
        interaction = session.record.provider_state["gemini_interaction_id"]

    # every provider's ids were collected, and each went out to its own provider
    assert {i.split("_")[0] for i in foreign} >= {"conv", "resp", "msg"}
    assert len(foreign) >= 7
    everything = "\n".join(f"{r.path} {json.dumps(r.json)}" for r in provider_emulator.requests)
    assert all(i in everything for i in foreign if i.startswith("conv_"))

    async with SessionManager.from_config(swarm) as manager:
        session = await manager.get_session(sid, user_id="u")
        assert session is not None and (session.provider, session.backend) == ("gemini", NATIVE)
        wire.reset()
        assert (await session.send_message("foxtrot")).content.endswith("[earlier messages: 12]")
        [call] = [r.json for r in wire.since()]
        assert call["previous_interaction_id"] == interaction  # its own id, continued
        history = await session.get_history()
        assert [m.content for m in history if m.role == "user"] == [
            "alpha one",
            "alpha two",
            "bravo",
            "charlie",
            "delta",
            "echo",
            "foxtrot",
        ]
        providers = [m.metadata.get("provider") for m in history if m.role == "assistant"]
        assert providers == ["gpt", "gpt", "mistral", "mistral", "claude", "gemini", "gemini"]


@pytest.mark.parametrize("streamed", [False, True])
async def test_switching_back_starts_a_new_remote_conversation(
    swarm: Path, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(user_id="u", provider="gpt", backend=NATIVE)
        await session.send_message("one")
        old = session.record.provider_state["openai_conversation_id"]
        await session.switch_provider("cohere")  # no native mode: auto picks hybrid
        assert session.backend is HYBRID
        await session.send_message("two")
        await session.switch_provider("gpt", backend=NATIVE)
        wire = Wire(provider_emulator)
        if streamed:
            text = "".join([d async for d in session.stream_message("three")])
        else:
            text = (await session.send_message("three")).content
        assert text == "echo: three [earlier messages: 4]"
        new = session.record.provider_state["openai_conversation_id"]
        assert new != old and old not in wire.text()
        created = [r for r in wire.since() if r.path.endswith("/v1/conversations")]
        assert len(created) == 1 and "two" in json.dumps(created[0].json)


async def test_bad_switch_changes_nothing(swarm: Path, provider_emulator: ProviderEmulator) -> None:
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(user_id="u", provider="gpt", backend=NATIVE)
        await session.send_message("one")
        before = session.record
        with pytest.raises(ConfigError, match="unknown provider 'nope'"):
            await session.switch_provider("nope")
        with pytest.raises(ConfigError, match="no native mode"):
            await session.switch_provider("cohere", backend="native")
        after = session.record
        assert (after.provider, after.backend, after.provider_state) == (
            before.provider,
            before.backend,
            before.provider_state,
        )
        assert (await session.send_message("two")).content.endswith("[earlier messages: 2]")
        sid = session.session_id
    async with SessionManager.from_config(swarm) as manager:
        stored = await manager.get_session(sid, user_id="u")
        assert stored is not None and stored.provider == "gpt"
