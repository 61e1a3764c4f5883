"""The turn pipeline's own guarantees, each forced deterministically, never by timing.

- The SQLite turn write allocates seqs under the write lock: a second connection that
  writes a whole turn at any point of the first one's write where it can (the probe
  says no lock is held there) never makes the two collide, and the seq read itself is
  always made holding the lock.
- A session's tail cache keeps its own turn only when no other writer came between: a
  native conversation re-seeded after another process wrote to the session carries
  that process's turn (what the emulator received is the committed history).
- A session-level stream that ends without a final reply fails the turn: nothing is
  committed, the turn is marked failed, the session stays usable.
- A SQLite fault inside the commit leaves nothing half-written: the placeholder is
  still there (or the whole turn committed), the record untouched.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import (
    Message,
    MessageStatus,
    ProviderBadResponse,
    SessionManager,
    SQLiteSessionStorage,
    StorageError,
    hookimpl,
)
from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.providers.base import ProviderReply, ProviderRequest
from langswarm_runtime.providers.echo import EchoConfig, EchoProvider
from langswarm_runtime.session.models import SessionRecord, Usage
from langswarm_runtime.session.storage.base import message_row
from langswarm_runtime.session.storage.sqlite import _write_turn
from langswarm_runtime.testing.emulator import ProviderEmulator
from langswarm_runtime.testing.emulator._wire import content_text

P, C, F = MessageStatus.PENDING, MessageStatus.COMMITTED, MessageStatus.FAILED


def turn(text: str) -> list[Message]:
    return [Message(role="user", content=f"q {text}"), Message(role="assistant", content=f"a {text}")]


def check_turns(messages: list[Message], turns: int) -> None:
    """No loss, no duplicate, ordered unique seqs, each turn's two messages adjacent."""
    seqs = [m.seq or 0 for m in messages]
    assert len(messages) == 2 * turns
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for q, a in zip(messages[::2], messages[1::2], strict=True):
        assert q.content.startswith("q ") and a.content == "a " + q.content[2:]
        assert (a.seq or 0) == (q.seq or 0) + 1


def raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


# -- 1. two connections inside the SQLite turn write ---------------------------------


class Interleaver:
    """A trace callback on the storage's own connection. SQLite calls it as each
    statement starts, before it runs. At each one a probe connection asks for the write
    lock without waiting: if it gets it, the storage holds no lock at that point, so a
    second connection writes a whole turn right there (the real ``_write_turn``)."""

    def __init__(self, db: Path, sid: str) -> None:
        self.probe, self.other, self.sid = raw(db), raw(db), sid
        self.armed = False
        self.written_at: list[str] = []
        self.locked_at: list[str] = []

    def __call__(self, sql: str) -> None:
        if not self.armed:
            return
        try:
            self.probe.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # "database is locked": the storage holds it
            self.locked_at.append(sql)
            return
        self.probe.execute("ROLLBACK")
        n = len(self.written_at)
        params = [message_row(m) for m in turn(f"other {n}")]
        _write_turn(self.other, self.sid, None, params)
        self.written_at.append(sql)

    def close(self) -> None:
        self.probe.close()
        self.other.close()


@pytest.mark.parametrize("record_update", [False, True], ids=["plain", "record-update"])
async def test_second_connection_inside_the_turn_write(
    tmp_path: Path, record_update: bool
) -> None:
    db = tmp_path / "app.db"
    async with SQLiteSessionStorage(db) as store:
        record = SessionRecord(session_id="s-1", user_id="u", provider="echo")
        await store.create_session(record)
        await store.append_messages("s-1", turn("0"))
        (placeholder,) = await store.append_messages(
            "s-1", [Message(role="user", content="p", status=P)]
        )
        hook = Interleaver(db, "s-1")
        store._conn.set_trace_callback(hook)
        try:
            hook.armed = True
            mine = await store.commit_turn(
                "s-1", placeholder.seq, turn("mine"),
                usage=Usage(input_tokens=1) if record_update else None,
            )  # fmt: skip
            hook.armed = False
        finally:
            store._conn.set_trace_callback(None)
            hook.close()

        # The other connection did get in before the write lock was taken ...
        assert hook.written_at, "no point without the lock: the interleaving never happened"
        # ... and every statement that read or wrote rows ran holding the lock.
        assert any("MAX(seq)" in sql for sql in hook.locked_at)
        assert not any("MAX(seq)" in sql or "INSERT" in sql for sql in hook.written_at)
        history = await store.load_messages("s-1")
        check_turns(history, 2 + len(hook.written_at))
        assert [m.content for m in history[-2:]] == ["q mine", "a mine"]
        assert [m.seq for m in history[-2:]] == [m.seq for m in mine]
        assert placeholder.seq not in [m.seq for m in history]


