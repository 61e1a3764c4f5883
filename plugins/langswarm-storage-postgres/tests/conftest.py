"""Fixtures for the PostgreSQL storage tests: a real server, one schema per test.

The server comes from ``LANGSWARM_TEST_POSTGRES_DSN`` (default: the local trust-auth
server). Unreachable: the tests skip with the reason, or FAIL when ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

DSN = os.environ.get(
    "LANGSWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RUN_ID = uuid.uuid4().hex[:8]
_counter = iter(range(1_000_000))


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this plugin (and the built-ins) load in these tests, whatever else is
    installed. Pinned per test, not at import: pytest may collect several plugin suites
    in one process, and each wants its own allow-list."""
    monkeypatch.setenv("LANGSWARM_LOAD_PLUGINS", "postgres")


def _drop_run_schemas() -> None:
    import psycopg

    with psycopg.connect(DSN, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"lst_{RUN_ID}_%",)
        ).fetchall()
        for (name,) in rows:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """The DSN of a reachable server; schemas of this run are dropped at the end."""
    import psycopg

    try:
        with psycopg.connect(DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"PostgreSQL not reachable for the storage tests: {type(exc).__name__}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield DSN
    _drop_run_schemas()


@pytest.fixture
def pg_schema(pg_dsn: str) -> str:
    """A fresh schema name for one test (created by the storage's migrations)."""
    return f"lst_{RUN_ID}_{next(_counter)}"


@pytest.fixture
async def storage_factory(pg_dsn: str, pg_schema: str) -> AsyncIterator[Callable[..., Any]]:
    """Builds storages on this test's schema (like separate processes would); all are
    closed at the end."""
    from langswarm_storage_postgres import PostgresSessionStorage

    made: list[PostgresSessionStorage] = []

    def make(**options: Any) -> PostgresSessionStorage:
        options.setdefault("dsn", pg_dsn)
        options.setdefault("schema", pg_schema)
        store = PostgresSessionStorage(**options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def storage(storage_factory: Callable[..., Any]) -> Any:
    """A storage on a fresh schema."""
    return storage_factory()
