"""Faults: the server is cut off through a TCP proxy this test controls (never by
stopping the shared server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from langswarm_storage_redis import RedisSessionStorage

from langswarm_runtime import SessionManager
from langswarm_runtime.errors import StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord
from langswarm_runtime.testing.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    p = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    yield p
    await p.close()


@pytest.fixture
def proxied(redis_url: str, proxy: TcpProxy) -> str:
    db = urlsplit(redis_url).path or "/0"
    return f"redis://127.0.0.1:{proxy.port}{db}"


async def test_connection_lost_then_back(proxy: TcpProxy, proxied: str, key_prefix: str) -> None:
    store = RedisSessionStorage(url=proxied, key_prefix=key_prefix, socket_timeout=2,
                                socket_connect_timeout=1)
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
        assert [m.content for m in await store.load_messages("s")] == ["before", "after"]
        assert appended[0].seq == 2  # the failed append consumed nothing
    finally:
        await store.close()


async def test_turn_fails_mid_way_and_next_turn_succeeds(
    proxy: TcpProxy, proxied: str, key_prefix: str, monkeypatch: Any
) -> None:
    store = RedisSessionStorage(url=proxied, key_prefix=key_prefix, socket_timeout=2,
                                socket_connect_timeout=1)
    async with SessionManager(storage=store) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("one")
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
        assert len(committed) == 4
        assert all(m.content != "two" for m in committed)


async def test_a_write_fenced_by_resolution_never_runs(storage: RedisSessionStorage) -> None:
    """RESOLVE on a write that has not run fences its token: should the request still
    reach the server later, the script refuses to run, so "not applied" stays true."""
    await storage.create_session(SessionRecord(session_id="s", user_id="u", provider="echo"))
    token = storage._k_write("late")
    with pytest.raises(StorageError, match="not applied"):
        await storage._resolve(token, "append_messages")
    body = '"status":"committed","role":"user","content":"late"}'
    keys = [storage._k_session("s"), storage._k_messages("s"), storage._k_session_blobs("s"),
            token]  # fmt: skip
    args = ["", 0, 60, "s", storage._p, 0, 0, body]
    assert await storage._run("APPEND", keys, args) == -2
    assert await storage.load_messages("s") == []
    with pytest.raises(StorageError, match="not applied"):  # and asking again agrees
        await storage._resolve(token, "append_messages")


async def test_write_to_an_unreachable_server_is_known_not_applied(key_prefix: str) -> None:
    """Refused before anything was sent: a plain failure, no resolution needed."""
    store = RedisSessionStorage(url="redis://127.0.0.1:9/0", key_prefix=key_prefix,
                                socket_connect_timeout=1)
    try:
        with pytest.raises(StorageError, match=r"append_messages failed.*\(not applied\)$"):
            await store.append_messages("s", [Message(role="user", content="x")])
    finally:
        await store.close()
