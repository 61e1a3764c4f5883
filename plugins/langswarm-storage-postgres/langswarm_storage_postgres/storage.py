"""``PostgresSessionStorage``: psycopg 3 (async) with a psycopg_pool connection pool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

from langswarm_runtime.errors import ConcurrencyError, SessionNotFound, StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.storage.base import (
    ISessionStorage,
    build_message,
    dump_json,
    message_row,
    pending_seqs,
    with_seqs,
)
from langswarm_runtime.session.storage.blobs import blob_refs, load_parts, split_media
from langswarm_runtime.session.text import check_turn
from langswarm_storage_postgres.blobs import drop_references, keep_blobs
from langswarm_storage_postgres.config import PostgresStorageConfig
from langswarm_storage_postgres.dsn import describe as _describe
from langswarm_storage_postgres.dsn import scrub as _scrub
from langswarm_storage_postgres.outcome import WriteTicket, resolve, resolve_write

__all__ = ["PostgresSessionStorage"]

_RECORD_COLUMNS = "record, version, tools"
_MESSAGE_COLUMNS = (
    "seq, role, content, status, usage, provider_message_id, created_at, metadata, parts"
)
#: The same read back: the JSON columns as text, parsed here (an empty metadata object,
#: most rows', is not parsed at all; usage goes straight into pydantic's JSON parser).
_READ_COLUMNS = (
    "seq, role, content, status, usage::text AS usage, provider_message_id, created_at, "
    "metadata::text AS metadata, parts"
)
#: What the statement taking the seq counter returns: the new counter, and the server's
#: id of this write transaction and its backend, by which a COMMIT whose answer was lost
#: is resolved (see ``_outcome``).
_RETURNING = " RETURNING next_seq, pg_current_xact_id()::text, pg_backend_pid()"
#: commit_turn's record update, folded into the statement that takes the seq counter:
#: usage added to the stored totals in SQL (concurrent writers add up exactly), state
#: replaced unless NULL, updated_at set, version bumped.
_TAKE_SEQS_AND_UPDATE = (
    "UPDATE {s}.sessions SET next_seq = next_seq + %s, version = version + 1, "
    "updated_at = %s, record = record || jsonb_build_object("
    "'usage', jsonb_build_object("
    "'input_tokens', COALESCE((record->'usage'->>'input_tokens')::bigint, 0) + %s, "
    "'output_tokens', COALESCE((record->'usage'->>'output_tokens')::bigint, 0) + %s, "
    "'cached_tokens', COALESCE((record->'usage'->>'cached_tokens')::bigint, 0) + %s), "
    "'updated_at', %s::double precision, "
    "'provider_state', COALESCE(%s::jsonb, record->'provider_state')) "
    "WHERE session_id = %s" + _RETURNING
)
_TAKE_SEQS = (
    "UPDATE {s}.sessions SET next_seq = next_seq + %s WHERE session_id = %s" + _RETURNING
)
#: The usual append or commit as ONE autocommit statement, one round trip: take the seq
#: counter (its row lock orders concurrent writers on any host), update the record when
#: asked (``{update}``), drop the placeholders and insert the messages, given as arrays.
#: Returns the counter after the write (no row: no such session, nothing written).
_ONE_STATEMENT = (
    "WITH c AS (UPDATE {s}.sessions SET next_seq = next_seq + %(n)s{update} "
    "WHERE session_id = %(sid)s RETURNING next_seq), "
    "d AS (DELETE FROM {s}.messages WHERE session_id = %(sid)s AND seq = ANY(%(pending)s::bigint[]) "
    "AND status <> 'committed' AND EXISTS (SELECT 1 FROM c)), "
    "i AS (INSERT INTO {s}.messages "
    f"(session_id, {_MESSAGE_COLUMNS}, write_id) "
    "SELECT %(sid)s, c.next_seq - %(n)s + t.o - 1, t.role, t.content, t.status, "
    "t.usage::jsonb, t.pmid, t.created_at, COALESCE(t.metadata::jsonb, '{{}}'::jsonb), "
    "t.parts, CASE WHEN t.o = 1 THEN %(wid)s::bigint END FROM c, unnest("
    "%(role)s::text[], %(content)s::text[], %(status)s::text[], %(usage)s::text[], "
    "%(pmid)s::text[], %(created)s::float8[], %(metadata)s::text[], %(parts)s::text[]) "
    "WITH ORDINALITY AS t(role, content, status, usage, pmid, created_at, metadata, "
    "parts, o)) "
    "SELECT next_seq FROM c"
)
#: commit_turn's record update inside ``_ONE_STATEMENT`` (see _TAKE_SEQS_AND_UPDATE).
_ONE_STATEMENT_UPDATE = (
    ", version = version + 1, updated_at = %(now)s, record = record || jsonb_build_object("
    "'usage', jsonb_build_object("
    "'input_tokens', COALESCE((record->'usage'->>'input_tokens')::bigint, 0) + %(inp)s, "
    "'output_tokens', COALESCE((record->'usage'->>'output_tokens')::bigint, 0) + %(out)s, "
    "'cached_tokens', COALESCE((record->'usage'->>'cached_tokens')::bigint, 0) + %(cac)s), "
    "'updated_at', %(now)s::double precision, "
    "'provider_state', COALESCE(%(state)s::jsonb, record->'provider_state'))"
)
#: The array parameters of ``_ONE_STATEMENT``, in ``message_row`` order.
_ONE_STATEMENT_ARRAYS = ("role", "content", "status", "usage", "pmid", "created", "metadata",
                         "parts")  # fmt: skip
_APPEND_ONE = _ONE_STATEMENT.replace("{update}", "")
_COMMIT_ONE = _ONE_STATEMENT.replace("{update}", _ONE_STATEMENT_UPDATE)
#: Finds a one-statement write after its answer was lost: its first row's seq.
_FIND_WRITE = "SELECT seq FROM {s}.messages WHERE session_id = %s AND write_id = %s"
#: A connection not used for this long is checked (one round trip) before it is handed
#: out; one used more recently is not: the check would double the round trips of a
#: one-statement append. A connection that broke in that window fails its next call,
#: which reports whether its write was applied (see _append).
_CHECK_IDLE_AFTER_S = 1.0
_NO_USAGE = Usage()


class PostgresSessionStorage(ISessionStorage):
    """Sessions in PostgreSQL, shared safely by many processes on many hosts.

    ``PostgresSessionStorage(dsn="postgresql://...", schema="app")`` in code, or
    ``storage: {type: postgres, dsn: ...}`` in swarm.yaml. The store connects and checks
    the schema on first use (or on ``await storage.open()``).

    Connections: one *primary* connection serves every call while it is free, so a store
    used by one task at a time (a fresh store reading a tail, a worker running turns)
    costs one connection set-up. Calls that overlap get connections from an overflow
    pool, opened when first needed, of up to ``pool_max_size - 1`` more (with
    ``pool_max_size: 1`` they wait for the primary, up to ``pool_timeout``). A
    ``pool_min_size`` above 1 opens the overflow pool at once with the rest warm.
    """

    def __init__(self, config: PostgresStorageConfig | None = None, /, **options: Any) -> None:
        if config is None:
            config = PostgresStorageConfig(**options)
        elif options:
            raise TypeError("pass either a PostgresStorageConfig or keyword options")
        self.config = config
        self._schema = config.schema_name
        self._where = _describe(config.dsn.get_secret_value())
        self._migrated = False
        #: The primary connection, when connected; _primary_lock is held while in use.
        self._primary: Any = None
        self._primary_lock = asyncio.Lock()
        #: The overflow pool, once opened.
        self._pool: Any = None
        #: Statements with ``{s}`` bound, by template.
        self._statements: dict[str, Any] = {}
        #: When each connection was last handed back (monotonic), for the idle check.
        self._last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        #: Each connection's identity lock key, once it holds it (see outcome.py).
        self._lock_keys: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._open_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresSessionStorage({self._where}, schema={self._schema!r})"

    # -- connection management -------------------------------------------------------

    async def open(self) -> None:
        """Connect and migrate the schema (and, with ``pool_min_size`` > 1, open the
        overflow pool). Called on first use anyway; call it at start-up to fail fast with
        ``StorageError`` if the server is away."""
        async with self._conn("connect"):
            pass
        if self.config.pool_min_size > 1 and self.config.pool_max_size > 1:
            await self._get_pool()

    async def _connect_primary(self) -> Any:
        """The primary connection, connected (and the schema migrated) if it is not;
        called with _primary_lock held."""
        if self._closed:
            raise StorageError(f"{self!r} is closed")
        import psycopg  # lazy: only sessions that use this storage pay the import

        conn = self._primary
        if conn is not None and not conn.closed:
            try:
                await self._check_idle(conn)
                return conn
            except (OSError, psycopg.Error):
                with contextlib.suppress(Exception):
                    await conn.close()
        self._primary = None
        with self._translate("connect"):
            # A direct connection: when the server is away it fails with the real reason
            # (a pool would only time out).
            conn = await self._connect()
        self._primary = conn
        return conn

    async def _ensure_migrated(self, conn: Any) -> None:
        """Bring the schema up to date once per store (concurrent callers are safe:
        ``migrate`` locks)."""
        if self._migrated:
            return
        from langswarm_storage_postgres.migrations import migrate

        with self._translate("connect"):
            await migrate(conn, self._schema)
        self._migrated = True

    async def _get_pool(self) -> Any:
        """The overflow pool, opened on first need."""
        if self._pool is not None:
            return self._pool
        async with self._open_lock:
            if self._pool is not None:
                return self._pool
            if self._closed:
                raise StorageError(f"{self!r} is closed")
            from psycopg_pool import AsyncConnectionPool

            size = self.config.pool_max_size - 1
            pool: Any = AsyncConnectionPool(
                self.config.dsn.get_secret_value(),
                kwargs=self._connect_kwargs(),
                min_size=min(size, max(0, self.config.pool_min_size - 1)),
                max_size=size,
                timeout=self.config.pool_timeout,
                # A connection the server dropped while idle is replaced, not handed out.
                check=self._check_idle,
                open=False,
                name=f"langswarm-{self._schema}",
            )
            with self._translate("connect"):
                await pool.open(wait=False)
            self._pool = pool
            return pool

    async def _check_idle(self, conn: Any) -> None:
        """A round trip (an empty statement; connections here are autocommit), for a
        connection idle long enough to have been dropped by the server or a middlebox
        unnoticed: the pool's check, and the primary's before each use."""
        used = self._last_used.get(conn)
        if used is None or time.monotonic() - used >= _CHECK_IDLE_AFTER_S:
            await conn.execute("")

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "connect_timeout": self.config.connect_timeout,
            "autocommit": True,
            "application_name": "langswarm-runtime",
        }
        # Every statement here is a primary-key or index range read. Without statistics
        # (a fresh table) the planner may answer a tail read with a bitmap scan plus a
        # sort, reading the whole history; with bitmap scans off it walks the index
        # backwards and stops after N rows, as load_messages(last=N) promises.
        options = ["-c enable_bitmapscan=off"]
        if self.config.statement_timeout_ms:
            options.append(f"-c statement_timeout={self.config.statement_timeout_ms}")
        kwargs["options"] = " ".join(options)
        return kwargs

    @contextlib.asynccontextmanager
    async def _conn(self, what: str, *, checked: bool = True) -> AsyncIterator[Any]:
        """A connection for one call: the primary when it is free (or when there is no
        overflow pool to go to), else one from the overflow pool. The schema has been
        checked (and migrated) on it, unless ``checked`` is False and the primary serves:
        the caller then checks it (``_first_read``)."""
        lock = self._primary_lock
        if not lock.locked() or self.config.pool_max_size == 1:
            if lock.locked():
                try:
                    await asyncio.wait_for(lock.acquire(), self.config.pool_timeout)
                except TimeoutError:
                    raise StorageError(
                        f"PostgreSQL at {self._where}: no connection available for {what} "
                        f"within {self.config.pool_timeout:g}s (pool exhausted)"
                    ) from None
            else:
                await lock.acquire()
            try:
                conn = await self._connect_primary()
                if checked:
                    await self._ensure_migrated(conn)
                try:
                    with self._translate(what):
                        yield conn
                except BaseException:
                    from psycopg.pq import TransactionStatus

                    # A lost or busy connection is never used again; one that is idle
                    # again (the statement failed cleanly, a transaction rolled back)
                    # stays.
                    if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
                        self._primary = None
                        with contextlib.suppress(Exception):
                            await conn.close()
                    raise
                finally:
                    self._last_used[conn] = time.monotonic()
            finally:
                lock.release()
            return
        import psycopg

        pool = await self._get_pool()
        with self._translate(what):
            try:
                async with pool.connection() as conn:
                    try:
                        await self._ensure_migrated(conn)
                        yield conn
                    finally:
                        self._last_used[conn] = time.monotonic()
            except psycopg.OperationalError:
                # Connection lost or none to be had (PoolTimeout is one too). A pool that
                # failed to reconnect backs off for seconds, so drop it: the next
                # overlapping call opens a new one.
                await self._drop_pool(pool)
                raise

    async def _drop_pool(self, pool: Any) -> None:
        if self._pool is pool:
            self._pool = None
        with contextlib.suppress(Exception):  # it is broken already; closing is tidying
            await pool.close(timeout=1.0)

    @contextlib.contextmanager
    def _translate(self, what: str) -> Any:
        """Turn driver errors into StorageError naming host:port and never the DSN."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            yield
        except (SessionNotFound, StorageError):
            raise
        except PoolTimeout as exc:
            raise StorageError(
                f"PostgreSQL at {self._where}: no connection available for {what} "
                f"within {self.config.pool_timeout:g}s (server unreachable or pool exhausted)"
            ) from exc
        except psycopg.Error as exc:
            reason = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                            self.config.dsn.get_secret_value())
            raise StorageError(
                f"PostgreSQL at {self._where}: {what} failed: "
                f"{type(exc).__name__}: {reason or 'connection lost'}"
            ) from None
        except OSError as exc:
            raise StorageError(
                f"PostgreSQL at {self._where}: {what} failed: {type(exc).__name__}"
            ) from None

    def _t(self, template: str) -> Any:
        """A statement with ``{s}`` bound to the quoted schema (made once per template)."""
        statement = self._statements.get(template)
        if statement is None:
            from psycopg import sql

            statement = sql.SQL(template).format(s=sql.Identifier(self._schema))
            self._statements[template] = statement
        return statement

    async def close(self) -> None:
        """Close the connections. Idempotent."""
        self._closed = True
        pool, self._pool = self._pool, None
        primary, self._primary = self._primary, None
        if primary is not None:
            with contextlib.suppress(Exception):
                await primary.close()
        if pool is not None:
            await pool.close()

    # -- sessions --------------------------------------------------------------------

    async def create_session(self, record: SessionRecord) -> None:
        import psycopg
        from psycopg.types.json import Jsonb

        async with self._conn("create_session") as conn:
            try:
                await conn.execute(
                    self._t(
                        "INSERT INTO {s}.sessions "
                        "(session_id, user_id, updated_at, version, record, tools) "
                        "VALUES (%s, %s, %s, %s, %s, %s)"
                    ),
                    (record.session_id, record.user_id, record.updated_at, record.version,
                     Jsonb(_record_json(record)), _tools_json(record)),
                )
            except psycopg.errors.UniqueViolation:
                raise StorageError(f"session {record.session_id!r} already exists") from None

    async def load_session(self, session_id: str) -> SessionRecord | None:
        async with self._conn("load_session") as conn:
            cur = await conn.execute(
                self._t(f"SELECT {_RECORD_COLUMNS} FROM {{s}}.sessions WHERE session_id = %s"),
                (session_id,),
            )
            row = await cur.fetchone()
        return None if row is None else _record_from_row(row)

    async def save_session(self, record: SessionRecord) -> None:
        from psycopg.types.json import Jsonb

        async with self._conn("save_session") as conn:
            cur = await conn.execute(
                self._t(
                    "UPDATE {s}.sessions SET user_id = %s, updated_at = %s, record = %s, "
                    "tools = %s, version = version + 1 WHERE session_id = %s AND version = %s "
                    "RETURNING version"
                ),
                (record.user_id, record.updated_at, Jsonb(_record_json(record)),
                 _tools_json(record), record.session_id, record.version),
            )
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    self._t("SELECT version FROM {s}.sessions WHERE session_id = %s"),
                    (record.session_id,),
                )
                found = await cur.fetchone()
                if found is None:
                    raise SessionNotFound(f"session {record.session_id!r} not found")
                raise ConcurrencyError(
                    f"session {record.session_id!r} changed: stored version {found[0]}, "
                    f"saving version {record.version}"
                )
        record.version = int(row[0])

    async def delete_session(self, session_id: str) -> bool:
        """Delete the record, its messages and the blobs no other session references,
        in one transaction."""
        async with self._conn("delete_session") as conn, conn.transaction():
            # First the record: its row lock waits for a write of this session still
            # running, so the references read next include what that write added.
            cur = await conn.execute(
                self._t("DELETE FROM {s}.sessions WHERE session_id = %s"), (session_id,)
            )
            existed = bool(cur.rowcount)
            await drop_references(conn, self._t, session_id)
            return existed

    async def load_blob(self, sha256: str) -> bytes | None:
        """The bytes of a stored image or file, or None."""
        async with self._conn("load_blob") as conn:
            cur = await conn.execute(
                self._t("SELECT data FROM {s}.blobs WHERE sha256 = %s"), (sha256,), binary=True
            )
            row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[SessionRecord]:
        if limit < 0:
            raise StorageError(f"limit must be >= 0, got {limit}")
        where: list[str] = []
        params: list[Any] = []
        if user_id is not None:
            where.append("user_id = %s")
            params.append(user_id)
        if cursor is not None:
            # Keyset pagination on (updated_at, session_id): each page is an index range
            # scan, however deep the page.
            where.append(
                "(updated_at, session_id) < (SELECT updated_at, session_id "
                "FROM {s}.sessions WHERE session_id = %s)"
            )
            params.append(cursor)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        params.append(limit)
        async with self._conn("list_sessions") as conn:
            if cursor is not None:
                cur = await conn.execute(
                    self._t("SELECT 1 FROM {s}.sessions WHERE session_id = %s"), (cursor,)
                )
                if await cur.fetchone() is None:
                    raise StorageError(f"unknown cursor: {cursor}")
            cur = await conn.execute(
                self._t(
                    f"SELECT {_RECORD_COLUMNS} FROM {{s}}.sessions {clause} "
                    "ORDER BY updated_at DESC, session_id DESC LIMIT %s"
                ),
                params,
            )
            rows = await cur.fetchall()
        return [_record_from_row(row) for row in rows]

    # -- messages --------------------------------------------------------------------

    async def append_messages(
        self, session_id: str, messages: Sequence[Message]
    ) -> list[Message]:
        return await self._append(session_id, [], messages, "append_messages")

    async def commit_turn(
        self,
        session_id: str,
        pending_seq: int | Sequence[int] | None,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        provider_state: dict[str, Any] | None = None,
    ) -> list[Message]:
        """Remove the placeholders (one seq, or a tool turn's several), append
        ``messages`` and, with ``usage`` / ``provider_state``, update the record: one
        transaction."""
        return await self._append(
            session_id, pending_seqs(pending_seq), messages, "commit_turn",
            record_update=usage is not None or provider_state is not None,
            usage=usage or _NO_USAGE, provider_state=provider_state,
        )  # fmt: skip

    async def _append(
        self,
        session_id: str,
        pending: list[int],
        messages: Sequence[Message],
        what: str,
        *,
        record_update: bool = False,
        usage: Usage = _NO_USAGE,
        provider_state: dict[str, Any] | None = None,
    ) -> list[Message]:
        from psycopg.types.json import Jsonb

        check_turn(messages, provider_state)  # InvalidText for NUL / lone surrogates
        blobs: dict[str, bytes] = {}
        refs: set[str] = set()
        if any(m.parts for m in messages):
            # Media bytes go to the blob store; the rows keep sha256 and size.
            messages, blobs = split_media(messages)
            refs = blob_refs(messages)
        if messages and not blobs and not refs:
            return await self._append_one_statement(
                session_id, pending, messages, what, usage if record_update else None,
                provider_state,
            )  # fmt: skip
        if record_update:
            now = time.time()
            state = None if provider_state is None else Jsonb(provider_state)
            take: tuple[str, tuple[Any, ...]] = (_TAKE_SEQS_AND_UPDATE, (
                len(messages), now, usage.input_tokens, usage.output_tokens,
                usage.cached_tokens, now, state, session_id,
            ))  # fmt: skip
        else:
            take = (_TAKE_SEQS, (len(messages), session_id))
        ticket = WriteTicket()
        try:
            async with self._conn(what) as conn, conn.transaction():
                stored = await self._write(conn, ticket, take, session_id, pending,
                                           messages)
                if refs:
                    await keep_blobs(conn, self._t, session_id, blobs, refs)
                # Past this line only the COMMIT is left: an error now may come after
                # the server applied it.
                ticket.commit_sent = True
        except StorageError as exc:
            if not ticket.commit_sent:
                # COMMIT was never sent, so nothing of the transaction is stored.
                raise StorageError(f"{exc} (not applied)") from None
            # The answer to COMMIT was lost: ask the server what it did, never guess.
            await resolve(self._connect, ticket, where=f"PostgreSQL at {self._where}",
                          what=what, budget=self.config.pool_timeout)
        return stored

    async def _append_one_statement(
        self,
        session_id: str,
        pending: list[int],
        messages: Sequence[Message],
        what: str,
        usage: Usage | None,
        provider_state: dict[str, Any] | None,
    ) -> list[Message]:
        """A write without media as one autocommit statement (``_ONE_STATEMENT``): one
        round trip. A lost answer is resolved by its ``write_id`` (outcome.py)."""
        import psycopg

        write_id = secrets.randbits(63)
        columns = zip(*(message_row(m) for m in messages), strict=True)
        params: dict[str, Any] = {
            "n": len(messages), "sid": session_id, "pending": pending, "wid": write_id,
            **dict(zip(_ONE_STATEMENT_ARRAYS, map(list, columns), strict=True)),
        }  # fmt: skip
        template = _APPEND_ONE if usage is None else _COMMIT_ONE
        if usage is not None:
            params.update(
                now=time.time(), inp=usage.input_tokens, out=usage.output_tokens,
                cac=usage.cached_tokens,
                state=None if provider_state is None else dump_json(provider_state),
            )  # fmt: skip
        lock_key: int | None = None
        try:
            async with self._conn(what) as conn:
                lock_key = self._lock_keys.get(conn)
                if lock_key is None:
                    # Once per connection, in a round trip of its own: the identity a
                    # lost answer is resolved by. Held until the connection ends.
                    key = secrets.randbits(63)
                    await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                    self._lock_keys[conn] = lock_key = key
                try:
                    cur = await conn.execute(self._t(template), params)
                    row = await cur.fetchone()
                except psycopg.Error:
                    if not conn.broken and not conn.closed:
                        lock_key = None  # the server answered: nothing was applied
                    raise
        except StorageError as exc:
            if lock_key is None:
                raise StorageError(f"{exc} (not applied)") from None
            # The answer was lost: ask the server what it did, never guess.
            found = await resolve_write(
                self._connect, lock_key=lock_key,
                find=(self._t(_FIND_WRITE), (session_id, write_id)),
                where=f"PostgreSQL at {self._where}", what=what,
                budget=self.config.pool_timeout,
            )  # fmt: skip
            return with_seqs(messages, int(found[0]))
        if row is None:
            raise SessionNotFound(f"session {session_id!r} not found")
        return with_seqs(messages, int(row[0]) - len(messages))

    async def _connect(self) -> Any:
        """A fresh connection outside the pool (the primary, or one resolving a lost
        answer)."""
        import psycopg

        return await psycopg.AsyncConnection.connect(
            self.config.dsn.get_secret_value(), **self._connect_kwargs()
        )

    async def _write(
        self,
        conn: Any,
        ticket: WriteTicket,
        take: tuple[str, tuple[Any, ...]],
        session_id: str,
        pending: list[int],
        messages: Sequence[Message],
    ) -> list[Message]:
        """The statements of one append or commit, inside its transaction."""
        # Taking the counter locks the session row until commit, so writers on any
        # host get disjoint, increasing seq ranges and commit in seq order.
        cur = await conn.execute(self._t(take[0]), take[1])
        row = await cur.fetchone()
        if row is None:
            raise SessionNotFound(f"session {session_id!r} not found")
        first = int(row[0]) - len(messages)
        ticket.xid, ticket.pid = str(row[1]), int(row[2])
        if pending:
            # Committed messages are never removed: only a placeholder can go.
            await conn.execute(
                self._t(
                    "DELETE FROM {s}.messages WHERE session_id = %s AND seq = ANY(%s) "
                    "AND status <> 'committed'"
                ),
                (session_id, pending),
            )
        if messages:
            async with conn.cursor() as c:
                await c.executemany(
                    self._t(
                        f"INSERT INTO {{s}}.messages (session_id, {_MESSAGE_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, "
                        "COALESCE(%s::jsonb, '{{}}'::jsonb), %s)"
                    ),
                    [(session_id, first + i, *message_row(m)) for i, m in enumerate(messages)],
                )
        return with_seqs(messages, first)

    async def load_messages(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:
        if last is not None and last < 0:
            raise StorageError(f"last must be >= 0, got {last}")
        if last == 0:
            return []
        where = ["session_id = %s"]
        params: list[Any] = [session_id]
        if after_seq is not None:
            where.append("seq > %s")
            params.append(after_seq)
        if statuses is not None:
            where.append("status = ANY(%s)")
            params.append([str(MessageStatus(s)) for s in statuses])
        query = f"SELECT {_READ_COLUMNS} FROM {{s}}.messages WHERE {' AND '.join(where)}"
        if last is not None:
            query += " ORDER BY seq DESC LIMIT %s"
            params.append(last)
        else:
            query += " ORDER BY seq"
        async with self._conn("load_messages", checked=False) as conn:
            if self._migrated:
                cur = await conn.execute(self._t(query), params)
                rows = await cur.fetchall()
            else:
                rows = await self._first_read(conn, query, params, last is not None)
        if last is not None:
            rows.reverse()
        return _messages_from_rows(rows)

    async def _first_read(
        self, conn: Any, query: str, params: list[Any], newest_first: bool
    ) -> list[Any]:
        """A fresh store's first read, with the schema check in the same statement: a
        fresh store reading a tail costs a connection set-up and one round trip. Only
        when the schema is not exactly this package's (a new, older or newer one) does
        the full check run (migrating, or refusing a newer schema) before the read."""
        import psycopg

        from langswarm_storage_postgres.migrations import KNOWN_VERSIONS

        order = "m.seq DESC" if newest_first else "m.seq"
        combined = (
            "SELECT v.versions, m.* FROM (SELECT array_agg(version) AS versions FROM "
            f"{{s}}.langswarm_migrations) AS v LEFT JOIN LATERAL ({query}) AS m ON true "
            f"ORDER BY {order}"
        )
        try:
            cur = await conn.execute(self._t(combined), params)
            rows = await cur.fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName,
                psycopg.errors.UndefinedColumn):  # fmt: skip
            rows = None  # no schema yet, or an older one
        if rows and frozenset(rows[0][0] or ()) == KNOWN_VERSIONS:
            self._migrated = True
            return [row[1:] for row in rows if row[1] is not None]
        await self._ensure_migrated(conn)  # refuses a newer schema, before any answer
        cur = await conn.execute(self._t(query), params)
        return list(await cur.fetchall())

    async def update_message_status(
        self, session_id: str, seqs: Sequence[int], status: MessageStatus
    ) -> None:
        if not seqs:
            return
        async with self._conn("update_message_status") as conn:
            await conn.execute(
                self._t(
                    "UPDATE {s}.messages SET status = %s "
                    "WHERE session_id = %s AND seq = ANY(%s)"
                ),
                (str(MessageStatus(status)), session_id, list(seqs)),
            )


