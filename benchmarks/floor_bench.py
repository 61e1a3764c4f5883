"""Storage against a raw-driver floor, like for like, as JSON (issue 10's yardstick).

    python3 benchmarks/floor_bench.py [--turns 400] [--rounds 3] [--stores sqlite-normal,...]

For each store and its floor, side by side in one run, rounds alternating which goes
first: ``--turns`` appends of one turn (a user message and a 200-character reply) to a
fresh session, one durable write each, then ``--tails`` fresh-store tail reads (open a
new store object or connection, read the last 20 messages, close). The floors do the
same durable work with the bare driver:

- ``sqlite-normal`` / ``sqlite-full``: sqlite3, WAL, the same ``synchronous`` level, one
  ``BEGIN IMMEDIATE`` transaction per turn inserting two rows into an indexed
  ``(session_id, seq)`` table;
- ``postgres``: psycopg 3, one autocommit transaction per turn inserting two rows into
  an indexed ``(session_id, seq, role, content)`` table;
- ``redis``: redis-py, the turn ``ZADD``-ed in one ``MULTI`` pipeline.

Reported per store (best of the rounds): appends per second, per-append p50/p99 (ms) and
fresh tail p50 (ms), for the store and its floor, and two ratios: append throughput
store / floor (higher is better; issue 10's targets are >= 0.7 for PostgreSQL and Redis,
>= 0.9 for SQLite) and fresh tail time store / floor (lower is better; <= 1.5 PostgreSQL,
<= 1.3 Redis and SQLite). Not yet here: 8 processes on 8 sessions, full loads, bytes per
message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langswarm_runtime import Message, SQLiteSessionStorage
from langswarm_runtime.session.models import SessionRecord

PG_DSN = os.environ.get("LANGSWARM_BENCH_POSTGRES_DSN",
                        "postgresql://postgres@127.0.0.1:5432/postgres")  # fmt: skip
REDIS_URL = os.environ.get("LANGSWARM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
REPLY = "r" * 200
STORES = ("sqlite-normal", "sqlite-full", "postgres", "redis")


def _turn(i: int) -> list[Message]:
    return [Message(role="user", content=f"question {i}"),
            Message(role="assistant", content=REPLY)]  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the runtime's stores ---------------------------------------------------------------


async def store_side(kind: str, where: dict[str, Any], turns: int, tails: int) -> dict[str, Any]:
    make = _store_factory(kind, where)
    store = make()
    sid = f"b{uuid.uuid4().hex[:12]}"
    await store.create_session(SessionRecord(session_id=sid, user_id="u", provider="p"))
    times = []
    for i in range(turns):
        t0 = time.perf_counter()
        await store.append_messages(sid, _turn(i))
        times.append(time.perf_counter() - t0)
    await store.close()
    tail = []
    for _ in range(tails):
        t0 = time.perf_counter()
        fresh = make()
        got = await fresh.load_messages(sid, last=20)
        await fresh.close()
        tail.append(time.perf_counter() - t0)
        assert len(got) == 20
    return _figures(times, tail)


def _store_factory(kind: str, where: dict[str, Any]) -> Callable[[], Any]:
    if kind.startswith("sqlite"):
        sync = "FULL" if kind.endswith("full") else "NORMAL"
        return lambda: SQLiteSessionStorage(db_path=where["sqlite"], synchronous=sync)
    if kind == "postgres":
        from langswarm_storage_postgres import PostgresSessionStorage

        return lambda: PostgresSessionStorage(dsn=PG_DSN, schema=where["schema"])
    from langswarm_storage_redis import RedisSessionStorage

    return lambda: RedisSessionStorage(url=REDIS_URL, key_prefix=where["prefix"])


# -- the floors -------------------------------------------------------------------------


async def floor_side(kind: str, where: dict[str, Any], turns: int, tails: int) -> dict[str, Any]:
    if kind.startswith("sqlite"):
        return await asyncio.to_thread(_sqlite_floor, kind, where["floor_sqlite"], turns, tails)
    if kind == "postgres":
        return await _pg_floor(where["floor_schema"], turns, tails)
    return await _redis_floor(where["floor_prefix"], turns, tails)


def _sqlite_floor(kind: str, path: str, turns: int, tails: int) -> dict[str, Any]:
    sync = "FULL" if kind.endswith("full") else "NORMAL"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, session_id TEXT, "
                 "seq INTEGER, role TEXT, content TEXT)")  # fmt: skip
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS m_seq ON m (session_id, seq)")
    sid = uuid.uuid4().hex
    times = []
    for i in range(turns):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO m (session_id, seq, role, content) VALUES (?, ?, ?, ?)",
                         [(sid, 2 * i, "user", f"question {i}"),
                          (sid, 2 * i + 1, "assistant", REPLY)])  # fmt: skip
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    conn.close()
    tail = []
    for _ in range(tails):
        t0 = time.perf_counter()
        c = sqlite3.connect(path)
        rows = c.execute("SELECT seq, role, content FROM m WHERE session_id = ? "
                         "ORDER BY seq DESC LIMIT 20", (sid,)).fetchall()  # fmt: skip
        c.close()
        tail.append(time.perf_counter() - t0)
        assert len(rows) == 20
    return _figures(times, tail)


async def _pg_floor(schema: str, turns: int, tails: int) -> dict[str, Any]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True)
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".m (session_id text, seq bigint, '
                       "role text, content text, PRIMARY KEY (session_id, seq))")  # fmt: skip
    sid = uuid.uuid4().hex
    times = []
    for i in range(turns):
        t0 = time.perf_counter()
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                f'INSERT INTO "{schema}".m VALUES (%s, %s, %s, %s)',
                [(sid, 2 * i, "user", f"question {i}"), (sid, 2 * i + 1, "assistant", REPLY)],
            )
        times.append(time.perf_counter() - t0)
    await conn.close()
    tail = []
    for _ in range(tails):
        t0 = time.perf_counter()
        c = await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True)
        cur = await c.execute(f'SELECT seq, role, content FROM "{schema}".m WHERE '
                              "session_id = %s ORDER BY seq DESC LIMIT 20", (sid,))  # fmt: skip
        rows = await cur.fetchall()
        await c.close()
        tail.append(time.perf_counter() - t0)
        assert len(rows) == 20
    return _figures(times, tail)


async def _redis_floor(prefix: str, turns: int, tails: int) -> dict[str, Any]:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    key = f"{prefix}m:{uuid.uuid4().hex}"
    times = []
    for i in range(turns):
        t0 = time.perf_counter()
        async with client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {json.dumps({"seq": 2 * i, "role": "user",
                                        "content": f"question {i}"}): 2 * i})  # fmt: skip
            pipe.zadd(key, {json.dumps({"seq": 2 * i + 1, "role": "assistant",
                                        "content": REPLY}): 2 * i + 1})  # fmt: skip
            await pipe.execute()
        times.append(time.perf_counter() - t0)
    await client.aclose()
    tail = []
    for _ in range(tails):
        t0 = time.perf_counter()
        c = redis.from_url(REDIS_URL)
        rows = [json.loads(x) for x in await c.zrange(key, -20, -1)]
        await c.aclose()
        tail.append(time.perf_counter() - t0)
        assert len(rows) == 20
    return _figures(times, tail)


# -- the run ----------------------------------------------------------------------------


def _figures(appends: list[float], tails: list[float]) -> dict[str, Any]:
    return {
        "appends_per_s": round(len(appends) / sum(appends), 1),
        "append_p50_ms": round(statistics.median(appends) * 1e3, 3),
        "append_p99_ms": round(_pct(appends, 0.99) * 1e3, 3),
        "fresh_tail_p50_ms": round(statistics.median(tails) * 1e3, 3),
    }


async def bench(kind: str, turns: int, tails: int, rounds: int, tmp: Path) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    where = {"sqlite": str(tmp / f"{kind}.db"), "floor_sqlite": str(tmp / f"{kind}-floor.db"),
             "schema": f"lsbench_{run}", "floor_schema": f"lsbench_floor_{run}",
             "prefix": f"lsbench:{run}:", "floor_prefix": f"lsbench:floor:{run}:"}  # fmt: skip
    sides: dict[str, list[dict[str, Any]]] = {"store": [], "floor": []}
    order: list[tuple[str, Callable[..., Awaitable[dict[str, Any]]]]] = [
        ("store", store_side), ("floor", floor_side)]
    try:
        for r in range(rounds):
            for side, fn in order if r % 2 == 0 else list(reversed(order)):
                sides[side].append(await fn(kind, where, turns, tails))
    finally:
        await _clean(kind, where)
    best = {side: {k: (max if k == "appends_per_s" else min)(x[k] for x in runs)
                   for k in runs[0]} for side, runs in sides.items()}  # fmt: skip
    s, f = best["store"], best["floor"]
    return {
        "store": s,
        "floor": f,
        "append_throughput_ratio": round(s["appends_per_s"] / f["appends_per_s"], 2),
        "fresh_tail_ratio": round(s["fresh_tail_p50_ms"] / f["fresh_tail_p50_ms"], 2),
    }


async def _clean(kind: str, where: dict[str, Any]) -> None:
    if kind == "postgres":
        import psycopg

        async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
            for schema in (where["schema"], where["floor_schema"]):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    elif kind == "redis":
        import redis.asyncio as redis

        client = redis.from_url(REDIS_URL)
        for prefix in (where["prefix"], where["floor_prefix"]):
            async for key in client.scan_iter(match=prefix + "*"):
                await client.delete(key)
        await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--tails", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", default=",".join(STORES))
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lsw-floor-") as tmpdir:
        for kind in args.stores.split(","):
            out[kind] = await bench(kind, args.turns, args.tails, args.rounds, Path(tmpdir))
            print(kind, json.dumps(out[kind]), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
