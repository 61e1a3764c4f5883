"""A native provider never holds a turn the mirror does not.

For each provider with a native mode (the remote side holds the conversation), after a
process is SIGKILLed mid-turn (plain and streamed) and through a storm of timeouts with
``max_retries: 2``, what the provider holds for the session's conversation, that is what
the model is given as context, is exactly the system prompt and the committed history
(``get_history()``): no interrupted, failed or duplicated turn.

Real parts throughout: the official SDKs over HTTP to the loopback emulator, whose
server-side state (conversations, threads, interactions) is read back; a real OS process
killed with SIGKILL; SQLite storage (the storage kind does not matter here).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import Message, MessageStatus, SessionManager
from langswarm_runtime.errors import ProviderTimeout
from langswarm_runtime.testing.emulator import ProviderEmulator
from langswarm_runtime.testing.emulator._wire import content_text
from langswarm_runtime.testing.provider_helpers import say

PROVIDERS = ("openai", "mistral", "anthropic", "gemini")
SYSTEM = "Be brief."
#: The emulator holds a ``slow`` request this long before it runs (and changes state).
SLOW = 1.0

# A child process running one turn of an existing session from a swarm.yaml. It is
# killed while the emulator holds the request, so it never gets to print anything.
CHILD = r"""
import asyncio, sys
from langswarm_runtime import SessionManager

