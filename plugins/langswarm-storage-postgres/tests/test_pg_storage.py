"""PostgreSQL-specific behaviour: migrations, seq allocation, pagination, errors.

The generic contract is covered by the conformance suite (test_pg_conformance.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from langswarm_storage_postgres import PostgresSessionStorage, PostgresStorageConfig
from langswarm_storage_postgres.migrations import MIGRATIONS
from pydantic import ValidationError

from langswarm_runtime.errors import ConcurrencyError, SessionNotFound, StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.parts import ImagePart, TextPart


def _rec(sid: str, user: str = "u1", updated: float = 1000.0) -> SessionRecord:
    return SessionRecord(session_id=sid, user_id=user, provider="echo", updated_at=updated)


async def test_roundtrip_and_version_check(storage: PostgresSessionStorage) -> None:
    rec = _rec("s1")
    rec.metadata = {"k": [1, 2]}
    rec.usage = Usage(input_tokens=3, output_tokens=4)
    await storage.create_session(rec)
    loaded = await storage.load_session("s1")
    assert loaded == rec
    with pytest.raises(StorageError, match="already exists"):
        await storage.create_session(_rec("s1"))

    loaded.model = "m2"
    await storage.save_session(loaded)
    assert loaded.version == 1
    stale = rec.model_copy()
    stale.version = 0
    with pytest.raises(ConcurrencyError):
        await storage.save_session(stale)
    assert (await storage.load_session("s1")).model == "m2"  # type: ignore[union-attr]
    assert await storage.delete_session("s1") is True
    assert await storage.delete_session("s1") is False
    assert await storage.load_session("s1") is None


async def test_messages_tail_statuses_and_commit_turn(storage: PostgresSessionStorage) -> None:
    await storage.create_session(_rec("s1"))
    first = await storage.append_messages(
        "s1", [Message(role="user", content=f"m{i}", usage=Usage(input_tokens=i))
               for i in range(10)]
    )
    assert [m.seq for m in first] == list(range(1, 11))
    pending = await storage.append_messages(
        "s1", [Message(role="user", content="p", status=MessageStatus.PENDING)]
    )
    tail = await storage.load_messages("s1", last=3)
    assert [m.content for m in tail] == ["m8", "m9", "p"]
    committed = await storage.load_messages("s1", last=3, statuses={MessageStatus.COMMITTED})
    assert [m.content for m in committed] == ["m7", "m8", "m9"]
    assert committed[0].usage == Usage(input_tokens=7)
    assert [m.seq for m in await storage.load_messages("s1", after_seq=9)] == [10, 11]

    turn = await storage.commit_turn(
        "s1", pending[0].seq,
        [Message(role="user", content="p"), Message(role="assistant", content="r")],
    )
    assert [m.seq for m in turn] == [12, 13]
    everything = await storage.load_messages("s1")
    assert [m.seq for m in everything] == list(range(1, 11)) + [12, 13]
    await storage.update_message_status("s1", [12], MessageStatus.FAILED)
    assert (await storage.load_messages("s1", last=2))[0].status is MessageStatus.FAILED

    with pytest.raises(SessionNotFound):
        await storage.append_messages("nope", [Message(role="user", content="x")])
    with pytest.raises(SessionNotFound):
        await storage.commit_turn("nope", None, [Message(role="user", content="x")])
    assert await storage.load_messages("nope") == []
    assert await storage.delete_session("s1")
    assert await storage.load_messages("s1") == []


async def test_tail_read_uses_the_index(storage: PostgresSessionStorage, pg_dsn: str,
                                        pg_schema: str) -> None:
    await storage.create_session(_rec("big"))
    for _ in range(20):
        await storage.append_messages(
            "big", [Message(role="user", content="x" * 10) for _ in range(100)]
        )
    # The storage's own connection settings, and no ANALYZE: a fresh table has no
    # statistics, the case where a planner is most likely to read everything.
    kwargs = storage._connect_kwargs()
    async with await psycopg.AsyncConnection.connect(pg_dsn, **kwargs) as conn:
        cur = await conn.execute(
            f'EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM "{pg_schema}".messages '
            "WHERE session_id = 'big' AND status = ANY('{committed}') ORDER BY seq DESC LIMIT 5"
        )
        plan = (await cur.fetchone())[0][0]["Plan"]  # type: ignore[index]
    scan = plan["Plans"][0]
    assert "Index" in scan["Node Type"] and scan["Scan Direction"] == "Backward"
    assert scan["Actual Rows"] == 5  # read 5 rows of 2000, not the history


async def test_list_sessions_by_user_with_cursor(storage: PostgresSessionStorage) -> None:
    for i in range(7):
        await storage.create_session(_rec(f"a{i}", "alice", updated=100.0 + i))
    await storage.create_session(_rec("b0", "bob", updated=150.0))
    # Same updated_at: the session id breaks the tie, so pages neither skip nor repeat.
    await storage.create_session(_rec("a7", "alice", updated=106.0))
    seen: list[str] = []
    cursor = None
    while True:
        page = await storage.list_sessions(user_id="alice", limit=3, cursor=cursor)
        if not page:
            break
        seen += [r.session_id for r in page]
        cursor = page[-1].session_id
    assert seen == ["a7", "a6", "a5", "a4", "a3", "a2", "a1", "a0"]
    everyone = await storage.list_sessions(limit=2)
    assert [r.session_id for r in everyone] == ["b0", "a7"]


async def test_concurrent_appends_from_many_stores(storage_factory: Callable[..., Any]) -> None:
    stores = [storage_factory(pool_max_size=4) for _ in range(4)]
    await stores[0].create_session(_rec("s"))

    async def writer(store: PostgresSessionStorage, w: int) -> None:
        for i in range(15):
            await store.append_messages(
                "s", [Message(role="user", content=f"{w}-{i}-u"),
                      Message(role="assistant", content=f"{w}-{i}-a")]
            )

    await asyncio.gather(*(writer(s, w) for w, s in enumerate(stores) for _ in range(2)))
    msgs = await stores[0].load_messages("s")
    seqs = [m.seq for m in msgs]
    assert len(msgs) == 4 * 2 * 15 * 2
    assert seqs == sorted(set(seqs))  # type: ignore[type-var]
    for user, reply in zip(msgs[::2], msgs[1::2], strict=True):  # each pair stays adjacent
        assert reply.content == user.content[:-1] + "a"


async def test_migrations_concurrent_start_and_recorded(
    storage_factory: Callable[..., Any], pg_dsn: str, pg_schema: str
) -> None:
    stores = [storage_factory() for _ in range(5)]
    await asyncio.gather(*(s.open() for s in stores))  # five "processes" start at once
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute(
            f'SELECT version, name FROM "{pg_schema}".langswarm_migrations ORDER BY version'
        )
        assert await cur.fetchall() == [(v, n) for v, n, _ in MIGRATIONS]
        cur = await conn.execute(
            "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position) "
            "FROM information_schema.columns WHERE table_schema = %s GROUP BY table_name",
            (pg_schema,),
        )
        assert dict(await cur.fetchall()) == {
            "sessions": ["session_id", "user_id", "updated_at", "version", "next_seq",
                         "record", "tools"],
            "messages": ["session_id", "seq", "role", "content", "status", "usage",
                         "provider_message_id", "created_at", "metadata", "parts", "write_id"],
            "blobs": ["sha256", "data", "size", "created_at"],
            "blob_refs": ["session_id", "sha256"],
            "langswarm_migrations": ["version", "name", "applied_at"],
        }  # fmt: skip


async def test_schema_of_a_newer_version_is_refused_before_anything_is_written(
    storage_factory: Callable[..., Any], pg_dsn: str, pg_schema: str
) -> None:
    from langswarm_storage_postgres.migrations import SCHEMA_VERSION

    old = storage_factory()
    await old.create_session(_rec("kept"))
    await old.close()
    newer = SCHEMA_VERSION + 1
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute(
            f'INSERT INTO "{pg_schema}".langswarm_migrations (version, name) '
            "VALUES (%s, 'from_the_future')", (newer,),
        )

        async def snapshot() -> list[Any]:
            cur = await conn.execute(
                f'SELECT (SELECT count(*) FROM "{pg_schema}".sessions), '
                f'(SELECT count(*) FROM "{pg_schema}".messages), '
                f'(SELECT array_agg(version ORDER BY version) '
                f'FROM "{pg_schema}".langswarm_migrations), '
                "(SELECT count(*) FROM information_schema.tables WHERE table_schema = %s)",
                (pg_schema,),
            )
            return list(await cur.fetchone() or [])

        before = await snapshot()
        store = storage_factory()
        version_words = rf"schema version {newer}\b.*schema version {SCHEMA_VERSION}\b"
        with pytest.raises(StorageError, match=version_words):
            await store.open()
        with pytest.raises(StorageError, match=version_words):  # and on every later use
            await store.create_session(_rec("new"))
        with pytest.raises(StorageError, match=version_words):
            await store.append_messages("kept", [Message(role="user", content="x")])
        reader = storage_factory()  # a fresh store whose first call is a read
        with pytest.raises(StorageError, match=version_words):
            await reader.load_messages("kept", last=20)
        assert await snapshot() == before


def test_config_validation_and_secret() -> None:
    cfg = PostgresStorageConfig.model_validate(
        {"type": "postgres", "dsn": "postgresql://app:hunter2@db:5432/x", "schema": "app"}
    )
    assert cfg.schema_name == "app"
    assert "hunter2" not in repr(cfg) and "hunter2" not in repr(PostgresSessionStorage(cfg))
    with pytest.raises(ValidationError):
        PostgresStorageConfig.model_validate({"dsn": "x", "bogus": 1})
    with pytest.raises(ValidationError):
        PostgresStorageConfig.model_validate({"dsn": "x", "schema": 'a"; drop'})
    with pytest.raises(ValidationError) as info:
        PostgresStorageConfig.model_validate({"dsn": ["pw-SECRET-4"]})
    assert "pw-SECRET-4" not in str(info.value)
    with pytest.raises(ValidationError, match="pool_max_size"):
        PostgresStorageConfig.model_validate({"dsn": "x", "pool_min_size": 5, "pool_max_size": 2})


async def test_unreachable_server_names_host_not_password() -> None:
    store = PostgresSessionStorage(
        dsn="postgresql://app:s3cr3t-pw@127.0.0.1:1/db", connect_timeout=2
    )
    with pytest.raises(StorageError) as info:
        await store.load_session("x")
    text = str(info.value)
    assert "127.0.0.1:1" in text and "s3cr3t-pw" not in text
    assert info.value.__cause__ is None or "s3cr3t-pw" not in str(info.value.__cause__)
    await store.close()
    await store.close()  # idempotent


async def test_unparsable_dsn_is_not_echoed() -> None:
    store = PostgresSessionStorage(dsn="host=db password=pw-SECRET-7 oops")
    with pytest.raises(StorageError, match="invalid DSN") as info:
        await store.open()
    assert "pw-SECRET-7" not in str(info.value)
    await store.close()


def test_registered_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="langswarm_runtime") if ep.name == "postgres"]
    assert [ep.value for ep in eps] == ["langswarm_storage_postgres"]
    import langswarm_storage_postgres

    registered: list[tuple[Any, ...]] = []
    langswarm_storage_postgres.register_storages(lambda *a: registered.append(a))
    assert registered == [("postgres", PostgresSessionStorage, PostgresStorageConfig)]


# -- rich turns: parts, tools and blobs ---------------------------------------------------


async def test_text_only_rows_and_records_cost_nothing_extra(
    storage: PostgresSessionStorage, pg_dsn: str, pg_schema: str
) -> None:
    """Text-only messages and records without tools leave the new columns NULL; media
    bytes are in the blob table, once, never in a message row."""
    await storage.create_session(_rec("s1"))
    tools = [{"name": "weather", "parameters": {"type": "object", "properties": {}}}]
    await storage.create_session(_rec("s2").model_copy(update={"tools": tools}))
    image = ImagePart.from_bytes(b"\x89PNG\x00" + bytes(range(256)) * 400, "image/png")
    await storage.append_messages("s1", [Message(role="user", content="plain")])
    await storage.append_messages(
        "s1", [Message(role="user", parts=[TextPart(text="look"), image]) for _ in range(3)]
    )
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        cur = await conn.execute(
            f'SELECT seq, parts, octet_length(parts) FROM "{pg_schema}".messages ORDER BY seq'
        )
        rows = await cur.fetchall()
        assert rows[0][1] is None
        assert all(r[2] < 300 for r in rows[1:])  # a reference, not 100 kB of base64
        cur = await conn.execute(
            f'SELECT session_id, tools, record ? %s FROM "{pg_schema}".sessions '
            "ORDER BY session_id", ("tools",),
        )
        assert [(r[0], r[1] is None, r[2]) for r in await cur.fetchall()] == [
            ("s1", True, False), ("s2", False, False)]  # fmt: skip
        cur = await conn.execute(f'SELECT sha256, size, data FROM "{pg_schema}".blobs')
        assert await cur.fetchall() == [(image.sha256, image.size, image.data)]
    assert await storage.load_blob(image.sha256 or "") == image.data


async def _lock_waiters(conn: psycopg.AsyncConnection[Any], holder: int, n: int) -> None:
    """Wait until ``n`` server processes wait, directly or not, for ``holder``'s locks."""
    for _ in range(250):
        cur = await conn.execute(
            "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock'"
        )
        blocked_by = {pid: set(pids) for pid, pids in await cur.fetchall()}
        chain = {holder}
        while True:
            more = {pid for pid, pids in blocked_by.items() if pids & chain} - chain
            if not more:
                break
            chain |= more
        if len(chain) - 1 >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{n} statements never waited for the held lock")