# -- 2. the tail cache and a native re-seed after another process wrote ---------------


def native_config(path: Path, emu: ProviderEmulator, db: Path) -> Path:
    doc = {
        "version": 1,
        "storage": {"type": "sqlite", "path": str(db)},
        "defaults": {"provider": "subject", "backend": "native", "system_prompt": "Be brief."},
        "providers": {
            "subject": {
                "type": "openai", "model": "test-model", "api_key": "test-key-0123456789",
                "base_url": emu.url("openai"), "max_retries": 0, "timeout": 10,
            }
        },
    }  # fmt: skip
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    return path


def seeded_items(emu: ProviderEmulator) -> list[tuple[str, str]]:
    """The (role, text) items of the conversations the client created (and extended)
    since the emulator was last cleared: what a re-seed sent."""
    items: list[tuple[str, str]] = []
    for rec in emu.requests:
        if rec.path.startswith("/openai/v1/conversations") and rec.json:
            for item in rec.json.get("items", []):
                role = "system" if item["role"] in ("system", "developer") else item["role"]
                items.append((role, content_text(item["content"], part_type=None)))
    return items


async def test_native_reseed_after_another_process_wrote(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    emu = provider_emulator
    config = native_config(tmp_path / "swarm.yaml", emu, tmp_path / "app.db")
    async with SessionManager.from_config(config) as first:
        mine = await first.create_session(user_id="u")
        await mine.send_message("one")  # seeds the conversation: the cache is warm
        async with SessionManager.from_config(config) as second:  # another process
            theirs = await second.require_session(mine.session_id, user_id="u")
            await theirs.send_message("from the other process")
        # Our own turn lands after theirs: the cache must not take it as the next one.
        await mine.send_message("two")
        emu.forget_conversations()  # the server lost the conversation: re-seed
        emu.clear()
        await mine.send_message("three")

        history = await mine.get_history()
        before_three = [(m.role, m.content) for m in history[:-2]]
        assert [c for _, c in before_three if not c.startswith("echo")] == [
            "one", "from the other process", "two"
        ]  # fmt: skip
        # What the provider was re-seeded with is the committed history, exactly.
        assert seeded_items(emu) == [("system", "Be brief."), *before_three]
        assert history[-1].content == "echo: three [earlier messages: 6]"


# -- 3. a stream that ends without a final reply --------------------------------------


class FinallessProvider(EchoProvider):
    """Streams the echo's text deltas and then simply stops: no final ProviderReply."""

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        async for item in super().stream(request):
            if isinstance(item, ProviderReply):
                return
            yield item


class FinallessPlugin:
    @hookimpl
    def register_providers(self, register: Any) -> None:
        register("finalless", FinallessProvider, EchoConfig)


async def test_stream_without_final_reply_fails_the_turn(tmp_path: Path) -> None:
    plugins = PluginManager(environ={"LANGSWARM_LOAD_PLUGINS": ""})
    plugins.register(FinallessPlugin(), name="finalless")
    store = SQLiteSessionStorage(tmp_path / "app.db")
    async with SessionManager(storage=store, plugins=plugins) as manager:
        session = await manager.create_session(user_id="u", provider="finalless")
        await session.send_message("kept")  # a plain turn is fine
        seen: list[str] = []
        with pytest.raises(ProviderBadResponse, match="without a final reply"):
            async for delta in session.stream_message("cut short"):
                seen.append(delta)
        assert "".join(seen) == "echo: cut short [earlier messages: 2]"  # it did stream
        everything = await session.get_history(include_failed=True)
        assert [(m.role, m.status, m.content) for m in everything[2:]] == [
            ("user", F, "cut short")
        ]  # fmt: skip
        committed = await session.get_history()
        assert [m.content for m in committed] == ["kept", "echo: kept [earlier messages: 0]"]
        assert session.usage == (await store.load_session(session.session_id)).usage  # type: ignore[union-attr]
        reply = await session.send_message("after")  # usable; the failed turn is not context
        assert reply.content == "echo: after [earlier messages: 2]"


# -- 4. a SQLite fault inside the commit ----------------------------------------------


def inject_fault(db: Path, name: str, when: str) -> None:
    """A trigger that aborts the statement it fires on: a real SQLite error raised in
    the middle of the commit's transaction, after its earlier statements ran."""
    conn = raw(db)
    conn.execute(
        f"CREATE TRIGGER {name} BEFORE {when} "
        "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
    )
    conn.close()


def remove_fault(db: Path, name: str) -> None:
    conn = raw(db)
    conn.execute(f"DROP TRIGGER {name}")
    conn.close()


FAULTS = {
    # The reply's insert fails after the placeholder was deleted and the user message
    # inserted (executemany: one row at a time).
    "reply-insert": "INSERT ON messages WHEN NEW.content = 'a boom'",
    # The placeholder's delete itself fails.
    "placeholder-delete": "DELETE ON messages",
    # Both messages are in; the record update (usage, provider state) fails.
    "record-update": "UPDATE OF usage ON sessions",
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_inside_the_commit_leaves_nothing_half_written(
    tmp_path: Path, fault: str
) -> None:
    db = tmp_path / "app.db"
    async with SQLiteSessionStorage(db) as store:
        await store.create_session(SessionRecord(session_id="s-1", user_id="u", provider="echo"))
        await store.commit_turn("s-1", None, turn("0"), usage=Usage(input_tokens=1))
        (placeholder,) = await store.append_messages(
            "s-1", [Message(role="user", content="q boom", status=P)]
        )
        before_messages = await store.load_messages("s-1")
        before_record = await store.load_session("s-1")
        inject_fault(db, "fault", FAULTS[fault])

        with pytest.raises(StorageError, match="injected fault"):
            await store.commit_turn(
                "s-1", placeholder.seq, turn("boom"), usage=Usage(input_tokens=5),
                provider_state={"conversation_id": "c-new"},
            )  # fmt: skip
        # All or nothing: the placeholder is still there, nothing else came or went,
        # and the record (usage, provider state, version) is untouched.
        assert await store.load_messages("s-1") == before_messages
        assert await store.load_session("s-1") == before_record

        remove_fault(db, "fault")
        done = await store.commit_turn(
            "s-1", placeholder.seq, turn("boom"), usage=Usage(input_tokens=5)
        )
        history = await store.load_messages("s-1")
        check_turns(history, 2)
        assert history[-2:] == done


async def test_fault_inside_a_session_commit_keeps_the_turn_pending_then_failed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with SessionManager(storage=SQLiteSessionStorage(db)) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("kept")
        inject_fault(db, "fault", "INSERT ON messages WHEN NEW.role = 'assistant'")
        with pytest.raises(StorageError, match="injected fault"):
            await session.send_message("boom")
        everything = await session.get_history(include_failed=True)
        # The turn's placeholder survived the failed commit (now marked failed), and
        # neither of the turn's committed messages exists.
        assert [(m.role, m.status, m.content) for m in everything] == [
            ("user", C, "kept"), ("assistant", C, "echo: kept [earlier messages: 0]"),
            ("user", F, "boom"),
        ]  # fmt: skip
        remove_fault(db, "fault")
        reply = await session.send_message("again")
        assert reply.content == "echo: again [earlier messages: 2]"
