"""Odd SQLite states never lose data silently.

- A database written by a newer release (a schema version or a migration this release
  does not know) is refused with a ``StorageError`` naming both schema versions, and
  nothing is written to it.
- A write that did not reach the file at ``db_path`` is never reported as success: when
  the database's directory is deleted, or the file is replaced, moved, or its WAL deleted
  while the storage is open, the open connection would go on writing into files nobody
  will read. The storage checks after every write that the files at the path are the
  ones it opened, raises ``StorageError``, and refuses every later call.

Real SQLite files; the file operations are the ones an operator or a cleanup job does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import SessionManager, SQLiteSessionStorage, StorageError
from langswarm_runtime.session.models import Message, MessageStatus
from langswarm_runtime.session.storage.migrations import MIGRATIONS

KNOWN = len(MIGRATIONS)
COMMITTED = MessageStatus.COMMITTED


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def make_database(path: Path) -> str:
    """A database with one committed turn; returns the session id."""
    async with SessionManager(storage=SQLiteSessionStorage(path)) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("kept")
        return session.session_id


def snapshot(path: Path) -> tuple[str, list[Any], list[Any], list[Any]]:
    """The main file's bytes and what it holds (read with the WAL folded in)."""
    conn = raw(path)
    try:
        state = (
            conn.execute("SELECT name FROM schema_migrations ORDER BY rowid").fetchall(),
            conn.execute("SELECT session_id, version FROM sessions ORDER BY 1").fetchall(),
            conn.execute("SELECT session_id, seq, content FROM messages ORDER BY 1, 2").fetchall(),
        )
    finally:
        conn.close()
    return (file_digest(path), *state)


FUTURES: dict[str, Callable[[sqlite3.Connection], None]] = {
    # What a newer release leaves: one more migration recorded, user_version bumped.
    "newer-release": lambda c: (
        c.execute("INSERT INTO schema_migrations VALUES ('m900_from_the_future', 0)"),
        c.execute(f"PRAGMA user_version = {KNOWN + 1}"),
    ),
    # Only the migration recorded (user_version left alone, as a hand edit or another
    # tool would): still refused.
    "unknown-migration-only": lambda c: c.execute(
        "INSERT INTO schema_migrations VALUES ('m900_from_the_future', 0)"
    ),
    # Only the schema version bumped.
    "user-version-only": lambda c: c.execute(f"PRAGMA user_version = {KNOWN + 1}"),
}


@pytest.mark.parametrize("future", list(FUTURES))
async def test_newer_schema_is_refused_untouched(tmp_path: Path, future: str) -> None:
    db = tmp_path / "app.db"
    await make_database(db)
    conn = raw(db)
    FUTURES[future](conn)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = snapshot(db)

    with pytest.raises(StorageError) as caught:
        SQLiteSessionStorage(db)
    message = str(caught.value)
    assert str(db) in message
    assert f"schema version {KNOWN + 1}" in message  # the database's version
    assert f"knows schema version {KNOWN}" in message  # this release's version
    assert MIGRATIONS[-1][0] in message
    if future != "user-version-only":
        assert "m900_from_the_future" in message
    assert "\n" not in message
    assert snapshot(db) == before  # nothing written, not even the journal mode


async def test_newer_schema_found_under_the_write_lock_is_refused(tmp_path: Path) -> None:
    """A newer release can migrate between this release's version check and its own
    migration: the re-check under the write lock refuses too, and applies nothing."""
    from langswarm_runtime.session.storage.migrations import NewerSchema, migrate

    db = tmp_path / "fresh.db"
    conn = raw(db)
    conn.execute("PRAGMA journal_mode = WAL")
    # What a newer release wrote: its own migrations table, with a name we don't know.
    conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    conn.execute("INSERT INTO schema_migrations VALUES ('m900_from_the_future', 0)")
    # user_version stays 0, so our fast path would take the migration branch.
    with pytest.raises(NewerSchema):
        migrate(conn)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"schema_migrations"}
    conn.close()


# -- the file goes away under an open storage -----------------------------------------


def delete_directory(db: Path) -> None:
    shutil.rmtree(db.parent)


