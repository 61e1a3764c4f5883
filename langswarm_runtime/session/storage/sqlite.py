"""SQLite session storage: one file, WAL, safe with several processes writing it.

Async design (measured, see benchmarks/README.md): a thread hop costs more than a whole
SQLite transaction on a small row set, so short statements run directly on the event loop
with ``busy_timeout = 0``. If the database is locked by another connection, SQLite says
so at once and the call is retried on a worker thread with the real busy timeout: the
loop never waits for a lock. Calls that may touch many rows (full history, deletes) go to
the worker thread straight away. A ``threading.Lock`` gives each call exclusive use of the
connection, whichever thread runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from langswarm_runtime.errors import (
    ConcurrencyError,
    ConfigError,
    LangSwarmError,
    SessionNotFound,
    StorageError,
)
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.storage.base import (
    ISessionStorage,
    dump_json,
    message_row,
    pending_seqs,
    with_seqs,
)
from langswarm_runtime.session.storage.blobs import blob_refs, load_parts, split_media
from langswarm_runtime.session.storage.migrations import (
    MIGRATIONS,
    NewerSchema,
    migrate,
    newer_schema,
    schema_state,
)
from langswarm_runtime.session.text import check_record, check_turn, is_storable

__all__ = ["SQLiteSessionStorage", "SQLiteStorageConfig"]

T = TypeVar("T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
#: Reads of up to this many rows run on the loop; larger ones on the worker thread.
_LOOP_ROW_LIMIT = 500
#: Turns between WAL checkpoints (a turn writes about 2-4 pages; SQLite's default is
#: 1000 pages).
_CHECKPOINT_EVERY = 300
#: close() closes on the loop when the WAL is at most this big (a checkpoint of it is a
#: few pages); else on a worker thread.
_INLINE_CLOSE_WAL_BYTES = 64 * 1024

_SESSION_COLS = (
    "session_id, user_id, provider, model, backend, system_prompt, provider_state, "
    "metadata, middleware, usage, created_at, updated_at, version, tools"
)
_MESSAGE_COLS = (
    "seq, role, content, status, usage, provider_message_id, created_at, metadata, parts"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, seq, role, content, status, usage, "
    "provider_message_id, created_at, metadata, parts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BLOB = "INSERT OR IGNORE INTO blobs (sha256, data, size, created_at) VALUES (?, ?, ?, ?)"
_BLOB_EXISTS = "SELECT 1 FROM blobs WHERE sha256 = ?"
_INSERT_BLOB_REF = "INSERT OR IGNORE INTO blob_refs (session_id, sha256) VALUES (?, ?)"
_MAX_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = ?"
_SESSION_EXISTS = "SELECT 1 FROM sessions WHERE session_id = ?"
#: commit_turn's record update: usage totals added in SQL (not read-modify-write in
#: Python), so concurrent writers add up exactly; a NULL state keeps the stored one.
_UPDATE_RECORD = (
    "UPDATE sessions SET usage = json_object("
    "'input_tokens', COALESCE(json_extract(usage, '$.input_tokens'), 0) + ?, "
    "'output_tokens', COALESCE(json_extract(usage, '$.output_tokens'), 0) + ?, "
    "'cached_tokens', COALESCE(json_extract(usage, '$.cached_tokens'), 0) + ?), "
    "provider_state = COALESCE(?, provider_state), updated_at = ?, version = version + 1 "
    "WHERE session_id = ?"
)
_SQLITE_CONSTRAINT_FOREIGNKEY = 787
_STATUS = {s.value: s for s in MessageStatus}
_MESSAGE_FIELDS = frozenset(Message.model_fields)
_ALL_FIELDS_SET = set(_MESSAGE_FIELDS)
_NO_USAGE = Usage()
_new = object.__new__
_setattr = object.__setattr__


class SQLiteStorageConfig(BaseModel):
    """``storage: {type: sqlite, path: sessions.db, busy_timeout_ms: 5000, synchronous: NORMAL}``"""

    model_config = ConfigDict(extra="forbid")

    path: str = Field("sessions.db", description="Database file (created mode 0600).")
    busy_timeout_ms: int = Field(
        5000, ge=0, description="How long a write waits for another process's lock."
    )
    synchronous: Synchronous = Field(
        "NORMAL",
        description="NORMAL: a crash of the process never loses a commit; FULL: neither "
        "does power loss (one fsync per turn).",
    )


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _rows_to_messages(rows: list[tuple[Any, ...]]) -> list[Message]:
    """Rows to Messages; the same as ``build_message`` per row, inlined because this
    loop is most of what a resume costs in Python."""
    out: list[Message] = []
    append = out.append
    # One shared fields-set: it already names every field, so pydantic's
    # ``fields_set.add(name)`` on assignment never changes it (and model_copy copies it).
    # Saves an allocation and a GC-tracked object per row.
    new, setattr_, cls, fields = _new, _setattr, Message, _ALL_FIELDS_SET
    status_of, loads, usage_of = _STATUS.__getitem__, json.loads, Usage.model_validate_json
    for seq, role, content, status, usage, pmid, created_at, metadata, parts in rows:
        m = new(cls)
        setattr_(m, "__dict__", {
            "role": role,
            "content": content,
            "parts": load_parts(parts) if parts else [],
            "seq": seq,
            "status": status_of(status),
            "usage": usage_of(usage) if usage else None,
            "provider_message_id": pmid,
            "created_at": created_at,
            "metadata": loads(metadata) if metadata else {},
            "parsed": None,
        })  # fmt: skip
        setattr_(m, "__pydantic_fields_set__", fields)
        setattr_(m, "__pydantic_extra__", None)
        setattr_(m, "__pydantic_private__", None)
        append(m)
    return out


def _row_to_record(row: tuple[Any, ...]) -> SessionRecord:
    (sid, user, provider, model, backend, prompt, pstate, meta, mw, usage, created,
     updated, version, tools) = row  # fmt: skip
    return SessionRecord(
        session_id=sid,
        user_id=user,
        provider=provider,
        model=model,
        backend=backend,
        system_prompt=prompt,
        provider_state=json.loads(pstate),
        metadata=json.loads(meta),
        middleware=json.loads(mw),
        tools=json.loads(tools) if tools else [],
        usage=Usage.model_validate_json(usage),
        created_at=created,
        updated_at=updated,
        version=version,
    )


def _record_params(r: SessionRecord) -> tuple[Any, ...]:
    return (
        r.user_id,
        r.provider,
        r.model,
        r.backend.value,
        r.system_prompt,
        dump_json(r.provider_state),
        dump_json(r.metadata),
        dump_json(r.middleware),
        r.usage.model_dump_json(),
        r.created_at,
        r.updated_at,
    )


def _write_turn(
    conn: sqlite3.Connection,
    session_id: str,
    pending: list[int],
    params: list[tuple[Any, ...]],
    record_update: tuple[Any, ...] | None = None,
    blobs: dict[str, bytes] | None = None,
    refs: set[str] | None = None,
) -> int:
    """One transaction: allocate seqs, drop the placeholder, insert, and update the
    session record (``_UPDATE_RECORD`` parameters but the session id) when asked.
    Returns the first seq.

    Seqs continue from the session's highest seq, read from the end of the
    (session_id, seq) index under the write lock. The placeholder is dropped after that
    read, so its seq is never handed out again. No counter row is updated: that would
    cost one more page write per turn.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        first = conn.execute(_MAX_SEQ, (session_id,)).fetchone()[0] + 1
        if pending:
            # Committed messages are never removed: only a placeholder can go.
            conn.execute(
                "DELETE FROM messages WHERE session_id = ? "
                f"AND seq IN ({', '.join('?' * len(pending))}) AND status != 'committed'",
                (session_id, *pending),
            )
        if params:
            # The foreign key rejects an unknown session; no separate lookup needed.
            conn.executemany(
                _INSERT_MESSAGE,
                [(session_id, first + i, *p) for i, p in enumerate(params)],
            )
        elif record_update is None and not conn.execute(_SESSION_EXISTS, (session_id,)).fetchone():
            raise SessionNotFound(f"session not found: {session_id}")
        if (
            record_update is not None
            and conn.execute(_UPDATE_RECORD, (*record_update, session_id)).rowcount != 1
        ):
            raise SessionNotFound(f"session not found: {session_id}")
        if blobs:
            # Bytes already stored are not even handed to SQLite again.
            now = time.time()
            new = [(sha, data, len(data), now) for sha, data in blobs.items()
                   if not conn.execute(_BLOB_EXISTS, (sha,)).fetchone()]  # fmt: skip
            if new:
                conn.executemany(_INSERT_BLOB, new)
        if refs:
            conn.executemany(_INSERT_BLOB_REF, [(session_id, sha) for sha in refs])
        conn.execute("COMMIT")
    except sqlite3.IntegrityError as exc:
        conn.execute("ROLLBACK")
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_CONSTRAINT_FOREIGNKEY:
            raise SessionNotFound(f"session not found: {session_id}") from None
        raise
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return first  # type: ignore[no-any-return]


