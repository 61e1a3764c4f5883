"""SQLite-specific behaviour: schema, query plans, file mode, bad paths, locking, processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import LoopTicker  # tests/conftest.py
from pydantic import ValidationError

from langswarm_runtime.errors import ConfigError, SessionNotFound, StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.parts import TextPart, ToolCall
from langswarm_runtime.session.storage import migrations
from langswarm_runtime.session.storage.base import build_message
from langswarm_runtime.session.storage.sqlite import (
    SQLiteSessionStorage,
    SQLiteStorageConfig,
    register_storages,
)


def _rec(sid: str = "s1", user: str = "u1") -> SessionRecord:
    return SessionRecord(session_id=sid, user_id=user, provider="echo")


def _turn(i: int) -> list[Message]:
    return [Message(role="user", content=f"q{i}"), Message(role="assistant", content=f"a{i}")]


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = SQLiteSessionStorage(tmp_path / "t.db")
    yield s
    await s.close()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


async def test_final_schema_and_migrations(store: SQLiteSessionStorage) -> None:
    conn = sqlite3.connect(store.db_path)
    try:
        assert migrations.applied_migrations(conn) == [n for n, _ in migrations.MIGRATIONS]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations.MIGRATIONS)
        assert _columns(conn, "sessions") == [
            "session_id", "user_id", "provider", "model", "backend", "system_prompt",
            "provider_state", "metadata", "middleware", "usage", "created_at", "updated_at",
            "version", "tools",
        ]  # fmt: skip
        assert _columns(conn, "messages") == [
            "id", "session_id", "seq", "role", "content", "status", "usage",
            "provider_message_id", "created_at", "metadata", "parts",
        ]  # fmt: skip
        assert _columns(conn, "blobs") == ["sha256", "data", "size", "created_at"]
        assert _columns(conn, "blob_refs") == ["session_id", "sha256"]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert migrations.migrate(conn) == []  # re-running applies nothing
    finally:
        conn.close()


async def test_pragmas_on_the_connection(tmp_path: Path) -> None:
    s = SQLiteSessionStorage(tmp_path / "p.db", busy_timeout=2.5, synchronous="FULL")
    try:
        c = s._conn
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        # The loop fast path never waits; the worker sets the real timeout while it runs.
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        assert s._busy_ms == 2500
    finally:
        await s.close()


def _plan(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> str:
    return " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


async def test_query_plans_use_indexes(store: SQLiteSessionStorage) -> None:
    c = store._conn
    cols = "seq, role, content"
    tail = _plan(c, f"SELECT {cols} FROM messages WHERE session_id = ? "
                 "ORDER BY seq DESC LIMIT ?", ("s", 20))  # fmt: skip
    assert "USING INDEX messages_by_seq (session_id=?)" in tail
    assert "TEMP B-TREE" not in tail  # no sort: N rows read backwards from the index
    pending = _plan(c, f"SELECT {cols} FROM messages WHERE session_id = ? AND "
                    "status != 'committed' AND status IN (?) ORDER BY seq", ("s", "pending"))  # fmt: skip
    assert "messages_not_committed" in pending and "TEMP B-TREE" not in pending
    alloc = _plan(c, "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = ?", ("s",))
    assert "COVERING INDEX messages_by_seq" in alloc
    listing = _plan(c, "SELECT session_id FROM sessions WHERE user_id = ? "
                    "ORDER BY updated_at DESC, session_id DESC LIMIT ?", ("u", 5))  # fmt: skip
    assert "sessions_by_user" in listing and "TEMP B-TREE" not in listing


async def test_tail_read_touches_n_rows(store: SQLiteSessionStorage) -> None:
    """Count the rows SQLite steps through, with a progress handler: same for 10 and 1000."""
    for sid, turns in (("small", 5), ("big", 500)):
        await store.create_session(_rec(sid))
        for i in range(turns):
            await store.append_messages(sid, _turn(i))
    counts = {}
    for sid in ("small", "big"):
        ops = [0]

        def tick(ops: list[int] = ops) -> int:
            ops[0] += 1
            return 0

        store._conn.set_progress_handler(tick, 1)
        try:
            got = await store.load_messages(sid, last=6)
        finally:
            store._conn.set_progress_handler(None, 1)
        assert [m.content for m in got][-1] == f"a{4 if sid == 'small' else 499}"
        counts[sid] = ops[0]
    assert counts["big"] == counts["small"]


async def test_file_mode_0600_including_wal_and_shm(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        s = SQLiteSessionStorage(tmp_path / "m.db")
    finally:
        os.umask(old)
    try:
        await s.create_session(_rec())
        await s.append_messages("s1", _turn(1))
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(os.stat(f"{s.db_path}{suffix}").st_mode)
            assert mode == 0o600, (suffix, oct(mode))
    finally:
        await s.close()


@pytest.mark.parametrize("case", ["missing_dir", "parent_is_file", "is_dir"])
def test_unusable_path_raises_and_writes_nothing(tmp_path: Path, case: str) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    path = {"missing_dir": tmp_path / "nope" / "s.db",
            "parent_is_file": tmp_path / "afile" / "s.db",
            "is_dir": tmp_path / "adir"}[case]  # fmt: skip
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(StorageError) as info:
        SQLiteSessionStorage(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def _try_open_as_nobody(path: str, queue: Any) -> None:
    os.setgid(65534)
    os.setuid(65534)
    try:
        SQLiteSessionStorage(path)
        queue.put("opened")
    except StorageError as exc:
        queue.put(f"StorageError: {exc}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_unwritable_directory_as_unprivileged_user(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_try_open_as_nobody, args=(str(locked / "s.db"), queue))
    proc.start()
    proc.join(30)
    assert queue.get(timeout=5).startswith("StorageError: cannot use SQLite database")
    assert list(locked.iterdir()) == []


async def test_not_a_database_is_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 400)
    with pytest.raises(StorageError, match="junk.db"):
        SQLiteSessionStorage(path)
    assert path.read_bytes().startswith(b"this is not sqlite")  # left as it was


def test_bad_options() -> None:
    with pytest.raises(ConfigError):
        SQLiteSessionStorage(":memory:", synchronous="SOMETIMES")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SQLiteSessionStorage(":memory:", busy_timeout=-1)
    with pytest.raises(ValidationError):
        SQLiteStorageConfig.model_validate({"path": "x.db", "nope": 1})
    with pytest.raises(ValidationError):
        SQLiteStorageConfig.model_validate({"synchronous": "sometimes"})


async def test_registered_factory_builds_from_config(tmp_path: Path) -> None:
    seen: list[tuple[Any, ...]] = []
    register_storages(lambda *a: seen.append(a))
    ((name, factory, model),) = seen
    assert name == "sqlite" and model is SQLiteStorageConfig
    assert SQLiteStorageConfig().path == "sessions.db"
    s = factory(model(path=str(tmp_path / "c.db"), busy_timeout_ms=1234, synchronous="FULL"))
    try:
        assert isinstance(s, SQLiteSessionStorage) and s._busy_ms == 1234
        assert (tmp_path / "c.db").exists()
    finally:
        await s.close()


async def test_locked_database_falls_back_without_blocking_loop(tmp_path: Path) -> None:
    s = SQLiteSessionStorage(tmp_path / "l.db", busy_timeout=5)
    await s.create_session(_rec())
    blocker = sqlite3.connect(s.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    async with LoopTicker() as loop:
        append = asyncio.create_task(s.append_messages("s1", _turn(1)))
        await asyncio.sleep(0.3)
        assert not append.done() and loop.ticks >= 10  # waiting; the loop kept running
        blocker.execute("COMMIT")
        stored = await asyncio.wait_for(append, 5)
    assert [m.seq for m in stored] == [1, 2]
    blocker.close()
    await s.close()


async def test_busy_timeout_exceeded_is_storage_error(tmp_path: Path) -> None:
    s = SQLiteSessionStorage(tmp_path / "b.db", busy_timeout=0.2)
    await s.create_session(_rec())
    blocker = sqlite3.connect(s.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="locked"):
            await s.append_messages("s1", _turn(1))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await s.load_messages("s1") == []  # nothing half-written
    assert len(await s.append_messages("s1", _turn(2))) == 2
    await s.close()


async def test_closed_storage_raises(tmp_path: Path) -> None:
    s = SQLiteSessionStorage(tmp_path / "c.db")
    await s.close()
    with pytest.raises(StorageError, match="closed"):
        await s.load_session("x")


async def test_failed_append_rolls_back(store: SQLiteSessionStorage) -> None:
    await store.create_session(_rec())
    with pytest.raises(SessionNotFound):
        await store.append_messages("other", _turn(1))
    await store.append_messages("s1", _turn(1))
    assert store._conn.in_transaction is False
    assert [m.seq for m in await store.load_messages("s1")] == [1, 2]


def test_fast_message_matches_validated_message() -> None:
    values: dict[str, Any] = {
        "role": "assistant", "content": "x", "seq": 4, "status": MessageStatus.FAILED,
        "usage": Usage(input_tokens=1), "provider_message_id": "p", "created_at": 1.5,
        "metadata": {"k": 1}, "parts": [TextPart(text="x"), ToolCall(id="c1", name="t")], "parsed": None,
    }  # fmt: skip
    fast, slow = build_message(dict(values)), Message(**values)
    assert fast == slow and fast.model_dump() == slow.model_dump()
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_copy(update={"seq": 9}).seq == 9
    fast.content = "y"  # assignment still works like on a validated model
    assert fast.content == "y"


def test_with_seqs_matches_model_copy() -> None:
    from langswarm_runtime.session.storage.base import with_seqs

    turn = [Message(role="user", content="q", metadata={"k": 1}),
            Message(role="assistant", content="a", usage=Usage(output_tokens=2),
                    parts=[TextPart(text="a"), ToolCall(id="c1", name="t")])]  # fmt: skip
    copies = with_seqs(turn, 7)
    for i, (fast, m) in enumerate(zip(copies, turn, strict=True)):
        slow = m.model_copy(update={"seq": 7 + i})
        assert fast == slow and fast.model_dump() == slow.model_dump()
        assert fast.model_fields_set == slow.model_fields_set
        assert m.seq is None and fast is not m  # the originals are untouched
        fast.content = "changed"
        assert m.content != "changed"


def _writer(path: str, worker: int, turns: int) -> None:
    async def run() -> None:
        s = SQLiteSessionStorage(path, busy_timeout=30)
        for i in range(turns):
            await s.append_messages("shared", [
                Message(role="user", content=f"q {worker}.{i}"),
                Message(role="assistant", content=f"a {worker}.{i}"),
            ])  # fmt: skip
        await s.close()

    asyncio.run(run())


async def test_many_processes_append_to_one_session(tmp_path: Path) -> None:
    path = str(tmp_path / "mp.db")
    s = SQLiteSessionStorage(path)
    await s.create_session(_rec("shared"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
        assert p.exitcode == 0
    messages = await s.load_messages("shared")
    await s.close()
    seqs = [m.seq for m in messages]
    assert len(messages) == 4 * 60 * 2
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs == list(range(1, len(seqs) + 1))  # one transaction per turn: no gaps
    for q, a in zip(messages[::2], messages[1::2], strict=True):
        assert q.content.startswith("q ") and a.content == "a " + q.content[2:]
    assert len({m.content for m in messages}) == len(messages)  # nothing duplicated


async def test_wal_is_checkpointed_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import langswarm_runtime.session.storage.sqlite as mod

    monkeypatch.setattr(mod, "_CHECKPOINT_EVERY", 5)
    s = SQLiteSessionStorage(tmp_path / "w.db")
    await s.create_session(_rec())
    assert s._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for i in range(12):
        await s.append_messages("s1", _turn(i))
        await asyncio.sleep(0.05)  # let the worker's checkpoint run
    # immutable=1 reads the main database file alone, ignoring the WAL: the rows there
    # got there by a checkpoint.
    raw = sqlite3.connect(f"file:{s.db_path}?immutable=1", uri=True)
    try:
        in_file = raw.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        raw.close()
    assert in_file >= 20
    await s.close()


async def test_loaded_messages_behave_like_validated_ones(store: SQLiteSessionStorage) -> None:
    await store.create_session(_rec())
    await store.append_messages("s1", _turn(1))
    a, b = await store.load_messages("s1")
    a.content = "changed"  # assignment on one loaded message leaves the other alone
    assert b.content == "a1" and a.model_fields_set == set(Message.model_fields)
    assert a.model_copy(update={"role": "summary"}).role == "summary"
    assert b == Message(role="assistant", content="a1", seq=2, created_at=b.created_at)


async def test_close_runs_on_the_loop_only_when_the_wal_is_small(tmp_path: Path) -> None:
    """Closing the last connection checkpoints the WAL: with a few pages in it that is
    quick and runs on the loop (a fresh store reading a tail pays this close); with a big
    WAL it runs on a worker thread, so the loop never waits for the copy and fsync."""
    import threading

    from langswarm_runtime.session.storage import sqlite as sqlite_module

    where: list[str] = []

    def spy(store: SQLiteSessionStorage) -> None:
        original = store._close_connection

        def close_connection() -> None:
            where.append(threading.current_thread().name)
            original()

        store._close_connection = close_connection  # type: ignore[method-assign]

    db = tmp_path / "c.db"
    setup = SQLiteSessionStorage(db)  # the schema's pages: a big first WAL
    await setup.create_session(SessionRecord(session_id="s", user_id="u", provider="p"))
    await setup.close()
    store = SQLiteSessionStorage(db)
    await store.append_messages("s", [Message(role="user", content="x")])
    spy(store)
    await store.close()
    reader = SQLiteSessionStorage(db)
    await reader.load_messages("s", last=20)
    spy(reader)
    await reader.close()
    assert where == [threading.current_thread().name] * 2
    big = SQLiteSessionStorage(db)
    filler = "y" * 4000
    while os.stat(f"{db}-wal").st_size <= sqlite_module._INLINE_CLOSE_WAL_BYTES:
        await big.append_messages("s", [Message(role="user", content=filler)])
    spy(big)
    await big.close()
    assert where[-1] != threading.current_thread().name
    assert len(await SQLiteSessionStorage(db).load_messages("s")) > 2


async def test_wal_stays_bounded_under_a_steady_write_load(tmp_path: Path) -> None:
    """Turns written back to back, with the periodic checkpoint running meanwhile: each
    checkpoint must reach the end of the WAL, so the next write restarts it and the file
    stops growing (a WAL that grows without end makes every commit extend the file)."""
    from langswarm_runtime.session.storage import sqlite as sqlite_module

    db = tmp_path / "busy.db"
    store = SQLiteSessionStorage(db)
    await store.create_session(SessionRecord(session_id="s", user_id="u", provider="p"))
    turns = sqlite_module._CHECKPOINT_EVERY * 5
    sizes = []
    for i in range(turns):
        await store.append_messages("s", _turn(i))
        if i % 50 == 0:
            sizes.append(os.stat(f"{db}-wal").st_size)
    await store.close()
    per_turn = (sizes[5] - sizes[1]) / 200  # WAL bytes per turn, before any checkpoint
    # At most a cycle and a half of turns in the file (the worker may start late); a WAL
    # that is never restarted holds all of them.
    assert max(sizes) <= 2.5 * sqlite_module._CHECKPOINT_EVERY * per_turn, sizes
