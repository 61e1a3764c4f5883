"""An ambiguous commit is resolved, never guessed.

When a write reaches the server but its answer is lost (the connection drops after
PostgreSQL's ``COMMIT`` or after Redis ran the script), the storage finds out what happened
on the server and reports it truthfully: success, with the stored messages exactly as a
normal commit returns them, or a clean ``StorageError`` with nothing stored. So a caller
who retries after a failure never stores a turn twice.

The faults come from a loopback ``TcpProxy`` between the storage and the real server:
``lose_reply`` lets the request through and drops the answer, ``lose_request`` drops the
request. Both then cut that connection; the proxy keeps accepting new ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from langswarm_runtime import SessionManager
from langswarm_runtime.errors import StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.storage.base import ISessionStorage
from langswarm_runtime.testing.tcp_proxy import TcpProxy

pytestmark = pytest.mark.parametrize("storage_kind", ["postgres", "redis"], indirect=True)


@pytest.fixture
async def proxy(storage_kind: str, storage_options: dict[str, Any]) -> AsyncIterator[TcpProxy]:
    if storage_kind == "postgres":
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(storage_options["dsn"])
        target = (str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    else:
        parts = urlsplit(storage_options["url"])
        target = (parts.hostname or "127.0.0.1", parts.port or 6379)
    p = await TcpProxy(*target).start()
    yield p
    await p.close()


@pytest.fixture
def proxied(
    storage_kind: str, storage_options: dict[str, Any], proxy: TcpProxy,
    make_storage: Callable[..., ISessionStorage],
) -> ISessionStorage:
    """A storage on this test's data that talks to the server through ``proxy``."""
    if storage_kind == "postgres":
        from psycopg.conninfo import make_conninfo

        dsn = make_conninfo(storage_options["dsn"], host="127.0.0.1", port=proxy.port)
        return make_storage(dsn=dsn, pool_timeout=5, connect_timeout=2)
    db = urlsplit(storage_options["url"]).path or "/0"
    return make_storage(url=f"redis://127.0.0.1:{proxy.port}{db}", socket_timeout=5,
                        socket_connect_timeout=2)


def commit_request(storage_kind: str, marker: str) -> bytes:
    """Bytes that only the request making a write durable carries: the one statement
    (PostgreSQL) or script call (Redis) that writes the turn, carrying ``marker``."""
    return marker.encode()


def key(m: Message) -> tuple[Any, ...]:
    return (m.seq, m.role, m.content, MessageStatus(m.status), m.usage,
            m.provider_message_id, m.metadata)  # fmt: skip


async def committed(store: ISessionStorage, session_id: str) -> list[Message]:
    return await store.load_messages(session_id, statuses=[MessageStatus.COMMITTED])


async def start_turn(store: ISessionStorage, text: str) -> tuple[str, int]:
    """A session with one committed turn (so each write path has run once: Redis has
    its scripts loaded, and a lost reply is the script's own) and a pending message."""
    await store.create_session(SessionRecord(session_id="s1", user_id="u1", provider="echo"))
    await store.commit_turn("s1", None, turn("warm up"), usage=Usage(input_tokens=1))
    (pending,) = await store.append_messages(
        "s1", [Message(role="user", content=text, status=MessageStatus.PENDING)]
    )
    assert pending.seq is not None
    return "s1", pending.seq


def turn(text: str) -> list[Message]:
    return [Message(role="user", content=text),
            Message(role="assistant", content=f"answer to {text}",
                    usage=Usage(input_tokens=3, output_tokens=5))]  # fmt: skip


async def test_lost_commit_reply_is_reported_as_the_stored_turn(
    storage_kind: str, proxy: TcpProxy, proxied: ISessionStorage,
    make_storage: Callable[..., ISessionStorage],
) -> None:
    sid, pending_seq = await start_turn(proxied, "hello once")
    proxy.lose_reply(commit_request(storage_kind, "answer to hello once"))
    returned = await proxied.commit_turn(sid, pending_seq, turn("hello once"),
                                         usage=Usage(input_tokens=3, output_tokens=5))
    assert proxy.faults == 1  # the answer really was lost
    stored = (await committed(make_storage(), sid))[2:]
    assert [m.content for m in stored] == ["hello once", "answer to hello once"]
    assert [key(m) for m in returned] == [key(m) for m in stored]
    assert all(m.seq is not None and m.seq > pending_seq for m in returned)
    everything = await make_storage().load_messages(sid, after_seq=pending_seq - 1)
    assert [m.seq for m in everything] == [m.seq for m in stored]  # placeholder gone
    record = await make_storage().load_session(sid)
    assert record is not None and record.usage.output_tokens == 5  # counted once
    # The storage is usable again at once.
    more = await proxied.append_messages(sid, [Message(role="user", content="next")])
    assert more[0].seq == (returned[-1].seq or 0) + 1