class SQLiteSessionStorage(ISessionStorage):
    """Sessions in one SQLite file (WAL mode), shared safely by several processes.

    ``SQLiteSessionStorage(db_path="app.db")``. ``busy_timeout`` (seconds) is how long a
    write waits for another process's lock; ``synchronous`` is SQLite's durability level
    (``NORMAL``: no committed turn is lost when the process crashes; ``FULL``: nor on
    power loss). The file is created readable by its owner only. An unusable path raises
    ``StorageError`` here, before anything is written. ``":memory:"`` gives a private
    in-memory database.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] = "sessions.db",
        *,
        busy_timeout: float = 5.0,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        if str(synchronous).upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigError(
                f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}"
            )
        if busy_timeout < 0:
            raise ConfigError(f"busy_timeout must be >= 0, got {busy_timeout}")
        self.db_path = str(db_path)
        self._wal_path = self.db_path + "-wal"
        self._busy_ms = int(busy_timeout * 1000)
        self._lock = threading.Lock()
        self._closed = False
        self._writes = 0  # turns written since the last checkpoint was scheduled
        self._checkpointing = False  # set on the loop, cleared by the worker when done
        #: (st_dev, st_ino) of the database file and of its WAL, as the connection opened
        #: them; None for ":memory:". Checked around every write (see _check_file).
        self._identity: tuple[tuple[int, int], tuple[int, int] | None] | None = None
        #: Why this storage refuses all further calls (its file went away), once known.
        self._broken: str | None = None
        created = self._prepare_file()
        try:
            self._conn = self._connect(str(synchronous).upper())
        except BaseException:
            if created:  # leave nothing behind when we could not set the file up
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.db_path + suffix)
            raise

    @classmethod
    def from_config(cls, config: SQLiteStorageConfig) -> SQLiteSessionStorage:
        """Factory for the ``sqlite`` storage type."""
        return cls(
            config.path,
            busy_timeout=config.busy_timeout_ms / 1000,
            synchronous=config.synchronous,
        )

    # -- setup ---------------------------------------------------------------------------

    def _fail(self, reason: str) -> StorageError:
        return StorageError(f"cannot use SQLite database {self.db_path}: {reason}")

    def _prepare_file(self) -> bool:
        """Check the path and create the file with mode 0600; True if we created it.

        Kept to a few syscalls: it runs on every open, and resume latency counts it.
        """
        if self.db_path == ":memory:":
            return False
        path = self.db_path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise self._fail("it is a directory")
            if not os.access(path, os.R_OK | os.W_OK):
                raise self._fail("the file is not readable and writable by this user")
            return False
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise self._fail(f"directory {parent} does not exist")
        try:
            # O_EXCL: only the process that creates the file decides its mode. SQLite
            # gives -wal and -shm the database file's mode.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False  # another process created it just now
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from None
        os.close(fd)
        return True

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.db_path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # used by the loop and the worker, under _lock
            )
        except sqlite3.Error as exc:
            raise self._fail(str(exc)) from None
        try:
            # Before anything that could write (even the journal mode): a database from a
            # newer release is refused untouched.
            state = schema_state(conn)
            newer = newer_schema(conn, state)
            if newer is not None:
                raise self._fail(newer)
            # wal_autocheckpoint = 0: a checkpoint copies and fsyncs up to 4 MB, too long
            # for the event loop; _write schedules one on the worker thread instead.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode not in ("wal", "memory"):
                raise self._fail(f"could not enable WAL (journal_mode is {mode})")
            pragmas = (
                f"PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; "
                "PRAGMA wal_autocheckpoint = 0;"
            )
            # user_version mirrors the applied migrations (state[0]).
            if state[0] < len(MIGRATIONS):
                conn.executescript(pragmas)
                migrate(conn)  # waits up to busy_timeout for another process's lock
                conn.execute("PRAGMA busy_timeout = 0")
            else:  # the loop fast path never waits
                conn.executescript(pragmas + " PRAGMA busy_timeout = 0;")
            self._identity = self._file_identity()
        except sqlite3.Error as exc:
            conn.close()
            raise self._fail(str(exc)) from None
        except NewerSchema as exc:  # found by migrate, under the write lock
            conn.close()
            raise self._fail(str(exc)) from None
        except OSError as exc:
            conn.close()
            raise self._fail(exc.strerror or str(exc)) from None
        except BaseException:
            conn.close()
            raise
        return conn

    # -- running statements --------------------------------------------------------------

    def _translate(self, exc: sqlite3.Error) -> StorageError:
        if _is_busy(exc):
            return StorageError(
                f"SQLite database {self.db_path} stayed locked for more than "
                f"{self._busy_ms} ms (busy_timeout)"
            )
        return StorageError(f"SQLite error on {self.db_path}: {exc}")

    def _file_identity(self) -> tuple[tuple[int, int], tuple[int, int] | None] | None:
        """(st_dev, st_ino) of the database file and its WAL as they are now."""
        if self.db_path == ":memory:":
            return None
        st = os.stat(self.db_path)
        try:
            wal = os.stat(self._wal_path)
        except FileNotFoundError:
            return (st.st_dev, st.st_ino), None
        return (st.st_dev, st.st_ino), (wal.st_dev, wal.st_ino)

    def _check_file(self) -> None:
        """Raise StorageError unless the files at db_path are the ones the connection
        opened.

        The open connection writes to the files it opened, whatever happens to the path:
        if the database (or its WAL, where commits land first) was deleted, moved or
        replaced, a commit goes into a file nobody will read, or one that is no longer
        at ``db_path``, or (a replaced main file beside the old WAL) into a mix of two
        databases. So every write checks before it starts (nothing is written into such
        files: a commit into a deleted WAL would even be copied into the database when
        the connection closes) and after it committed (a change during the write is
        reported as a failure, never as success): four ``os.stat`` calls per write.
        Once this fails the storage refuses every later call.
        """
        want = self._identity
        if want is None:
            return
        try:
            got = self._file_identity()
        except OSError:
            got = None
        if got is not None and got[0] == want[0] and want[1] in (None, got[1]):
            if want[1] is None:
                self._identity = got  # the WAL did not exist yet at the open
            return
        self._broken = (
            f"SQLite database {self.db_path} was deleted, moved or replaced while open "
            "(the file at that path is not the one this storage opened), so this write "
            "is not stored there; reopen the storage"
        )
        raise StorageError(self._broken)

    def _unusable(self) -> StorageError | None:
        if self._closed:
            return StorageError(f"SQLite storage {self.db_path} is closed")
        if self._broken is not None:
            return StorageError(self._broken)
        return None

    def _run_in_worker(self, op: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        with self._lock:
            error = self._unusable()
            if error is not None:
                raise error
            conn = self._conn
            if write:
                self._check_file()
            try:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                try:
                    result = op(conn, *args)
                finally:
                    conn.execute("PRAGMA busy_timeout = 0")
            except sqlite3.Error as exc:
                raise self._translate(exc) from None
            if write:
                self._check_file()
            return result

    async def _call(
        self, op: Callable[..., T], *args: Any, worker: bool = False, write: bool = False
    ) -> T:
        """Run ``op(conn, *args)``: on the loop if it can finish without waiting, else on
        a worker thread. ``write``: the op changes the database; its commit is then
        checked to have reached the file at ``db_path`` (``_check_file``)."""
        error = self._unusable()
        if error is not None:
            raise error
        if not worker and self._lock.acquire(blocking=False):
            try:
                if write:
                    self._check_file()
                result = op(self._conn, *args)
                if write:
                    self._check_file()
                return result
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise self._translate(exc) from None
                # locked by another connection: retry below, where waiting is allowed
            finally:
                self._lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._run_in_worker, op, args, write)

    # -- sessions -------------------------------------------------------------------------

    async def create_session(self, record: SessionRecord) -> None:
        """Store a new session; ``StorageError`` if the id already exists."""
        check_record(record)
        params = (record.session_id, *_record_params(record), record.version,
                  dump_json(record.tools) if record.tools else None)  # fmt: skip

        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO sessions ({_SESSION_COLS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params,
                )
            except sqlite3.IntegrityError:
                raise StorageError(f"session already exists: {record.session_id}") from None

        await self._call(op, write=True)

    async def load_session(self, session_id: str) -> SessionRecord | None:
        """The record, or None."""
        if not is_storable(session_id):
            return None  # no session can have this id

        def op(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            return conn.execute(  # type: ignore[no-any-return]
                f"SELECT {_SESSION_COLS} FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()

        row = await self._call(op)
        return _row_to_record(row) if row else None

    async def save_session(self, record: SessionRecord) -> None:
        """Update a record if its stored version equals ``record.version``; bumps it."""
        check_record(record)
        params = (*_record_params(record), dump_json(record.tools) if record.tools else None,
                  record.session_id, record.version)  # fmt: skip

        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE sessions SET user_id = ?, provider = ?, model = ?, backend = ?, "
                "system_prompt = ?, provider_state = ?, metadata = ?, middleware = ?, "
                "usage = ?, created_at = ?, updated_at = ?, tools = ?, "
                "version = version + 1 WHERE session_id = ? AND version = ?",
                params,
            )
            if cur.rowcount == 1:
                return
            row = conn.execute(
                "SELECT version FROM sessions WHERE session_id = ?", (record.session_id,)
            ).fetchone()
            if row is None:
                raise SessionNotFound(f"session not found: {record.session_id}")
            raise ConcurrencyError(
                f"session {record.session_id} changed underneath (stored version "
                f"{row[0]}, given {record.version})"
            )

        await self._call(op, write=True)
        record.version += 1

    async def delete_session(self, session_id: str) -> bool:
        """Delete record and messages in one transaction; True if it existed."""
        if not is_storable(session_id):
            return False

        def op(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
                n = conn.execute(
                    "DELETE FROM sessions WHERE session_id = ?", (session_id,)
                ).rowcount
                shas = [r[0] for r in conn.execute(
                    "SELECT sha256 FROM blob_refs WHERE session_id = ?", (session_id,))]
                if shas:
                    conn.execute("DELETE FROM blob_refs WHERE session_id = ?", (session_id,))
                    # The blobs no other session references go with their last session.
                    conn.executemany(
                        "DELETE FROM blobs WHERE sha256 = ? AND NOT EXISTS "
                        "(SELECT 1 FROM blob_refs WHERE blob_refs.sha256 = blobs.sha256)",
                        [(sha,) for sha in shas],
                    )  # fmt: skip
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return n > 0

        # A long history makes this a big delete: never on the loop.
        return await self._call(op, worker=True, write=True)

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[SessionRecord]:
        """Sessions, newest-updated first (ties by session id, descending)."""
        if limit < 0:
            raise StorageError(f"limit must be >= 0, got {limit}")
        if cursor is not None and not is_storable(cursor):
            raise StorageError(f"unknown cursor: {cursor!r}")
        if user_id is not None and not is_storable(user_id):
            return []  # no session can belong to this user

        def op(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            conds: list[str] = []
            params: list[Any] = []
            if user_id is not None:
                conds.append("user_id = ?")
                params.append(user_id)
            if cursor is not None:
                anchor = conn.execute(
                    "SELECT updated_at, session_id FROM sessions WHERE session_id = ?",
                    (cursor,),
                ).fetchone()
                if anchor is None:
                    raise StorageError(f"unknown cursor: {cursor}")
                conds.append("(updated_at, session_id) < (?, ?)")
                params.extend(anchor)
            where = f"WHERE {' AND '.join(conds)} " if conds else ""
            return conn.execute(
                f"SELECT {_SESSION_COLS} FROM sessions {where}"
                "ORDER BY updated_at DESC, session_id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()

        rows = await self._call(op, worker=limit > _LOOP_ROW_LIMIT)
        return [_row_to_record(r) for r in rows]

    # -- messages -------------------------------------------------------------------------

    async def append_messages(
        self, session_id: str, messages: Sequence[Message]
    ) -> list[Message]:
        """Append in one transaction; return copies with ``seq`` assigned."""
        check_turn(messages)
        return await self._write(session_id, [], messages)

    async def load_blob(self, sha256: str) -> bytes | None:
        """The bytes of a stored image or file, or None."""
        if not isinstance(sha256, str) or not is_storable(sha256):
            return None

        def op(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
            return bytes(row[0]) if row else None

        return await self._call(op, worker=True)

    async def commit_turn(
        self,
        session_id: str,
        pending_seq: int | Sequence[int] | None,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        provider_state: dict[str, Any] | None = None,
    ) -> list[Message]:
        """Remove the non-committed placeholders ``pending_seq`` and append ``messages``
        and, with ``usage``/``provider_state``, update the record: one transaction."""
        check_turn(messages, provider_state)
        record_update = None
        if usage is not None or provider_state is not None:
            u = usage or _NO_USAGE
            state = dump_json(provider_state) if provider_state is not None else None
            record_update = (u.input_tokens, u.output_tokens, u.cached_tokens, state,
                             time.time())  # fmt: skip
        return await self._write(session_id, pending_seqs(pending_seq), messages, record_update)

    async def _write(
        self,
        session_id: str,
        pending: list[int],
        messages: Sequence[Message],
        record_update: tuple[Any, ...] | None = None,
    ) -> list[Message]:
        # Callers checked the text (check_turn): nothing unstorable gets this far.
        if not is_storable(session_id):
            raise SessionNotFound(f"session not found: {session_id!r}")
        blobs: dict[str, bytes] = {}
        refs: set[str] = set()
        if any(m.parts for m in messages):
            messages, blobs = split_media(messages)
            refs = blob_refs(messages)
        params = [message_row(m) for m in messages]
        first = await self._call(
            _write_turn, session_id, pending, params, record_update, blobs, refs,
            write=True, worker=bool(blobs),
        )  # fmt: skip
        self._writes += 1
        if self._writes >= _CHECKPOINT_EVERY and not self._checkpointing:
            self._writes = 0
            self._checkpointing = True
            asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        return with_seqs(messages, first)

    async def load_messages(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:
        """Messages oldest first. ``last=N`` reads N rows backwards from the end of the
        session's index range: O(N), whatever the history length."""
        if last is not None and last < 0:
            raise StorageError(f"last must be >= 0, got {last}")
        if not is_storable(session_id):
            return []
        where = "session_id = ?"
        params: list[Any] = [session_id]
        if after_seq is not None:
            where += " AND seq > ?"
            params.append(after_seq)
        if statuses is not None:
            values = sorted({MessageStatus(s).value for s in statuses})
            if not values:
                return []
            if MessageStatus.COMMITTED.value not in values:
                # Spelled out so the planner can use the partial index.
                where += " AND status != 'committed'"
            where += f" AND status IN ({', '.join('?' * len(values))})"
            params.extend(values)
        if last is None:
            sql = f"SELECT {_MESSAGE_COLS} FROM messages WHERE {where} ORDER BY seq"
        else:
            sql = (
                f"SELECT {_MESSAGE_COLS} FROM messages WHERE {where} "
                "ORDER BY seq DESC LIMIT ?"
            )
            params.append(last)

        def op(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        if last is None and after_seq is not None:
            # Usually a handful of new rows (a session's tail cache catching up): try on
            # the loop with a bound, and go to a worker only when the answer is long.
            def head(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
                return conn.execute(f"{sql} LIMIT {_LOOP_ROW_LIMIT + 1}", params).fetchall()

            rows = await self._call(head)
            if len(rows) > _LOOP_ROW_LIMIT:
                rows = await self._call(op, worker=True)
        else:
            rows = await self._call(op, worker=last is None or last > _LOOP_ROW_LIMIT)
        if last is not None:
            rows.reverse()
        return _rows_to_messages(rows)

    async def update_message_status(
        self, session_id: str, seqs: Sequence[int], status: MessageStatus
    ) -> None:
        """Set the status of the given messages; unknown seqs or sessions are ignored."""
        seqs = list(seqs)
        if not seqs or not is_storable(session_id):
            return
        value = MessageStatus(status).value
        sql = (
            "UPDATE messages SET status = ? WHERE session_id = ? "
            f"AND seq IN ({', '.join('?' * len(seqs))})"
        )

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(sql, (value, session_id, *seqs))

        await self._call(op, write=True)

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database, on the worker thread, holding the
        connection's lock: no write of this storage runs meanwhile, so the checkpoint
        reaches the end of the WAL and the next write starts it again from the beginning.
        (A checkpoint running beside the writes always left a few frames behind, and
        under a steady load the WAL grew without end, each commit extending the file:
        slower, and at FULL much slower.) Calls meanwhile wait on the worker thread, not
        on the loop. PASSIVE: another process's reader or writer is never waited for.
        Best effort: a checkpoint skipped now is done next time."""
        try:
            with self._lock:
                if self._closed or self._broken is not None:
                    return
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass
        finally:
            self._checkpointing = False

    def _close_now(self) -> None:
        with self._lock:
            self._close_connection()

    def _close_connection(self) -> None:
        # Called with _lock held.
        if self._closed:
            return
        self._closed = True
        self._conn.close()

    async def close(self) -> None:
        """Close the connection (waits for a running call). Idempotent."""
        if self._closed:
            return
        if self._small_wal() and self._lock.acquire(blocking=False):
            # Nothing running and little to checkpoint: close here, as cheap as a call
            # (a fresh store reading a tail pays this close).
            try:
                self._close_connection()
                return
            finally:
                self._lock.release()
        # On the worker: closing the last connection checkpoints the WAL (file I/O,
        # which may be long), and a call or checkpoint may still be running there.
        await asyncio.get_running_loop().run_in_executor(None, self._close_now)

    def _small_wal(self) -> bool:
        """Whether the WAL is small enough (or gone) that closing the last connection,
        which checkpoints it, is quick."""
        if self.db_path == ":memory:":
            return True
        try:
            return os.stat(self._wal_path).st_size <= _INLINE_CLOSE_WAL_BYTES
        except OSError:
            return True

    def __del__(self) -> None:
        # Best effort for storages dropped without close(): don't leak file handles.
        if hasattr(self, "_conn") and not getattr(self, "_closed", True):
            with contextlib.suppress(sqlite3.Error, LangSwarmError):
                self._close_now()


@hookimpl
def register_storages(register: Any) -> None:
    """Register the ``sqlite`` storage type."""
    register("sqlite", SQLiteSessionStorage.from_config, SQLiteStorageConfig)