def replace_file(db: Path) -> None:
    """Another database file is moved into place (a restore from backup, say)."""
    other = db.parent / "restored.db"
    conn = raw(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    os.replace(other, db)


def move_file(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        os.rename(f"{db}{suffix}", f"{db}{suffix}.moved")


def delete_wal(db: Path) -> None:
    os.unlink(f"{db}-wal")


def delete_files(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        os.unlink(f"{db}{suffix}")


ACCIDENTS: dict[str, Callable[[Path], None]] = {
    "delete-directory": delete_directory,
    "replace-file": replace_file,
    "move-file": move_file,
    "delete-wal": delete_wal,
    "delete-files": delete_files,
}


class Accident:
    """An incoming middleware: it runs after the provider answered and before the turn
    is committed, so the turn's pending record reached the file and its commit is the
    first write after the accident."""

    def __init__(self, db: Path, accident: Callable[[Path], None]) -> None:
        self.db, self.accident, self.done = db, accident, False

    def process_incoming_message(self, session: Any, message: Message) -> Message:
        if not self.done:
            self.done = True
            self.accident(self.db)
        return message


@pytest.mark.parametrize("accident", list(ACCIDENTS))
async def test_commit_after_the_file_went_away_is_not_success(
    tmp_path: Path, accident: str
) -> None:
    db = tmp_path / "data" / "app.db"
    db.parent.mkdir()
    async with SessionManager(storage=SQLiteSessionStorage(db)) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("kept")
        session.add_middleware(Accident(db, ACCIDENTS[accident]))

        with pytest.raises(StorageError) as caught:
            await session.send_message("lost")
        assert "deleted, moved or replaced" in str(caught.value)
        assert str(db) in str(caught.value)

        # The storage stays refused: no later write (or read) pretends all is well.
        with pytest.raises(StorageError):
            await session.send_message("after")
        with pytest.raises(StorageError):
            await manager.create_session(user_id="u", provider="echo")
        with pytest.raises(StorageError):
            await session.get_history()

    # Whatever is at the path now never holds, committed, the turn reported as failed
    # (its pending record, written before the accident, may be there).
    db.parent.mkdir(exist_ok=True)
    if db.exists():
        async with SQLiteSessionStorage(db) as store:
            found = await store.load_messages(session.session_id, statuses=[COMMITTED])
            assert not {"lost", "echo: lost [earlier messages: 2]"} & {m.content for m in found}


async def test_writes_are_checked_on_the_worker_path_too(tmp_path: Path) -> None:
    """Deletes and big writes run on the worker thread: the same check applies."""
    db = tmp_path / "data" / "app.db"
    db.parent.mkdir()
    store = SQLiteSessionStorage(db)
    async with SessionManager(storage=store) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("kept")
        shutil.rmtree(db.parent)
        with pytest.raises(StorageError, match="deleted, moved or replaced"):
            await manager.delete_session(session.session_id)


async def test_untouched_file_passes_the_check(tmp_path: Path) -> None:
    """The check does not fire on a healthy database: many turns, a checkpoint, a second
    process writing and closing (which must not recreate the WAL under us)."""
    db = tmp_path / "app.db"
    async with SessionManager(storage=SQLiteSessionStorage(db)) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        for i in range(5):
            await session.send_message(f"m{i}")
            other = SQLiteSessionStorage(db)
            async with other:
                await other.append_messages(session.session_id, [Message(role="user",
                                                                         content="o")])
            conn = raw(db)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        assert len(await session.get_history()) == 15


@pytest.mark.parametrize("accident", list(ACCIDENTS))
async def test_file_gone_during_the_write_is_not_success(tmp_path: Path, accident: str) -> None:
    """The accident strikes inside the turn's commit transaction (as SQLite starts its
    COMMIT; the turn's pending write before it went through): the check before the write
    passed, the one after it must catch it. The turn is reported as failed, whatever
    the orphaned files now hold."""
    db = tmp_path / "data" / "app.db"
    db.parent.mkdir()
    store = SQLiteSessionStorage(db)
    async with SessionManager(storage=store) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("kept")
        commits: list[str] = []

        def at_commit(sql: str) -> None:
            if sql == "COMMIT":
                commits.append(sql)
                if len(commits) == 2:  # 1: the pending record, 2: the turn
                    ACCIDENTS[accident](db)

        store._conn.set_trace_callback(at_commit)
        with pytest.raises(StorageError, match="deleted, moved or replaced"):
            await session.send_message("during")
        store._conn.set_trace_callback(None)
        assert len(commits) == 2
        with pytest.raises(StorageError):
            await session.send_message("after")
