"""Write the upgrade fixtures: databases as a release writes them, for the upgrade tests.

    python scripts/make_upgrade_fixtures.py tests/data/upgrade/<release>

Run it with the release whose data the fixtures stand for checked out (the fixtures in
``tests/data/upgrade/0.1.0`` were written by 0.1.0, before content parts existed); never
regenerate a committed fixture with a later release, or the test no longer proves that
old data opens. It writes, from one fixed data set:

- ``sessions.db``: a SQLite database;
- ``postgres.sql``: a ``pg_dump --inserts`` of a PostgreSQL schema, its name replaced by
  ``__SCHEMA__``;
- ``redis.json``: every Redis key (type and value), the key prefix replaced by
  ``__PREFIX__``;
- ``expected.json``: the sessions and messages as that release reads them back.

PostgreSQL and Redis come from ``LANGSWARM_TEST_POSTGRES_DSN`` / ``LANGSWARM_TEST_REDIS_URL``
(default: the local servers).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from langswarm_runtime import Message, SessionBackend, SQLiteSessionStorage
from langswarm_runtime.session.models import MessageStatus, SessionRecord, Usage

PG_DSN = os.environ.get(
    "LANGSWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LANGSWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_SCHEMA = "lsupgrade_fixture"
REDIS_PREFIX = "lsupgrade:fixture:"
T0 = 1_764_000_000.0


def data_set() -> list[tuple[SessionRecord, list[list[Message]]]]:
    """Sessions, each with its writes (one list of messages per append)."""
    hybrid = SessionRecord(
        session_id="s-hybrid-0001",
        user_id="alice",
        provider="local",
        model="echo-1",
        backend=SessionBackend.HYBRID,
        system_prompt="You help alice. Ünïcödé ✓",
        metadata={"topic": "upgrade", "n": 3},
        middleware=[{"type": "pii_filter", "entities": ["email"]}],
        created_at=T0,
        updated_at=T0,
    )
    turns: list[list[Message]] = []
    for i in range(5):
        turns.append(
            [
                Message(role="user", content=f"question {i} — ⚡", created_at=T0 + i),
                Message(
                    role="assistant",
                    content=f"answer {i}\nwith a second line",
                    usage=Usage(input_tokens=10 + i, output_tokens=5, cached_tokens=i),
                    provider_message_id=f"msg_{i}",
                    metadata={"provider": "local", "model": "echo-1"},
                    created_at=T0 + i + 0.5,
                ),
            ]
        )
    turns.append(
        [
            Message(
                role="user",
                content="this one failed",
                status=MessageStatus.FAILED,
                created_at=T0 + 10,
            )
        ]
    )
    turns.append([Message(role="summary", content="earlier: five questions", created_at=T0 + 11)])
    native = SessionRecord(
        session_id="s-native-0002",
        user_id="bob",
        provider="openai",
        model="gpt-5",
        backend=SessionBackend.NATIVE,
        provider_state={"conversation_id": "conv_abc123"},
        created_at=T0 + 20,
        updated_at=T0 + 20,
    )
    native_turns = [
        [
            Message(role="user", content="hello", created_at=T0 + 21),
            Message(
                role="assistant",
                content="hi bob",
                provider_message_id="msg_n1",
                usage=Usage(input_tokens=3, output_tokens=2),
                created_at=T0 + 22,
            ),
        ],
        [
            Message(
                role="user", content="cut off", status=MessageStatus.INTERRUPTED, created_at=T0 + 23
            )
        ],
        [
            Message(
                role="user",
                content="still pending",
                status=MessageStatus.PENDING,
                created_at=T0 + 24,
            )
        ],
    ]
    empty = SessionRecord(
        session_id="s-empty-0003",
        user_id="alice",
        provider="local",
        created_at=T0 + 30,
        updated_at=T0 + 30,
    )
    return [(hybrid, turns), (native, native_turns), (empty, [])]


async def fill(storage: Any) -> dict[str, Any]:
    """Write the data set into ``storage``; return what it reads back."""
    for record, writes in data_set():
        await storage.create_session(record)
        for messages in writes:
            await storage.append_messages(record.session_id, messages)
    expected: dict[str, Any] = {}
    for record, _ in data_set():
        loaded = await storage.load_session(record.session_id)
        messages = await storage.load_messages(record.session_id)
        expected[record.session_id] = {
            "record": loaded.model_dump(mode="json", exclude={"updated_at", "version"}),
            "messages": [m.model_dump(mode="json") for m in messages],
        }
    return expected


async def write_sqlite(out: Path) -> dict[str, Any]:
    path = out / "sessions.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    storage = SQLiteSessionStorage(db_path=str(path))
    expected = await fill(storage)
    await storage.close()
    with sqlite3.connect(path) as conn:  # one self-contained file, no WAL beside it
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("VACUUM")
    return expected


async def write_postgres(out: Path) -> dict[str, Any]:
    import psycopg
    from langswarm_storage_postgres import PostgresSessionStorage

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    storage = PostgresSessionStorage(dsn=PG_DSN, schema=PG_SCHEMA)
    expected = await fill(storage)
    await storage.close()
    dump = subprocess.run(  # noqa: ASYNC221 - a one-off script; nothing else runs
        [
            "pg_dump",
            "--inserts",
            "--no-owner",
            "--no-privileges",
            f"--schema={PG_SCHEMA}",
            "--dbname",
            PG_DSN,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [ln for ln in dump.splitlines() if not ln.startswith(("--", "\\"))]
    (out / "postgres.sql").write_text("\n".join(lines).replace(PG_SCHEMA, "__SCHEMA__") + "\n")
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    return expected


async def write_redis(out: Path) -> dict[str, Any]:
    import redis.asyncio as redis
    from langswarm_storage_redis import RedisSessionStorage

    client = redis.from_url(REDIS_URL, decode_responses=True)
    for key in await client.keys(REDIS_PREFIX + "*"):
        await client.delete(key)
    storage = RedisSessionStorage(url=REDIS_URL, key_prefix=REDIS_PREFIX)
    expected = await fill(storage)
    await storage.close()
    keys: dict[str, Any] = {}
    for key in sorted(await client.keys(REDIS_PREFIX + "*")):
        kind = await client.type(key)
        if kind == "string":
            value: Any = await client.get(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = await client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(await client.smembers(key))
        else:
            raise SystemExit(f"unexpected Redis key type {kind} for {key}")
        keys[key.replace(REDIS_PREFIX, "__PREFIX__", 1)] = {"type": kind, "value": value}
        await client.delete(key)
    await client.aclose()
    (out / "redis.json").write_text(json.dumps(keys, indent=1, ensure_ascii=False) + "\n")
    return expected


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    expected = await write_sqlite(out)
    for other in (await write_postgres(out), await write_redis(out)):
        if other != expected:
            raise SystemExit("the storages read the data set back differently")
    (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    asyncio.run(main(Path(sys.argv[1])))
