"""A PostgreSQL schema written by release 0.1.0 (before content parts) opens with today's
storage, which migrates it (schema version 1 to 2), keeps every session and message as
0.1.0 read them, and goes on: a conversation continues on it, with an image and a tool
turn, and it reopens.

The fixture is the repository's ``tests/data/upgrade/0.1.0/postgres.sql`` (a pg_dump of
0.1.0's schema, never regenerated), loaded into a fresh schema; the checks are the ones
the SQLite upgrade test (``tests/test_upgrade.py``) makes."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "data" / "upgrade" / "0.1.0" / "postgres.sql"


def _checks() -> ModuleType:
    """The shared upgrade checks of the repository's tests/test_upgrade.py."""
    path = REPO / "tests" / "test_upgrade.py"
    if not path.exists() or not FIXTURE.exists():
        pytest.skip("the upgrade fixtures are in the langswarm-runtime repository")
    spec = importlib.util.spec_from_file_location("langswarm_upgrade_checks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _migrations(dsn: str, schema: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f'SELECT version FROM "{schema}".langswarm_migrations ORDER BY version'
        ).fetchall()
    return [r[0] for r in rows]


async def test_schema_of_0_1_0_opens_migrates_and_goes_on(
    storage_factory: Callable[..., Any], pg_dsn: str, pg_schema: str
) -> None:
    checks = _checks()
    dump = FIXTURE.read_text(encoding="utf-8").replace("__SCHEMA__", pg_schema)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(dump.encode())  # the dump's own statements, as psql would run them
    assert _migrations(pg_dsn, pg_schema) == [1]  # really the old schema

    # The first call is a read: the schema check folded into it finds the old schema,
    # and the read waits for the migration.
    storage = storage_factory()
    assert await storage.load_messages("no-such-session", last=20) == []
    assert _migrations(pg_dsn, pg_schema) == [1, 2, 3]
    await checks.check_as_written(storage)
    await storage.close()
    await checks.continue_conversation(storage_factory())  # the manager closes it
    storage = storage_factory()
    await checks.check_continued(storage)
    assert _migrations(pg_dsn, pg_schema) == [1, 2, 3]  # applied once
    with psycopg.connect(pg_dsn) as conn:  # the image's bytes once, in the blob table
        rows = conn.execute(f'SELECT size FROM "{pg_schema}".blobs').fetchall()
    assert rows == [(len(checks.PNG),)]
