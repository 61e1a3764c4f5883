"""Many processes, one session: OS processes (spawn) run turns through SessionManager on
the same sessions, on SQLite, PostgreSQL and Redis. Nothing is lost or duplicated, seqs
are unique and ordered, and each turn's user message is followed by its own reply.

PostgreSQL/Redis need their plugin packages and the real servers; when those are missing
the cases skip with the reason, or FAIL when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import multiprocessing
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import MessageStatus, SessionManager
from langswarm_runtime.session.storage.base import ISessionStorage

WORKERS = 4
SESSIONS = 2
TURNS = 12  # per worker, spread over the sessions

PG_DSN = os.environ.get(
    "LANGSWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LANGSWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def make_storage(kind: str, options: dict[str, Any]) -> ISessionStorage:
    """Build a storage in whichever process asks (options must be picklable)."""
    if kind == "sqlite":
        from langswarm_runtime import SQLiteSessionStorage

        return SQLiteSessionStorage(**options)
    if kind == "postgres":
        from langswarm_storage_postgres import PostgresSessionStorage

        return PostgresSessionStorage(**options)
    from langswarm_storage_redis import RedisSessionStorage

    return RedisSessionStorage(**options)


def _worker(kind: str, options: dict[str, Any], session_ids: list[str], worker: int,
            start: Any) -> None:
    """Process entry point (module level so ``spawn`` can import it). An exception
    prints its traceback and exits non-zero, which the test checks."""
    start.wait(60)  # all workers begin together, so their turns really interleave
    asyncio.run(_work(kind, options, session_ids, worker))


async def _work(kind: str, options: dict[str, Any], session_ids: list[str], worker: int) -> None:
    async with SessionManager(storage=make_storage(kind, options)) as manager:
        sessions = [await manager.require_session(sid) for sid in session_ids]
        for turn in range(TURNS):
            session = sessions[(turn + worker) % len(sessions)]
            await session.send_message(f"w{worker}-t{turn}")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store_options(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    kind: str = request.param
    run = uuid.uuid4().hex[:10]
    if kind == "sqlite":
        yield kind, {"db_path": str(tmp_path / "shared.db")}
        return
    if importlib.util.find_spec(f"langswarm_storage_{kind}") is None:
        _unavailable(f"langswarm-storage-{kind} is not installed "
                     f"(pip install ./plugins/langswarm-storage-{kind})")
    if kind == "postgres":
        import psycopg

        schema = f"lst_mp_{run}"
        try:
            with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            _unavailable(f"PostgreSQL not reachable: {type(exc).__name__}")
        yield kind, {"dsn": PG_DSN, "schema": schema, "pool_max_size": 2}
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        return
    import redis

    prefix = f"lst:mp:{run}:"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis not reachable: {type(exc).__name__}")
    yield kind, {"url": REDIS_URL, "key_prefix": prefix}
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


async def test_many_processes_one_session(store_options: tuple[str, dict[str, Any]]) -> None:
    kind, options = store_options
    storage = make_storage(kind, options)
    async with SessionManager(storage=storage) as manager:
        ids = [(await manager.create_session(user_id="mp", provider="echo")).session_id
               for _ in range(SESSIONS)]

        ctx = multiprocessing.get_context("spawn")
        start = ctx.Event()
        procs = [ctx.Process(target=_worker, args=(kind, options, ids, w, start))
                 for w in range(WORKERS)]
        for p in procs:
            p.start()
        start.set()
        loop = asyncio.get_running_loop()
        for p in procs:
            await loop.run_in_executor(None, p.join, 120)
        assert [p.exitcode for p in procs] == [0] * WORKERS

        sent = {f"w{w}-t{t}" for w in range(WORKERS) for t in range(TURNS)}
        received: list[str] = []
        for sid in ids:
            everything = await storage.load_messages(sid)
            seqs = [m.seq for m in everything]
            assert all(isinstance(s, int) for s in seqs)
            assert seqs == sorted(set(seqs))  # type: ignore[type-var]  # unique, ordered
            committed = await storage.load_messages(sid, statuses=[MessageStatus.COMMITTED])
            assert len(committed) % 2 == 0
            for user, reply in zip(committed[::2], committed[1::2], strict=True):
                assert user.role == "user" and reply.role == "assistant"
                assert reply.content.startswith(f"echo: {user.content} ")  # its own reply
                received.append(user.content)
            history = await (await manager.require_session(sid)).get_history()
            assert [m.seq for m in history] == [m.seq for m in committed]
        assert sorted(received) == sorted(sent)  # none lost, none duplicated
