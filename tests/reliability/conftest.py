"""Fixtures of the reliability suite: each guarantee runs on every storage it applies to.

``storage_kind`` is ``sqlite``, ``postgres`` or ``redis``; ``make_storage()`` builds a
storage of that kind on this test's own file, schema or key prefix (call it twice for two
"processes" on the same data). The PostgreSQL and Redis servers are the real local ones
(``LANGSWARM_TEST_POSTGRES_DSN`` / ``LANGSWARM_TEST_REDIS_URL``); unreachable, or their
plugin not installed, the case skips with the reason, or FAILS when ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime.session.storage.base import ISessionStorage

PG_DSN = os.environ.get(
    "LANGSWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LANGSWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:8]
_counter = iter(range(1_000_000))
ALL_KINDS = ("sqlite", "postgres", "redis")


def unavailable(reason: str) -> None:
    """Skip, or fail under CI: a missing service is a failure there."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _pg_reachable() -> str | None:
    try:
        import langswarm_storage_postgres  # noqa: F401
        import psycopg
    except ImportError as exc:
        return f"PostgreSQL storage plugin not installed: {exc.name}"
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable: {type(exc).__name__}"
    return None


def _redis_reachable() -> str | None:
    try:
        import langswarm_storage_redis  # noqa: F401
        import redis
    except ImportError as exc:
        return f"Redis storage plugin not installed: {exc.name}"
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"Redis not reachable: {type(exc).__name__}"
    return None


def _cleanup_pg() -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"lsr_{RUN_ID}_%",)
        ).fetchall()
        for (name,) in rows:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _cleanup_redis(pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        batch = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
    finally:
        client.close()


@pytest.fixture(scope="session")
def _services() -> Iterator[dict[str, str | None]]:
    """Why each server kind is unusable (None: usable), checked once per run."""
    status = {"sqlite": None, "postgres": _pg_reachable(), "redis": _redis_reachable()}
    yield status
    if status["postgres"] is None:
        _cleanup_pg()
    if status["redis"] is None:
        _cleanup_redis(f"lsr:{RUN_ID}:*")


@pytest.fixture(params=ALL_KINDS)
def storage_kind(request: pytest.FixtureRequest, _services: dict[str, str | None]) -> str:
    """Each storage in turn; tests that apply to fewer kinds parametrize it themselves
    (``@pytest.mark.parametrize("storage_kind", ["postgres", "redis"], indirect=True)``)."""
    kind = str(request.param)
    reason = _services[kind]
    if reason is not None:
        unavailable(reason)
    return kind


@pytest.fixture
def storage_options(storage_kind: str, tmp_path: Path) -> dict[str, Any]:
    """Constructor options that put this test's data in its own file, schema or prefix."""
    n = next(_counter)
    if storage_kind == "sqlite":
        return {"db_path": str(tmp_path / f"rel{n}.db")}
    if storage_kind == "postgres":
        return {"dsn": PG_DSN, "schema": f"lsr_{RUN_ID}_{n}"}
    return {"url": REDIS_URL, "key_prefix": f"lsr:{RUN_ID}:{n}:"}


def build_storage(kind: str, **options: Any) -> ISessionStorage:
    """A storage of ``kind`` with the given constructor options."""
    if kind == "sqlite":
        from langswarm_runtime.session.storage.sqlite import SQLiteSessionStorage

        return SQLiteSessionStorage(**options)
    if kind == "postgres":
        from langswarm_storage_postgres import PostgresSessionStorage

        return PostgresSessionStorage(**options)
    from langswarm_storage_redis import RedisSessionStorage

    return RedisSessionStorage(**options)


@pytest.fixture
async def make_storage(
    storage_kind: str, storage_options: dict[str, Any]
) -> AsyncIterator[Callable[..., ISessionStorage]]:
    """``make_storage(**overrides)``: a new storage object on this test's data; all are
    closed at the end."""
    made: list[ISessionStorage] = []

    def make(**overrides: Any) -> ISessionStorage:
        store = build_storage(storage_kind, **{**storage_options, **overrides})
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def storage_config(storage_kind: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """The same storage as a swarm.yaml ``storage:`` block (for subprocess tests)."""
    options = dict(storage_options)
    if storage_kind == "sqlite":
        return {"type": "sqlite", "path": options["db_path"]}
    return {"type": storage_kind, **options}
