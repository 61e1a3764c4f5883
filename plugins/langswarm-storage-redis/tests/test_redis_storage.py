"""Redis-specific behaviour: key layout, TTL, atomic seqs, pagination, errors.

The generic contract is covered by the conformance suite (test_redis_conformance.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from langswarm_storage_redis import RedisSessionStorage, RedisStorageConfig
from pydantic import ValidationError

from langswarm_runtime.errors import ConcurrencyError, SessionNotFound, StorageError
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.parts import ImagePart


def _rec(sid: str, user: str = "u1", updated: float = 1000.0) -> SessionRecord:
    return SessionRecord(session_id=sid, user_id=user, provider="echo", updated_at=updated)


async def test_roundtrip_and_version_check(storage: RedisSessionStorage) -> None:
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
    with pytest.raises(ConcurrencyError):
        await storage.save_session(stale)
    with pytest.raises(SessionNotFound):
        await storage.save_session(_rec("missing"))
    assert (await storage.load_session("s1")).model == "m2"  # type: ignore[union-attr]
    assert await storage.delete_session("s1") is True
    assert await storage.delete_session("s1") is False
    assert await storage.load_session("s1") is None


async def test_messages_tail_statuses_and_commit_turn(storage: RedisSessionStorage) -> None:
    await storage.create_session(_rec("s1"))
    first = await storage.append_messages(
        "s1", [Message(role="user", content=f"m{i}", usage=Usage(input_tokens=i),
                       metadata={"status": "decoy"}) for i in range(10)]
    )
    assert [m.seq for m in first] == list(range(1, 11))
    pending = await storage.append_messages(
        "s1", [Message(role="user", content='p "status":"committed"',
                       status=MessageStatus.PENDING)]
    )
    tail = await storage.load_messages("s1", last=3)
    assert [m.content for m in tail] == ["m8", "m9", 'p "status":"committed"']
    committed = await storage.load_messages("s1", last=3, statuses={MessageStatus.COMMITTED})
    assert [m.content for m in committed] == ["m7", "m8", "m9"]
    assert committed[0].usage == Usage(input_tokens=7)
    assert committed[0].metadata == {"status": "decoy"}
    assert [m.seq for m in await storage.load_messages("s1", after_seq=9)] == [10, 11]
    only_pending = await storage.load_messages("s1", statuses=[MessageStatus.PENDING])
    assert [m.seq for m in only_pending] == [11]

    await storage.update_message_status("s1", [11], MessageStatus.FAILED)
    assert (await storage.load_messages("s1", last=1))[0].status is MessageStatus.FAILED
    turn = await storage.commit_turn(
        "s1", pending[0].seq,
        [Message(role="user", content="p"), Message(role="assistant", content="r")],
    )
    assert [m.seq for m in turn] == [12, 13]
    assert [m.seq for m in await storage.load_messages("s1")] == list(range(1, 11)) + [12, 13]
    # A committed message is never removed as a "pending placeholder".
    await storage.commit_turn("s1", 12, [Message(role="assistant", content="x")])
    assert len(await storage.load_messages("s1")) == 13

    with pytest.raises(SessionNotFound):
        await storage.append_messages("nope", [Message(role="user", content="x")])
    assert await storage.load_messages("nope") == []
    with pytest.raises(StorageError):
        await storage.load_messages("s1", last=-1)


async def test_key_layout_and_delete(storage: RedisSessionStorage, redis_url: str,
                                     key_prefix: str) -> None:
    await storage.create_session(_rec("s1", "alice"))
    await storage.append_messages("s1", [Message(role="user", content="hi")])
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        p = key_prefix
        keys = sorted(await client.keys(key_prefix + "*"))
        tokens = [k for k in keys if k.startswith(f"{p}write:")]
        assert sorted(set(keys) - set(tokens)) == sorted(
            [f"{p}session:s1", f"{p}messages:s1", f"{p}user:alice", f"{p}sessions",
             f"{p}schema"]
        )  # fmt: skip
        assert await client.get(f"{p}schema") == "2"
        # The append's write token: its first seq, nothing of the session, soon gone.
        (token,) = tokens
        assert await client.get(token) == "1"
        assert 0 < await client.ttl(token) <= 2 * 5 + 5 + 60
        assert await client.type(f"{p}messages:s1") == "zset"
        assert await client.hget(f"{p}session:s1", "next_seq") == "2"
        assert await storage.delete_session("s1")
        assert sorted(await client.keys(key_prefix + "*")) == sorted([token, f"{p}schema"])
    finally:
        await client.aclose()


async def test_key_layout_of_parts_and_blobs(storage: RedisSessionStorage, redis_url: str,
                                             key_prefix: str) -> None:
    """A text-only member is as it was before parts existed; a media part's member keeps
    sha256 and size, its bytes are in one blob key however many messages and sessions
    send them, and the sets of references say who has it."""
    p = key_prefix
    image = ImagePart.from_bytes(b"\x89PNG\x00\xff" + bytes(range(256)) * 64, "image/png")
    sha = image.sha256 or ""
    for sid in ("s1", "s2"):
        await storage.create_session(_rec(sid))
        await storage.append_messages(sid, [Message(role="user", content="plain")])
        for _ in range(3):
            await storage.append_messages(sid, [Message(role="user", parts=[image])])
    client = aioredis.Redis.from_url(redis_url)  # bytes as they are
    try:
        members = await client.zrange(f"{p}messages:s1", 0, -1)
        assert members[0] == (b'{"seq":1,"status":"committed","role":"user","content":"plain",'
                              b'"usage":null,"provider_message_id":null,"created_at":'
                              + members[0].split(b'"created_at":')[1])  # fmt: skip
        media = json.loads(members[1])["parts"]
        assert media == [{"type": "image", "media_type": "image/png", "sha256": sha,
                          "size": image.size}]  # fmt: skip
        assert all(len(m) < 400 for m in members)
        blob_keys = sorted(k for k in await client.keys(f"{p}blob*"))
        assert blob_keys == [f"{p}blob:{sha}".encode(), f"{p}blobrefs:{sha}".encode()]
        assert await client.get(f"{p}blob:{sha}") == image.data
        assert await client.smembers(f"{p}blobrefs:{sha}") == {b"s1", b"s2"}
        assert await client.smembers(f"{p}sessionblobs:s2") == {sha.encode()}
        assert await storage.delete_session("s1")
        assert await client.smembers(f"{p}blobrefs:{sha}") == {b"s2"}
        assert await client.exists(f"{p}sessionblobs:s1") == 0
        assert await storage.delete_session("s2")
        assert await client.keys(f"{p}*blob*") == []
    finally:
        await client.aclose()


async def test_blobs_live_as_long_as_their_sessions_with_a_ttl(
    storage_factory: Callable[..., Any], redis_url: str, key_prefix: str
) -> None:
    store = storage_factory(ttl_seconds=100)
    p = key_prefix
    image = ImagePart.from_bytes(b"ttl" + bytes(range(256)), "image/png")
    blob = f"{p}blob:{image.sha256}"
    await store.create_session(_rec("s1"))
    await store.append_messages("s1", [Message(role="user", parts=[image])])
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [blob, f"{p}blobrefs:{image.sha256}", f"{p}sessionblobs:s1"]
        for key in keys:
            assert 90 < await client.ttl(key) <= 100
            await client.expire(key, 5)
        await store.append_messages("s1", [Message(role="user", content="text only")])
        for key in keys:
            assert await client.ttl(key) > 90  # refreshed with the session's keys
        loaded = await store.load_session("s1")
        assert loaded is not None
        await client.expire(blob, 5)
        await store.save_session(loaded)  # a save refreshes them too
        assert await client.ttl(blob) > 90
        # A session without a TTL that has the same bytes keeps them for good.
        forever = storage_factory()
        await forever.create_session(_rec("s2"))
        await forever.append_messages("s2", [Message(role="user", parts=[image])])
        assert await client.ttl(blob) == -1
    finally:
        await client.aclose()


async def test_prefix_of_a_newer_schema_is_refused_before_anything_is_written(
    storage_factory: Callable[..., Any], redis_url: str, key_prefix: str
) -> None:
    old = storage_factory()
    await old.create_session(_rec("kept"))
    await old.close()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.set(f"{key_prefix}schema", "3")
        before = sorted(await client.keys(key_prefix + "*"))
        store = storage_factory()
        words = r"schema version 3\b.*schema version 2\b"
        with pytest.raises(StorageError, match=words):
            await store.open()
        with pytest.raises(StorageError, match=words):
            await store.load_session("kept")
        with pytest.raises(StorageError, match=words + r".*\(not applied\)$"):
            await store.append_messages("kept", [Message(role="user", content="x")])
        # A fresh store's first read carries the marker's read along: refused as well.
        reads = [lambda s: s.load_session("kept"), lambda s: s.load_messages("kept", last=20),
                 lambda s: s.load_messages("kept")]  # fmt: skip
        for read in reads:
            with pytest.raises(StorageError, match=words):
                await read(storage_factory())
        assert sorted(await client.keys(key_prefix + "*")) == before
        assert await client.zcard(f"{key_prefix}messages:kept") == 0
    finally:
        await client.aclose()


async def test_a_first_read_records_the_schema_of_an_older_prefix(
    storage_factory: Callable[..., Any], redis_url: str, key_prefix: str
) -> None:
    """A fresh store's first read checks the marker in the same round trip; a prefix
    without one (0.1.0 wrote none) is recorded at this version, as ``open()`` does."""
    old = storage_factory()
    await old.create_session(_rec("kept"))
    await old.append_messages("kept", [Message(role="user", content="hi")])
    await old.close()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.delete(f"{key_prefix}schema")
        [message] = await storage_factory().load_messages("kept", last=20)
        assert message.content == "hi"
        assert await client.get(f"{key_prefix}schema") == "2"
    finally:
        await client.aclose()


async def test_ttl_applies_to_all_keys_and_is_refreshed(
    storage_factory: Callable[..., Any], redis_url: str, key_prefix: str
) -> None:
    store = storage_factory(ttl_seconds=100)
    await store.create_session(_rec("s1"))
    await store.append_messages("s1", [Message(role="user", content="hi")])
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for key in (f"{key_prefix}session:s1", f"{key_prefix}messages:s1"):
            assert 90 < await client.ttl(key) <= 100
            await client.expire(key, 5)
        await store.append_messages("s1", [Message(role="user", content="again")])
        for key in (f"{key_prefix}session:s1", f"{key_prefix}messages:s1"):
            assert await client.ttl(key) > 90  # refreshed by the write
        # An expired session disappears, also from listings.
        await store.create_session(_rec("s2", updated=2000.0))
        await client.delete(f"{key_prefix}session:s2", f"{key_prefix}messages:s2")
        assert [r.session_id for r in await store.list_sessions(user_id="u1")] == ["s1"]
        assert await client.zscore(f"{key_prefix}user:u1", "s2") is None
    finally:
        await client.aclose()


async def test_list_sessions_by_user_with_cursor(storage: RedisSessionStorage) -> None:
    for i in range(7):
        await storage.create_session(_rec(f"a{i}", "alice", updated=100.0 + i))
    await storage.create_session(_rec("b0", "bob", updated=150.0))
    await storage.create_session(_rec("a7", "alice", updated=106.0))  # tie: id decides
    seen: list[str] = []
    cursor = None
    while page := await storage.list_sessions(user_id="alice", limit=3, cursor=cursor):
        seen += [r.session_id for r in page]
        cursor = page[-1].session_id
    assert seen == ["a7", "a6", "a5", "a4", "a3", "a2", "a1", "a0"]
    assert [r.session_id for r in await storage.list_sessions(limit=2)] == ["b0", "a7"]
    with pytest.raises(StorageError, match="cursor"):
        await storage.list_sessions(cursor="nope")


async def test_concurrent_appends_from_many_clients(storage_factory: Callable[..., Any]) -> None:
    stores = [storage_factory() for _ in range(4)]
    await stores[0].create_session(_rec("s"))

    async def writer(store: RedisSessionStorage, w: int) -> None:
        for i in range(25):
            await store.append_messages(
                "s", [Message(role="user", content=f"{w}-{i}-u"),
                      Message(role="assistant", content=f"{w}-{i}-a")]
            )

    await asyncio.gather(*(writer(s, w) for w, s in enumerate(stores)))
    msgs = await stores[0].load_messages("s")
    seqs = [m.seq for m in msgs]
    assert len(msgs) == 4 * 25 * 2
    assert seqs == list(range(1, 201))
    for user, reply in zip(msgs[::2], msgs[1::2], strict=True):
        assert reply.content == user.content[:-1] + "a"


def test_config_validation_and_secret() -> None:
    cfg = RedisStorageConfig.model_validate(
        {"type": "redis", "url": "redis://:hunter2@cache:6379/2", "ttl_seconds": 60}
    )
    store = RedisSessionStorage(cfg)
    assert "hunter2" not in repr(cfg) and "hunter2" not in repr(store)
    assert "cache:6379/2" in repr(store)
    with pytest.raises(ValidationError):
        RedisStorageConfig.model_validate({"url": "redis://x", "bogus": 1})
    with pytest.raises(ValidationError):
        RedisStorageConfig.model_validate({"url": "redis://x", "ttl_seconds": 0})
    with pytest.raises(ValidationError, match="redis://") as info:
        RedisStorageConfig.model_validate({"url": "http://:pw-SECRET-3@cache:6379"})
    assert "pw-SECRET-3" not in str(info.value)


async def test_unreachable_server_names_host_not_password() -> None:
    store = RedisSessionStorage(url="redis://:s3cr3t-pw@127.0.0.1:1/0",
                                socket_connect_timeout=2)
    for call in (store.open(), store.load_session("x")):
        with pytest.raises(StorageError) as info:
            await call
        assert "127.0.0.1:1" in str(info.value) and "s3cr3t-pw" not in str(info.value)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        await store.load_session("x")


def test_registered_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="langswarm_runtime") if ep.name == "redis"]
    assert [ep.value for ep in eps] == ["langswarm_storage_redis"]
    import langswarm_storage_redis

    registered: list[tuple[Any, ...]] = []
    langswarm_storage_redis.register_storages(lambda *a: registered.append(a))
    assert registered == [("redis", RedisSessionStorage, RedisStorageConfig)]
