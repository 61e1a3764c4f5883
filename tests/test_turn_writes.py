"""The lean turn path: one pending write and one commit per turn (the record update rides
in the commit), no history read when the seqs prove nobody else wrote, and still exactly
the right context and totals when someone did."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import SessionManager, SQLiteSessionStorage
from langswarm_runtime.errors import ProviderUnavailable
from langswarm_runtime.providers.base import ProviderRequest
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.storage.base import ISessionStorage


class CountingStorage(SQLiteSessionStorage):
    """Counts calls of each storage operation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def load_messages(
        self, session_id: str, *, last: int | None = None, after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:  # fmt: skip
        self._count("load_messages")
        return await super().load_messages(
            session_id, last=last, after_seq=after_seq, statuses=statuses
        )

    async def append_messages(self, session_id: str, messages: Sequence[Message]) -> list[Message]:
        self._count("append_messages")
        return await super().append_messages(session_id, messages)

    async def commit_turn(self, *args: Any, **kwargs: Any) -> list[Message]:
        self._count("commit_turn")
        return await super().commit_turn(*args, **kwargs)

    async def save_session(self, record: SessionRecord) -> None:
        self._count("save_session")
        await super().save_session(record)


def _capture(session: Any) -> list[ProviderRequest]:
    """Record the requests the session's provider receives."""
    seen: list[ProviderRequest] = []
    send = session._provider.send

    async def capturing(request: ProviderRequest) -> Any:
        seen.append(request)
        return await send(request)

    session._provider.send = capturing
    return seen


async def test_a_turn_writes_twice_and_reads_nothing(tmp_path: Path) -> None:
    storage = CountingStorage(db_path=str(tmp_path / "a.db"))
    async with SessionManager(storage=storage) as manager:
        session = await manager.create_session(user_id="u", provider="echo", backend="hybrid")
        for i in range(3):
            await session.send_message(f"m{i}")
        storage.calls.clear()
        for i in range(5):
            reply = await session.send_message(f"n{i}")
            assert reply.content == f"echo: n{i} [earlier messages: {6 + 2 * i}]"
        assert storage.calls == {"append_messages": 5, "commit_turn": 5}
        stored = await storage.load_session(session.session_id)
        assert stored is not None
        assert stored.usage == session.usage and session.usage.output_tokens > 0
        assert stored.version == session.record.version == 8


PG_DSN = os.environ.get(
    "LANGSWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LANGSWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def shared_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], ISessionStorage]]:
    """Makes storages on one backing store: each plays another process. The skip-the-read
    rule depends on how each storage hands out seqs, so every kind is checked."""
    kind: str = request.param
    run = uuid.uuid4().hex[:10]
    if kind == "sqlite":
        yield lambda: SQLiteSessionStorage(db_path=str(tmp_path / "shared.db"))
        return
    if importlib.util.find_spec(f"langswarm_storage_{kind}") is None:
        _unavailable(f"langswarm-storage-{kind} is not installed")
    if kind == "postgres":
        import psycopg
        from langswarm_storage_postgres import PostgresSessionStorage

        schema = f"lst_tw_{run}"
        try:
            with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            _unavailable(f"PostgreSQL not reachable: {type(exc).__name__}")
        yield lambda: PostgresSessionStorage(dsn=PG_DSN, schema=schema, pool_max_size=2)
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        return
    import redis
    from langswarm_storage_redis import RedisSessionStorage

    prefix = f"lst:tw:{run}:"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis not reachable: {type(exc).__name__}")
    yield lambda: RedisSessionStorage(url=REDIS_URL, key_prefix=prefix)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


async def test_writes_by_another_process_are_read(
    shared_store: Callable[[], ISessionStorage],
) -> None:
    async with SessionManager(storage=shared_store()) as here, \
            SessionManager(storage=shared_store()) as there:  # fmt: skip
        mine = await here.create_session(user_id="u", provider="echo", backend="hybrid")
        seen = _capture(mine)
        await mine.send_message("a")
        await mine.send_message("b")
        theirs = await there.get_session(mine.session_id)
        assert theirs is not None
        await theirs.send_message("c")
        # Another process's turn that failed leaves a placeholder (a seq) but no history.
        await there.storage.append_messages(
            mine.session_id, [Message(role="user", content="lost", status=MessageStatus.FAILED)]
        )
        reply = await mine.send_message("d")
        assert reply.content == "echo: d [earlier messages: 6]"
        assert [m.content for m in seen[-1].history if m.role == "user"] == ["a", "b", "c"]
        # Their turn's usage was added to the same totals as ours, nothing lost.
        record = await here.storage.load_session(mine.session_id)
        assert record is not None
        assert record.usage.output_tokens == sum(
            m.usage.output_tokens for m in await mine.get_history() if m.usage
        )
        # Our copy of the record is now stale; switching still works (reload + retry).
        await mine.switch_provider("echo")
        assert (await mine.send_message("e")).content == "echo: e [earlier messages: 8]"


async def test_a_failed_turn_is_not_in_the_next_context(tmp_path: Path) -> None:
    storage = CountingStorage(db_path=str(tmp_path / "f.db"))
    async with SessionManager(storage=storage) as manager:
        session = await manager.create_session(user_id="u", provider="echo", backend="hybrid")
        seen = _capture(session)
        await session.send_message("one")
        config: Any = session._provider.config
        config.fail = True
        with pytest.raises(ProviderUnavailable):
            await session.send_message("broken")
        config.fail = False
        await session.send_message("two")
        await session.send_message("three")
        assert [m.content for m in seen[-1].history] == [
            "one", "echo: one [earlier messages: 0]", "two", "echo: two [earlier messages: 2]"
        ]


async def test_changing_a_returned_reply_does_not_change_the_next_context(
    tmp_path: Path,
) -> None:
    async with SessionManager(storage=SQLiteSessionStorage(str(tmp_path / "c.db"))) as manager:
        session = await manager.create_session(user_id="u", provider="echo", backend="hybrid")
        seen = _capture(session)
        reply = await session.send_message("hello")
        reply.content = "tampered"
        reply.role = "user"
        await session.send_message("again")
        assert [(m.role, m.content) for m in seen[-1].history] == [
            ("user", "hello"), ("assistant", "echo: hello [earlier messages: 0]")
        ]


async def test_native_provider_state_rides_in_the_commit(tmp_path: Path) -> None:
    storage = CountingStorage(db_path=str(tmp_path / "n.db"))
    async with SessionManager(storage=storage) as manager:
        session = await manager.create_session(user_id="u", provider="echo", backend="native")
        storage.calls.clear()
        await session.send_message("a")
        await session.send_message("b")
        assert storage.calls.get("save_session", 0) == 0
        stored = await storage.load_session(session.session_id)
        assert stored is not None
        assert stored.provider_state == {"conversation_length": 4}
        assert session.record.provider_state == stored.provider_state
    # After a restart the state and totals come back from storage.
    async with SessionManager(storage=SQLiteSessionStorage(str(tmp_path / "n.db"))) as again:
        resumed = await again.get_session(session.session_id)
        assert resumed is not None
        assert resumed.usage == stored.usage != Usage()
        assert (await resumed.send_message("c")).content == "echo: c [earlier messages: 4]"