@pytest.mark.parametrize("first", ["delete", "write"])
async def test_blob_survives_racing_delete_of_its_last_session(
    storage_factory: Callable[..., Any], pg_dsn: str, pg_schema: str, first: str
) -> None:
    """Session A holds the only reference to a blob and is deleted while session B
    writes the same bytes. Whichever reaches the blob first, B's committed message has
    its blob afterwards. The blob row is held locked from outside so that both wait,
    in the order ``first`` says, then released."""
    deleter, writer = storage_factory(), storage_factory()
    image = ImagePart.from_bytes(b"race" + bytes(range(256)) * 8, "image/png")
    sha = image.sha256 or ""
    for sid in ("A", "B"):
        await deleter.create_session(_rec(sid))
    await deleter.append_messages("A", [Message(role="user", parts=[image])])
    await writer.open()
    async with await psycopg.AsyncConnection.connect(pg_dsn) as watch, \
            await psycopg.AsyncConnection.connect(pg_dsn) as holder:  # fmt: skip
        async with holder.transaction():
            await holder.execute(
                f'SELECT 1 FROM "{pg_schema}".blobs WHERE sha256 = %s FOR UPDATE', (sha,)
            )

            def delete() -> Any:
                return asyncio.ensure_future(deleter.delete_session("A"))

            def write() -> Any:
                return asyncio.ensure_future(
                    writer.append_messages("B", [Message(role="user", parts=[image])]))

            tasks = []
            for step in ([delete, write] if first == "delete" else [write, delete]):
                tasks.append(step())
                await _lock_waiters(watch, holder.info.backend_pid, len(tasks))
        done = await asyncio.gather(*tasks)
    assert True in done  # A was deleted
    assert await writer.load_blob(sha) == image.data
    (got,) = await writer.load_messages("B")
    assert got.parts == [image.without_data()]
    assert await writer.delete_session("B")
    assert await writer.load_blob(sha) is None