def _record_json(record: SessionRecord) -> dict[str, Any]:
    # The version lives in its own column, the single source of truth for the check;
    # the tools in theirs, as JSON text (jsonb would reorder the keys of their schemas).
    return record.model_dump(mode="json", exclude={"version", "tools"})


def _tools_json(record: SessionRecord) -> str | None:
    return dump_json(record.tools) if record.tools else None


def _record_from_row(row: Sequence[Any]) -> SessionRecord:
    data, version, tools = row
    fields = {**data, "version": int(version)}
    if tools:
        fields["tools"] = json.loads(tools)
    return SessionRecord.model_validate(fields)


_STATUS = {s.value: s for s in MessageStatus}


def _messages_from_rows(rows: Sequence[Sequence[Any]]) -> list[Message]:
    # Rows were validated on the way in: build, don't re-validate (a resume reads many).
    status_of, usage_of, loads = _STATUS.__getitem__, Usage.model_validate_json, json.loads
    return [
        build_message({
            "role": role,
            "content": content,
            "parts": load_parts(parts) if parts else [],
            "seq": seq,
            "status": status_of(status),
            "usage": None if usage is None else usage_of(usage),
            "provider_message_id": pmid,
            "created_at": created_at,
            "metadata": {} if metadata == "{}" else loads(metadata),
            "parsed": None,
        })
        for seq, role, content, status, usage, pmid, created_at, metadata, parts in rows
    ]
