"""Faults: the server is cut off through a TCP proxy this test controls (never by
stopping the shared server)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langswarm_storage_postgres import PostgresSessionStorage
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from langswarm_runtime import SessionManager
from langswarm_runtime.errors import StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord
from langswarm_runtime.testing.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[TcpProxy]:
    params = conninfo_to_dict(pg_dsn)
    p = await TcpProxy(str(params.get("host", "127.0.0.1")),
                       int(params.get("port", 5432))).start()
    yield p
    await p.close()


@pytest.fixture
def proxied(pg_dsn: str, proxy: TcpProxy) -> str:
    return make_conninfo(pg_dsn, host="127.0.0.1", port=proxy.port)


async def test_connection_lost_then_back(proxy: TcpProxy, proxied: str, pg_schema: str) -> None:
    store = PostgresSessionStorage(dsn=proxied, schema=pg_schema, pool_timeout=1.5,
                                   connect_timeout=1)
    try:
        await store.create_session(SessionRecord(session_id="s", user_id="u", provider="echo"))
        await store.append_messages("s", [Message(role="user", content="before")])
        await proxy.cut()
        with pytest.raises(StorageError, match=f"127.0.0.1:{proxy.port}"):
            await store.append_messages("s", [Message(role="user", content="lost")])
        with pytest.raises(StorageError):
            await store.load_messages("s")
        await proxy.restore()
        appended = await store.append_messages("s", [Message(role="user", content="after")])
        contents = [m.content for m in await store.load_messages("s")]
        assert contents == ["before", "after"]
        assert appended[0].seq == 2  # the failed append consumed nothing
    finally:
        await store.close()


async def test_turn_fails_mid_way_and_next_turn_succeeds(
    proxy: TcpProxy, proxied: str, pg_schema: str, monkeypatch: Any
) -> None:
    store = PostgresSessionStorage(dsn=proxied, schema=pg_schema, pool_timeout=1.5,
                                   connect_timeout=1)
    async with SessionManager(storage=store) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("one")
        # Cut the server off after the pending write, while the provider is answering.
        original = store.commit_turn

        async def cut_then_commit(*args: Any, **kwargs: Any) -> Any:
            await proxy.cut()
            return await original(*args, **kwargs)

        monkeypatch.setattr(store, "commit_turn", cut_then_commit)
        with pytest.raises(StorageError):
            await session.send_message("two")
        monkeypatch.setattr(store, "commit_turn", original)
        await proxy.restore()
        reply = await session.send_message("three")
        assert "three" in reply.content
        history = await session.get_history()
        assert [m.content for m in history if m.role == "user"] == ["one", "three"]
        everything = await store.load_messages(session.session_id)
        committed = [m for m in everything if m.status is MessageStatus.COMMITTED]
        assert len(committed) == 4  # "two" left no committed half
        assert all(m.content != "two" for m in committed)


async def test_unreachable_at_start_names_host_without_password(pg_schema: str) -> None:
    store = PostgresSessionStorage(
        dsn="host=127.0.0.1 port=9 user=app password=pw-SECRET-1 dbname=x", schema=pg_schema,
        connect_timeout=1,
    )
    with pytest.raises(StorageError) as info:
        await store.open()
    assert "127.0.0.1:9" in str(info.value)
    assert "pw-SECRET-1" not in str(info.value)
    assert "pw-SECRET-1" not in repr(info.value.__cause__ or "")
    await store.close()


async def test_lost_commit_still_open_on_the_server_is_ended_and_reported_not_applied(
    pg_dsn: str,
) -> None:
    """A half-open link: the client is gone but its server process still holds the write
    transaction open (no FIN arrived). Resolving it ends that process, so the server
    decides now, and reports what it decided."""
    import psycopg
    from langswarm_storage_postgres.outcome import WriteTicket, resolve

    held = await psycopg.AsyncConnection.connect(pg_dsn)  # not autocommit: stays open
    cur = await held.execute("SELECT pg_current_xact_id()::text, pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    ticket = WriteTicket(xid=str(row[0]), pid=int(row[1]), commit_sent=True)
    try:
        with pytest.raises(StorageError, match="rolled the transaction back.*not applied"):
            await resolve(lambda: psycopg.AsyncConnection.connect(pg_dsn, autocommit=True),
                          ticket, where="PostgreSQL", what="commit_turn", budget=30)
        with pytest.raises(psycopg.OperationalError):  # its server process was ended
            await held.execute("SELECT 1")
    finally:
        await held.close()


async def test_lost_commit_with_the_server_unreachable_is_reported_unknown() -> None:
    import psycopg
    from langswarm_storage_postgres.outcome import WriteTicket, resolve

    ticket = WriteTicket(xid="1", pid=1, commit_sent=True)
    with pytest.raises(StorageError, match="outcome unknown"):
        await resolve(
            lambda: psycopg.AsyncConnection.connect("host=127.0.0.1 port=9", connect_timeout=1),
            ticket, where="PostgreSQL at 127.0.0.1:9", what="commit_turn", budget=0.5,
        )


async def test_lost_one_statement_write_still_running_is_waited_for(
    pg_dsn: str, pg_schema: str, storage_factory: Any
) -> None:
    """A one-statement write whose answer was lost may still be running on the server
    (or not yet started: its bytes wait in the socket). Resolving it waits until no
    process holds the connection's identity lock, ending a process that holds it too
    long, and only then looks for the write: here the write lands 0.3 s after resolving
    began, and is found."""
    import psycopg
    from langswarm_storage_postgres.outcome import resolve_write

    store = storage_factory()
    await store.create_session(SessionRecord(session_id="s", user_id="u", provider="echo"))
    await store.close()
    key, write_id = 0x1234_5678_9ABC, 4242
    held = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
    await held.execute("SELECT pg_advisory_lock(%s)", (key,))
    late = asyncio.ensure_future(held.execute(
        f'WITH w AS (SELECT pg_sleep(0.3)) INSERT INTO "{pg_schema}".messages '
        "(session_id, seq, role, content, status, created_at, write_id) "
        "SELECT 's', 7, 'user', 'late', 'committed', 0, %s FROM w", (write_id,)))  # fmt: skip
    try:
        found = await resolve_write(
            lambda: psycopg.AsyncConnection.connect(pg_dsn, autocommit=True),
            lock_key=key,
            find=(f'SELECT seq FROM "{pg_schema}".messages WHERE write_id = {write_id}', ()),
            where="PostgreSQL", what="append_messages", budget=30,
        )
        assert found == (7,)
        with pytest.raises(psycopg.OperationalError):  # the lock holder was ended
            await held.execute("SELECT 1")
    finally:
        with contextlib.suppress(Exception):
            await late
        await held.close()


async def test_lost_one_statement_write_that_never_ran_is_not_applied(pg_dsn: str) -> None:
    import psycopg
    from langswarm_storage_postgres.outcome import resolve_write

    with pytest.raises(StorageError, match="was not applied"):
        await resolve_write(
            lambda: psycopg.AsyncConnection.connect(pg_dsn, autocommit=True),
            lock_key=0x0FED_CBA9_8765, find=("SELECT 1 WHERE false", ()),
            where="PostgreSQL", what="append_messages", budget=30,
        )