async def test_opening_a_current_schema_takes_no_migration_lock(
    storage_factory: Callable[..., Any], pg_dsn: str, pg_schema: str
) -> None:
    """Most opens find the schema current: one plain read, no transaction, so they never
    wait for another process's migration lock (and a fresh store is quicker to open)."""
    import psycopg

    await storage_factory().open()  # creates and migrates the schema
    with psycopg.connect(pg_dsn, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"langswarm-migrate:{pg_schema}",)
        )
        fresh = storage_factory(connect_timeout=2)
        await asyncio.wait_for(fresh.open(), timeout=3)  # would block on the lock
        assert await fresh.load_messages("nobody") == []
        holder.execute("ROLLBACK")


async def test_one_task_at_a_time_uses_one_connection_and_overlap_stays_bounded(
    storage_factory: Callable[..., Any], pg_dsn: str
) -> None:
    """The connection that checked the schema is the primary: a store used by one task
    at a time (a fresh store reading a tail, a worker running turns) costs one
    connection set-up. Overlapping calls open the overflow pool, and the store never
    holds more than ``pool_max_size`` connections; with ``pool_max_size: 1`` they take
    turns on the primary."""
    import psycopg

    def ours() -> int:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'langswarm-runtime' AND pid <> pg_backend_pid()"
            ).fetchone()
            return int(row[0]) if row else 0

    before = ours()
    store = storage_factory(pool_min_size=1, pool_max_size=3)
    await store.create_session(SessionRecord(session_id="s", user_id="u", provider="p"))
    for i in range(30):
        await store.append_messages("s", [Message(role="user", content=f"m{i}")])
        assert len(await store.load_messages("s", last=20)) == min(i + 1, 20)
    await asyncio.sleep(0.1)
    assert ours() - before == 1
    # Overlapping calls: each holds its connection for 0.2 s on the server.
    async def slow(store: Any) -> None:
        async with store._conn("test") as conn:
            await conn.execute("SELECT pg_sleep(0.2)")

    await asyncio.gather(*(slow(store) for _ in range(6)))
    assert 2 <= ours() - before <= 3
    await store.close()
    single = storage_factory(pool_min_size=1, pool_max_size=1)
    await single.open()
    await asyncio.gather(*(slow(single) for _ in range(3)))
    got = await asyncio.gather(*(single.load_messages("s", last=5) for _ in range(5)))
    assert all(len(g) == 5 for g in got)
    assert ours() - before == 1
    await single.close()