async def test_lost_append_reply_is_reported_as_the_stored_message(
    storage_kind: str, proxy: TcpProxy, proxied: ISessionStorage,
    make_storage: Callable[..., ISessionStorage],
) -> None:
    await proxied.create_session(SessionRecord(session_id="s1", user_id="u1", provider="echo"))
    await proxied.append_messages("s1", [Message(role="user", content="first")])
    proxy.lose_reply(commit_request(storage_kind, "pending once"))
    returned = await proxied.append_messages(
        "s1", [Message(role="user", content="pending once", status=MessageStatus.PENDING)]
    )
    assert proxy.faults == 1
    stored = await make_storage().load_messages("s1")
    assert [m.content for m in stored] == ["first", "pending once"]
    assert [key(m) for m in returned] == [key(stored[1])]


async def test_commit_that_never_arrived_is_a_failure_and_stores_nothing(
    storage_kind: str, proxy: TcpProxy, proxied: ISessionStorage,
    make_storage: Callable[..., ISessionStorage],
) -> None:
    sid, pending_seq = await start_turn(proxied, "never sent")
    proxy.lose_request(commit_request(storage_kind, "answer to never sent"))
    with pytest.raises(StorageError, match="not applied"):
        await proxied.commit_turn(sid, pending_seq, turn("never sent"),
                                  usage=Usage(input_tokens=3, output_tokens=5))
    assert proxy.faults == 1
    reader = make_storage()
    assert [m.content for m in await committed(reader, sid)] == ["warm up", "answer to warm up"]
    (still,) = await reader.load_messages(sid, after_seq=pending_seq - 1)
    assert (still.seq, still.status) == (pending_seq, MessageStatus.PENDING)
    record = await reader.load_session(sid)
    assert record is not None and record.usage.output_tokens == 0  # the turn's 5 not added
    # Retrying the same commit now stores it exactly once.
    again = await proxied.commit_turn(sid, pending_seq, turn("never sent"))
    assert [key(m) for m in again] == [key(m) for m in (await committed(reader, sid))[2:]]
    assert len(again) == 2


async def test_send_message_with_lost_commit_reply_stores_the_turn_once(
    storage_kind: str, proxy: TcpProxy, proxied: ISessionStorage,
    make_storage: Callable[..., ISessionStorage],
) -> None:
    async with SessionManager(storage=proxied) as manager:
        session = await manager.create_session(user_id="u1", provider="echo")
        await session.send_message("warm up")
        # skip=1: the turn's first durable write is its pending record, the second its
        # commit; the commit's answer is the one lost.
        proxy.lose_reply(commit_request(storage_kind, "only once"), skip=1)
        reply = await session.send_message("only once")
        assert proxy.faults == 1
        assert "only once" in reply.content
        history = await session.get_history()
        users = [m.content for m in history if m.role == "user"]
        assert users == ["warm up", "only once"]
        fresh = await SessionManager(storage=make_storage()).get_session(session.session_id)
        assert fresh is not None
        stored = await fresh.get_history(include_failed=True)
        assert [m.content for m in stored if m.role == "user"] == ["warm up", "only once"]
        assert [(m.seq, m.content) for m in stored] == [(m.seq, m.content) for m in history]


async def test_send_message_whose_commit_never_arrived_fails_and_a_retry_stores_once(
    storage_kind: str, proxy: TcpProxy, proxied: ISessionStorage,
    make_storage: Callable[..., ISessionStorage],
) -> None:
    async with SessionManager(storage=proxied) as manager:
        session = await manager.create_session(user_id="u1", provider="echo")
        proxy.lose_request(commit_request(storage_kind, "try again"), skip=1)
        with pytest.raises(StorageError):
            await session.send_message("try again")
        assert proxy.faults == 1
        await session.send_message("try again")
        history = await session.get_history()
        assert [m.content for m in history if m.role == "user"] == ["try again"]
        fresh = await SessionManager(storage=make_storage()).get_session(session.session_id)
        assert fresh is not None
        assert [m.content for m in await fresh.get_history()] == [
            m.content for m in history
        ]