async def main(config, sid, streamed):
    async with SessionManager.from_config(config) as manager:
        session = await manager.require_session(sid)
        if streamed == "1":
            async for _ in session.stream_message("cut off"):
                pass
        else:
            await session.send_message("cut off")
    print("the turn finished: the kill came too late", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def write_config(
    path: Path, emu: ProviderEmulator, provider: str, *, db: Path, **entry: Any
) -> Path:
    doc = {
        "version": 1,
        "storage": {"type": "sqlite", "path": str(db)},
        "defaults": {"provider": "subject", "backend": "native"},
        "providers": {
            "subject": {
                "type": provider,
                "model": "test-model",
                "api_key": "test-key-0123456789",
                "base_url": emu.url(provider),
                **entry,
            }
        },
    }
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    return path


@pytest.fixture
def open_manager(tmp_path: Path) -> Callable[[Path], Any]:
    @asynccontextmanager
    async def opened(config: Path) -> AsyncIterator[SessionManager]:
        async with SessionManager.from_config(config) as manager:
            yield manager

    return opened


def remote_context(emu: ProviderEmulator, provider: str, state: dict[str, Any]) -> list[tuple[str, str]]:
    """What the emulator holds for the conversation ``state`` points at (system text
    first), as (role, text) with roles system/user/assistant. Its last turn is the one
    just answered, so the rest is exactly what the model was given as its context."""
    held = emu.provider_state(provider)
    with emu.lock:
        if provider == "openai":
            conv = held["conversations"][state["openai_conversation_id"]]
            return [
                ("system" if i["role"] in ("system", "developer") else i["role"],
                 content_text(i["content"], part_type=None))
                for i in conv["items"]
            ]  # fmt: skip
        if provider == "mistral":
            conv = held["conversations"][state["mistral_conversation_id"]]
            system = [("system", conv["instructions"])] if conv["instructions"] else []
            return system + [(e["role"], e["text"]) for e in conv["entries"]
                             if e["kind"] == "message"]  # fmt: skip
        if provider == "anthropic":
            thread = held["threads"][state["anthropic_previous_message_id"]]
            system = [("system", thread["system"])] if thread["system"] else []
            return system + [(m["role"], content_text(m["content"])) for m in thread["messages"]]
        interaction = held["interactions"][state["gemini_interaction_id"]]
        system = [("system", interaction["system"])] if interaction["system"] else []
        roles = {"model": "assistant", "user": "user"}
        return system + [
            (roles[role], "".join(it.get("text", "") for it in items if it["k"] == "text"))
            for role, items in interaction["turns"]
        ]


def held_anywhere(emu: ProviderEmulator, provider: str, text: str) -> bool:
    """Whether any conversation, thread or interaction the emulator holds has ``text``."""
    with emu.lock:
        return text in json.dumps(emu.provider_state(provider), default=str)


def pairs(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages]


async def assert_mirrored(session: Any, emu: ProviderEmulator, provider: str) -> None:
    """The provider's copy of the conversation is the committed history, exactly."""
    emu.wait_idle()  # requests whose client gave up still run to their end
    history = await session.get_history()
    held = remote_context(emu, provider, session.record.provider_state)
    assert held == [("system", SYSTEM), *pairs(history)]


# ---------------------------------------------------------------------------- SIGKILL


async def _wait_for_request(emu: ProviderEmulator, proc: asyncio.subprocess.Process) -> None:
    # A safety net, not a timing assertion: a loaded machine takes long to import SDKs.
    deadline = time.monotonic() + 300
    while not any(r.fault == "slow" for r in emu.requests):
        if proc.returncode is not None:
            out, err = await proc.communicate()
            pytest.fail(f"the child ended before its turn reached the emulator: {out!r}{err!r}")
        if time.monotonic() > deadline:
            pytest.fail("the child's turn never reached the emulator")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sigkill_mid_turn_leaves_no_phantom_turn(
    provider: str, streamed: bool, tmp_path: Path, provider_emulator: ProviderEmulator,
    open_manager: Callable[[Path], Any],
) -> None:  # fmt: skip
    emu = provider_emulator
    config = write_config(
        tmp_path / "swarm.yaml", emu, provider, db=tmp_path / "s.db", timeout=30
    )
    async with open_manager(config) as manager:
        session = await manager.create_session(user_id="u", system_prompt=SYSTEM)
        await session.send_message("one")
        await session.send_message("two")
        sid = session.session_id

    # The child's turn reaches the emulator, which holds it, then runs it (as a server
    # that got the request does) after the child is gone.
    emu.inject("slow", delay=SLOW)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(config), sid, "1" if streamed else "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await _wait_for_request(emu, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        out, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL, out
    emu.wait_idle()
    assert held_anywhere(emu, provider, "cut off"), "the provider received the cut-off turn"

    async with open_manager(config) as manager:  # a new process would do just this
        again = await manager.require_session(sid)
        everything = await again.get_history(include_failed=True)
        assert [(m.content, m.status) for m in everything if m.role == "user"] == [
            ("one", MessageStatus.COMMITTED), ("two", MessageStatus.COMMITTED),
            ("cut off", MessageStatus.INTERRUPTED),
        ]  # fmt: skip
        assert await say(again, "after", streamed) == "echo: after [earlier messages: 4]"
        assert pairs(await again.get_history()) == [
            ("user", "one"), ("assistant", "echo: one [earlier messages: 0]"),
            ("user", "two"), ("assistant", "echo: two [earlier messages: 2]"),
            ("user", "after"), ("assistant", "echo: after [earlier messages: 4]"),
        ]  # fmt: skip
        await assert_mirrored(again, emu, provider)
        # and the turn after that continues the same (clean) remote conversation
        assert await say(again, "later", streamed) == "echo: later [earlier messages: 6]"
        await assert_mirrored(again, emu, provider)


# ---------------------------------------------------------------------------- storm


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_timeout_storm_with_retries_leaves_no_duplicate(
    provider: str, tmp_path: Path, provider_emulator: ProviderEmulator,
    open_manager: Callable[[Path], Any],
) -> None:  # fmt: skip
    emu = provider_emulator
    # Answers slower than the timeout: the client gives up on each held request and
    # retries while the server still runs it.
    config = write_config(
        tmp_path / "swarm.yaml", emu, provider, db=tmp_path / "s.db",
        timeout=SLOW / 3, max_retries=2,
    )  # fmt: skip
    # (text, streamed, slow requests): one slow request, then the retry gets through;
    # three: every attempt times out and the turn fails.
    storm = [("t1", False, 1), ("t2", True, 1), ("t3", False, 3), ("t4", False, 1),
             ("t5", True, 2), ("t6", True, 3), ("t7", False, 2)]  # fmt: skip
    failed: list[str] = []
    async with open_manager(config) as manager:
        session = await manager.create_session(user_id="u", system_prompt=SYSTEM)
        await session.send_message("t0")
        for text, streamed, slow in storm:
            emu.inject("slow", delay=SLOW, count=slow)
            try:
                await say(session, text, streamed)
            except ProviderTimeout:
                failed.append(text)
        assert failed == ["t3", "t6"]
        emu.wait_idle()  # every held request has now changed what it was going to
        committed = [m for m in pairs(await session.get_history()) if m[0] == "user"]
        assert committed == [("user", t) for t in ("t0", "t1", "t2", "t4", "t5", "t7")]
        # The next turn's context is the committed history, each turn once.
        reply = await session.send_message("calm")
        assert reply.content == "echo: calm [earlier messages: 12]"
        await assert_mirrored(session, emu, provider)
        everything = await session.get_history(include_failed=True)
        assert [m.content for m in everything if m.status is MessageStatus.FAILED] == [
            "t3", "t6"
        ]


# ---------------------------------------------------------------------------- refusals


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("fault", "refused"),
    [("429", True), ("refused", True), ("503", False), ("drop", False), ("slow", False)],
)
async def test_only_a_refusal_is_retried_on_the_same_conversation(
    fault: str, refused: bool, provider_emulator: ProviderEmulator
) -> None:
    """What the OpenAI SDK raises, as the native retry loop classifies it: a 429 or a
    connection that never opened changed nothing remotely; a 5xx, a dropped connection
    or a timeout may have been acted on."""
    from langswarm_runtime.providers._common import refused_outright
    from langswarm_runtime.providers.openai import OpenAIConfig, OpenAIProvider

    base = f"http://127.0.0.1:{_closed_port()}" if fault == "refused" else None
    provider = OpenAIProvider(OpenAIConfig(
        model="m", api_key="k-0123456789", base_url=base or provider_emulator.url("openai"),
        max_retries=0, timeout=SLOW / 3,
    ))  # fmt: skip
    if base is None:
        provider_emulator.inject(fault, delay=SLOW, retry_after=0)
    try:
        client = provider.client()
        with pytest.raises(Exception) as info:
            await client.conversations.create(items=[])
        mapped = provider._map_error(info.value)
        assert mapped is not None
        assert refused_outright(info.value, mapped) is refused
    finally:
        await provider.close()
