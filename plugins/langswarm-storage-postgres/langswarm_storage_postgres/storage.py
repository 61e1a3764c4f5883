"""``PostgresSessionStorage``: psycopg 3 (async) with a psycopg_pool connection pool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

from langswarm_runtime.errors import ConcurrencyError, SessionNotFound, StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.storage.base import ISessionStorage, pending_seqs
from langswarm_runtime.session.storage.blobs import blob_refs, dump_parts, load_parts, split_media
from langswarm_runtime.session.text import check_turn
from langswarm_storage_postgres.blobs import drop_references, keep_blobs
from langswarm_storage_postgres.config import PostgresStorageConfig
from langswarm_storage_postgres.dsn import describe as _describe
from langswarm_storage_postgres.dsn import scrub as _scrub
from langswarm_storage_postgres.outcome import WriteTicket, resolve

__all__ = ["PostgresSessionStorage"]

_RECORD_COLUMNS = "record, version, tools"
_MESSAGE_COLUMNS = (
    "seq, role, content, status, usage, provider_message_id, created_at, metadata, parts"
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
_NO_USAGE = Usage()


class PostgresSessionStorage(ISessionStorage):
    """Sessions in PostgreSQL, shared safely by many processes on many hosts.

    ``PostgresSessionStorage(dsn="postgresql://...", schema="app")`` in code, or
    ``storage: {type: postgres, dsn: ...}`` in swarm.yaml. The pool opens and the schema
    is migrated on first use (or on ``await storage.open()``).
    """

    def __init__(self, config: PostgresStorageConfig | None = None, /, **options: Any) -> None:
        if config is None:
            config = PostgresStorageConfig(**options)
        elif options:
            raise TypeError("pass either a PostgresStorageConfig or keyword options")
        self.config = config
        self._schema = config.schema_name
        self._where = _describe(config.dsn.get_secret_value())
        self._pool: Any = None
        #: The connection that checked the schema on open. It serves calls until the
        #: pool has a connection of its own ready, so opening a store and reading its
        #: first tail costs one connection set-up, not two.
        self._first: Any = None
        self._first_busy = False
        self._closing: set[asyncio.Future[Any]] = set()
        self._open_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresSessionStorage({self._where}, schema={self._schema!r})"

    # -- connection management -------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate the schema and open the pool. Called on first use anyway;
        call it at start-up to fail fast with ``StorageError`` if the server is away."""
        await self._get_pool()

    async def _get_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._open_lock:
            if self._pool is not None:
                return self._pool
            if self._closed:
                raise StorageError(f"{self!r} is closed")
            import psycopg  # lazy: only sessions that use this storage pay the import
            from psycopg_pool import AsyncConnectionPool

            from langswarm_storage_postgres.migrations import migrate

            kwargs = self._connect_kwargs()
            dsn = self.config.dsn.get_secret_value()
            # One direct connection first: it runs the migrations and, when the server
            # is away, fails with the real reason (a pool would only time out).
            with self._translate("connect"):
                conn = await psycopg.AsyncConnection.connect(dsn, **kwargs)
                try:
                    await migrate(conn, self._schema)
                except BaseException:
                    await conn.close()
                    raise
            pool: Any = AsyncConnectionPool(
                dsn,
                kwargs=kwargs,
                min_size=self.config.pool_min_size,
                max_size=self.config.pool_max_size,
                timeout=self.config.pool_timeout,
                # A connection the server dropped while idle is replaced, not handed out.
                check=AsyncConnectionPool.check_connection,
                open=False,
                name=f"langswarm-{self._schema}",
            )
            try:
                with self._translate("connect"):
                    await pool.open(wait=False)
            except BaseException:
                await conn.close()
                raise
            self._first = conn
            self._pool = pool
            return pool

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
    async def _conn(self, what: str) -> AsyncIterator[Any]:
        import psycopg

        pool = await self._get_pool()
        first = self._take_first(pool)
        if first is not None:
            try:
                with self._translate(what):
                    yield first
            except BaseException:
                from psycopg.pq import TransactionStatus

                # A lost or busy connection is never handed out again; one that is idle
                # again (the statement failed cleanly, a transaction rolled back) stays.
                if first.closed or first.info.transaction_status != TransactionStatus.IDLE:
                    self._first = None
                    with contextlib.suppress(Exception):
                        await first.close()
                raise
            finally:
                self._first_busy = False
            return
        with self._translate(what):
            try:
                async with pool.connection() as conn:
                    yield conn
            except psycopg.OperationalError:
                # Connection lost or none to be had (PoolTimeout is one too). A pool that
                # failed to reconnect backs off for seconds, so drop it: the next call
                # connects afresh, failing fast while the server is away and succeeding
                # as soon as it is back.
                await self._drop_pool(pool)
                raise

    def _take_first(self, pool: Any) -> Any:
        """The open-time connection, when it is free, idle and the pool has no connection
        of its own ready yet; once the pool has one, it is retired (closed)."""
        from psycopg.pq import TransactionStatus

        first = self._first
        if first is None or self._first_busy:
            return None
        usable = not first.closed and first.info.transaction_status == TransactionStatus.IDLE
        if usable and not pool.get_stats().get("pool_available", 0):
            self._first_busy = True
            return first
        self._first = None
        task = asyncio.ensure_future(first.close())  # the pool serves from now on
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return None

    async def _drop_pool(self, pool: Any) -> None:
        if self._pool is pool:
            self._pool = None
        first, self._first = self._first, None
        if first is not None:
            with contextlib.suppress(Exception):
                await first.close()
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
        """A statement with ``{s}`` bound to the quoted schema."""
        from psycopg import sql

        return sql.SQL(template).format(s=sql.Identifier(self._schema))

    async def close(self) -> None:
        """Close the pool. Idempotent."""
        self._closed = True
        pool, self._pool = self._pool, None
        first, self._first = self._first, None
        if first is not None:
            with contextlib.suppress(Exception):
                await first.close()
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task
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

    async def _connect(self) -> Any:
        """A fresh connection outside the pool (for resolving a lost COMMIT)."""
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
        from psycopg.types.json import Jsonb

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
        stored = [m.model_copy(update={"seq": first + i}) for i, m in enumerate(messages)]
        if stored:
            async with conn.cursor() as c:
                await c.executemany(
                    self._t(
                        f"INSERT INTO {{s}}.messages (session_id, {_MESSAGE_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    ),
                    [
                        (session_id, m.seq, m.role, m.content, str(m.status),
                         None if m.usage is None else Jsonb(m.usage.model_dump()),
                         m.provider_message_id, m.created_at, Jsonb(m.metadata),
                         dump_parts(m.parts))
                        for m in stored
                    ],
                )
        return stored

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
        query = f"SELECT {_MESSAGE_COLUMNS} FROM {{s}}.messages WHERE {' AND '.join(where)}"
        if last is not None:
            query += " ORDER BY seq DESC LIMIT %s"
            params.append(last)
        else:
            query += " ORDER BY seq"
        async with self._conn("load_messages") as conn:
            cur = await conn.execute(self._t(query), params)
            rows = await cur.fetchall()
        if last is not None:
            rows.reverse()
        return [_message_from_row(row) for row in rows]

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
    if not record.tools:
        return None
    return json.dumps(record.tools, ensure_ascii=False, separators=(",", ":"))


def _record_from_row(row: Sequence[Any]) -> SessionRecord:
    data, version, tools = row
    fields = {**data, "version": int(version)}
    if tools:
        fields["tools"] = json.loads(tools)
    return SessionRecord.model_validate(fields)


def _message_from_row(row: Sequence[Any]) -> Message:
    # Rows were validated on the way in: construct, don't re-validate (a resume reads many).
    seq, role, content, status, usage, provider_message_id, created_at, metadata, parts = row
    return Message.model_construct(
        seq=int(seq),
        role=role,
        content=content,
        status=MessageStatus(status),
        usage=None if usage is None else Usage.model_construct(**usage),
        provider_message_id=provider_message_id,
        created_at=float(created_at),
        metadata=metadata or {},
        parts=load_parts(parts) if parts else [],
    )
