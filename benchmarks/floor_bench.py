"""Storage against a raw-driver floor, like for like, as JSON (issue 10's yardstick).

    python3 benchmarks/floor_bench.py [--turns 400] [--tails 50] [--full 1000] [--procs 8]
                                      [--rounds 3] [--stores sqlite-normal,...]

For each store and its floor, side by side in one run, rounds alternating which goes
first, each side in turn:

- appends ``--turns`` turns (a user message and a 200-character reply) to a fresh
  session, one durable write each;
- writes a second session of ``--full`` messages (the same turns, in batches, untimed);
- on the still open store or connection, reads the last 20 messages of the first session
  ``--tails`` times (open tail), then all of the second ``--tails`` times (open full load);
- does the same reads on a fresh store object or connection each time: open, read, close
  (fresh tail, fresh full load);
- starts ``--procs`` spawned processes, each opening its own store or connection and a
  session of its own, then appending ``--turns`` turns to it; the clock starts when all
  are open (a barrier) and stops when the last has written its last turn. For SQLite
  they all write to the side's one file.

The floors do the same durable work with the bare driver, a connection standing for a
store (session ids of the same length as the store's):

- ``sqlite-normal`` / ``sqlite-full``: sqlite3, WAL, the same ``synchronous`` level, one
  ``BEGIN IMMEDIATE`` transaction per turn inserting two rows into an indexed
  ``(session_id, seq)`` table;
- ``postgres``: psycopg 3, one autocommit transaction per turn inserting two rows into
  an indexed ``(session_id, seq, role, content)`` table;
- ``redis``: redis-py, the turn ``ZADD``-ed in one ``MULTI`` pipeline.

After the last round, each side's storage, holding only that side's messages of all the
rounds, is measured and divided by the messages it holds: SQLite, ``page_count *
page_size`` after ``PRAGMA wal_checkpoint(TRUNCATE)`` plus what is left in the WAL;
PostgreSQL, ``pg_total_relation_size`` (indexes and TOAST included) of the store's
``messages`` and ``sessions`` tables (the session rows count too) and of the floor's
table; Redis, ``MEMORY USAGE ... SAMPLES 0`` of every key under the store's prefix but
its write tokens (one per append, expiring after 75 s: their mean size is reported apart,
``write_token_bytes``) and of the floor's keys.

Reported per store (best of the rounds): appends per second at one process and messages
per second at ``--procs``, per-append p50/p99 (ms), tail and full load p50 (ms), fresh
and open, bytes per message, for the store and its floor, and ratios store / floor: of
throughput (higher is better; issue 10's targets are >= 0.7 for PostgreSQL and Redis and
>= 0.9 for SQLite at one process, >= 0.6 for PostgreSQL at 8), of time and of bytes
(lower is better; fresh tail <= 1.5 PostgreSQL, <= 1.3 Redis and SQLite).

For SQLite, two ceilings, measured in the same rounds: ``sql_only_throughput_ratio``, the
store's own write transaction (``_write_turn``) called directly on its connection with
every Python-side check and copy left out, against the floor's appends (the most the
store's statements allow); and ``floor_query_on_store_file_tail_ratio``, the floor's own
fresh read (3 columns, tuples) run on the store's file against the floor's (what the
store's larger schema costs a fresh connection, before the store does anything).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, cast

from langswarm_runtime import Message, SQLiteSessionStorage
from langswarm_runtime.session.models import SessionRecord

PG_DSN = os.environ.get("LANGSWARM_BENCH_POSTGRES_DSN",
                        "postgresql://postgres@127.0.0.1:5432/postgres")  # fmt: skip
REDIS_URL = os.environ.get("LANGSWARM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
REPLY = "r" * 200
STORES = ("sqlite-normal", "sqlite-full", "postgres", "redis")
START_TIMEOUT = 300.0  # seconds the --procs workers have to start and open
SQLITE_INSERT = "INSERT INTO m (session_id, seq, role, content) VALUES (?, ?, ?, ?)"
Side = Callable[[str, dict[str, Any], int, int, int, int], Awaitable[dict[str, Any]]]


def _turn(i: int) -> list[Message]:
    return [Message(role="user", content=f"question {i}"),
            Message(role="assistant", content=REPLY)]  # fmt: skip


def _rows(sid: str, i: int) -> list[tuple[str, int, str, str]]:
    """The floors' rows of turn ``i``: (session_id, seq, role, content)."""
    return [(sid, 2 * i, "user", f"question {i}"), (sid, 2 * i + 1, "assistant", REPLY)]


def _full_rows(sid: str, full: int) -> list[tuple[str, int, str, str]]:
    return [row for i in range(full // 2 + 1) for row in _rows(sid, i)][:full]


def _sid() -> str:
    return f"b{uuid.uuid4().hex[:12]}"


def _sync(kind: str) -> Literal["NORMAL", "FULL"]:
    return "FULL" if kind.endswith("full") else "NORMAL"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _timed(n: int, expect: int, read: Callable[[], list[Any]]) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        got = read()
        times.append(time.perf_counter() - t0)
        assert len(got) == expect, (len(got), expect)
    return times


async def _atimed(n: int, expect: int, read: Callable[[], Awaitable[list[Any]]]) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        got = await read()
        times.append(time.perf_counter() - t0)
        assert len(got) == expect, (len(got), expect)
    return times


# -- the runtime's stores ---------------------------------------------------------------


async def store_side(
    kind: str, where: dict[str, Any], turns: int, tails: int, full: int, procs: int
) -> dict[str, Any]:
    make = _store_factory(kind, where)
    store = make()
    sid, fsid = await _new_session(store), await _new_session(store)
    appends = await _store_appends(store, sid, turns)
    messages = [m for i in range(full // 2 + 1) for m in _turn(i)][:full]
    for k in range(0, full, 100):
        await store.append_messages(fsid, messages[k : k + 100])
    open_tail = await _atimed(tails, 20, lambda: store.load_messages(sid, last=20))
    open_full = await _atimed(tails, full, lambda: store.load_messages(fsid))
    ceilings: dict[str, Any] = {}
    if kind.startswith("sqlite"):
        ceilings["sql_only_appends_per_s"] = await _sql_only_appends(store, turns)
    await store.close()
    fresh_tail = await _atimed(tails, 20, lambda: _fresh_load(make, sid, 20))
    fresh_full = await _atimed(tails, full, lambda: _fresh_load(make, fsid, None))
    if kind.startswith("sqlite"):
        ceilings["floor_query_fresh_tail_p50_ms"] = _p50(_timed(
            tails, 20, lambda: _sqlite_fresh(where["sqlite"], sid, 20, "messages")))
    figures = _figures(appends, fresh_tail, open_tail, fresh_full, open_full)
    return figures | ceilings | _parallel(kind, "store", where, turns, procs)


async def _sql_only_appends(store: Any, turns: int) -> float:
    """Appends per second of the store's own write (``_write_turn``: the seq read, the
    inserts into its table and indexes, the transaction) called directly on its
    connection, every check and copy of the Python side left out: the most the SQLite
    store's statements allow, on a session of their own."""
    from langswarm_runtime.session.storage.base import message_row
    from langswarm_runtime.session.storage.sqlite import _write_turn

    sid = await _new_session(store)
    conn = store._conn
    total = 0.0
    for i in range(turns):
        params = [message_row(m) for m in _turn(i)]
        t0 = time.perf_counter()
        _write_turn(conn, sid, [], params)
        total += time.perf_counter() - t0
    return round(turns / total, 1)


def _store_factory(kind: str, where: dict[str, Any]) -> Callable[[], Any]:
    if kind.startswith("sqlite"):
        return lambda: SQLiteSessionStorage(db_path=where["sqlite"], synchronous=_sync(kind))
    if kind == "postgres":
        from langswarm_storage_postgres import PostgresSessionStorage

        return lambda: PostgresSessionStorage(dsn=PG_DSN, schema=where["schema"])
    from langswarm_storage_redis import RedisSessionStorage

    return lambda: RedisSessionStorage(url=REDIS_URL, key_prefix=where["prefix"])


async def _new_session(store: Any) -> str:
    sid = _sid()
    await store.create_session(SessionRecord(session_id=sid, user_id="u", provider="p"))
    return sid


async def _store_appends(store: Any, sid: str, turns: int) -> list[float]:
    times = []
    for i in range(turns):
        t0 = time.perf_counter()
        await store.append_messages(sid, _turn(i))
        times.append(time.perf_counter() - t0)
    return times


async def _fresh_load(make: Callable[[], Any], sid: str, last: int | None) -> list[Message]:
    store = make()
    try:
        return cast("list[Message]", await store.load_messages(sid, last=last))
    finally:
        await store.close()


# -- the floors -------------------------------------------------------------------------


async def floor_side(
    kind: str, where: dict[str, Any], turns: int, tails: int, full: int, procs: int
) -> dict[str, Any]:
    if kind.startswith("sqlite"):
        path = where["floor_sqlite"]
        figures = await asyncio.to_thread(_sqlite_floor, kind, path, turns, tails, full)
    elif kind == "postgres":
        figures = await _pg_floor(where["floor_schema"], turns, tails, full)
    else:
        figures = await _redis_floor(where["floor_prefix"], turns, tails, full)
    return figures | _parallel(kind, "floor", where, turns, procs)


def _sqlite_floor(kind: str, path: str, turns: int, tails: int, full: int) -> dict[str, Any]:
    conn = _sqlite_connect(kind, path)
    conn.execute("CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, session_id TEXT, "
                 "seq INTEGER, role TEXT, content TEXT)")  # fmt: skip
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS m_seq ON m (session_id, seq)")
    sid, fsid = _sid(), _sid()
    appends = _sqlite_appends(conn, sid, turns)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(SQLITE_INSERT, _full_rows(fsid, full))
    conn.execute("COMMIT")
    open_tail = _timed(tails, 20, lambda: _sqlite_read(conn, sid, 20))
    open_full = _timed(tails, full, lambda: _sqlite_read(conn, fsid, None))
    conn.close()
    fresh_tail = _timed(tails, 20, lambda: _sqlite_fresh(path, sid, 20))
    fresh_full = _timed(tails, full, lambda: _sqlite_fresh(path, fsid, None))
    return _figures(appends, fresh_tail, open_tail, fresh_full, open_full)


def _sqlite_connect(kind: str, path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={_sync(kind)}")
    return conn


def _sqlite_appends(conn: sqlite3.Connection, sid: str, turns: int) -> list[float]:
    times = []
    for i in range(turns):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(SQLITE_INSERT, _rows(sid, i))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    return times


def _sqlite_read(
    conn: sqlite3.Connection, sid: str, last: int | None, table: str = "m"
) -> list[Any]:
    sql = f"SELECT seq, role, content FROM {table} WHERE session_id = ? ORDER BY seq"
    if last is None:
        return conn.execute(sql, (sid,)).fetchall()
    return conn.execute(sql + " DESC LIMIT ?", (sid, last)).fetchall()


def _sqlite_fresh(path: str, sid: str, last: int | None, table: str = "m") -> list[Any]:
    """Open, read, close: the floor's fresh read (on the store's file with ``table``
    ``messages``: the floor's own query on the store's schema)."""
    conn = sqlite3.connect(path)
    try:
        return _sqlite_read(conn, sid, last, table)
    finally:
        conn.close()


async def _pg_floor(schema: str, turns: int, tails: int, full: int) -> dict[str, Any]:
    conn = await _pg_connect()
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".m (session_id text, seq bigint, '
                       "role text, content text, PRIMARY KEY (session_id, seq))")  # fmt: skip
    sid, fsid = _sid(), _sid()
    appends = await _pg_appends(conn, schema, sid, turns)
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(f'INSERT INTO "{schema}".m VALUES (%s, %s, %s, %s)',
                              _full_rows(fsid, full))  # fmt: skip
    open_tail = await _atimed(tails, 20, lambda: _pg_read(conn, schema, sid, 20))
    open_full = await _atimed(tails, full, lambda: _pg_read(conn, schema, fsid, None))
    await conn.close()
    fresh_tail = await _atimed(tails, 20, lambda: _pg_fresh(schema, sid, 20))
    fresh_full = await _atimed(tails, full, lambda: _pg_fresh(schema, fsid, None))
    return _figures(appends, fresh_tail, open_tail, fresh_full, open_full)


async def _pg_connect() -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True)


async def _pg_appends(conn: Any, schema: str, sid: str, turns: int) -> list[float]:
    times = []
    for i in range(turns):
        t0 = time.perf_counter()
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(f'INSERT INTO "{schema}".m VALUES (%s, %s, %s, %s)',
                                  _rows(sid, i))  # fmt: skip
        times.append(time.perf_counter() - t0)
    return times


async def _pg_read(conn: Any, schema: str, sid: str, last: int | None) -> list[Any]:
    sql = f'SELECT seq, role, content FROM "{schema}".m WHERE session_id = %s ORDER BY seq'
    if last is None:
        cur = await conn.execute(sql, (sid,))
    else:
        cur = await conn.execute(sql + " DESC LIMIT %s", (sid, last))
    return cast("list[Any]", await cur.fetchall())


async def _pg_fresh(schema: str, sid: str, last: int | None) -> list[Any]:
    conn = await _pg_connect()
    try:
        return await _pg_read(conn, schema, sid, last)
    finally:
        await conn.close()


async def _redis_floor(prefix: str, turns: int, tails: int, full: int) -> dict[str, Any]:
    client = await _redis_connect()
    key, fkey = f"{prefix}m:{_sid()}", f"{prefix}m:{_sid()}"
    appends = await _redis_appends(client, key, turns)
    await client.zadd(fkey, {_member(s, r, c): s for _, s, r, c in _full_rows("", full)})
    open_tail = await _atimed(tails, 20, lambda: _redis_read(client, key, 20))
    open_full = await _atimed(tails, full, lambda: _redis_read(client, fkey, None))
    await client.aclose()
    fresh_tail = await _atimed(tails, 20, lambda: _redis_fresh(key, 20))
    fresh_full = await _atimed(tails, full, lambda: _redis_fresh(fkey, None))
    return _figures(appends, fresh_tail, open_tail, fresh_full, open_full)


async def _redis_connect() -> Any:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    await client.ping()
    return client


def _member(seq: int, role: str, content: str) -> str:
    return json.dumps({"seq": seq, "role": role, "content": content})


async def _redis_appends(client: Any, key: str, turns: int) -> list[float]:
    times = []
    for i in range(turns):
        t0 = time.perf_counter()
        async with client.pipeline(transaction=True) as pipe:
            for _, seq, role, content in _rows("", i):
                pipe.zadd(key, {_member(seq, role, content): seq})
            await pipe.execute()
        times.append(time.perf_counter() - t0)
    return times


async def _redis_read(client: Any, key: str, last: int | None) -> list[Any]:
    raw = await client.zrange(key, 0 if last is None else -last, -1)
    return [json.loads(x) for x in raw]


async def _redis_fresh(key: str, last: int | None) -> list[Any]:
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    try:
        return await _redis_read(client, key, last)
    finally:
        await client.aclose()


# -- --procs processes ------------------------------------------------------------------


def _parallel(
    kind: str, side: str, where: dict[str, Any], turns: int, procs: int
) -> dict[str, Any]:
    """Messages per second of ``procs`` spawned writers, from all open to the last done."""
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Barrier(procs + 1), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(kind, side, where, turns, ready, results),
                           daemon=True) for _ in range(procs)]  # fmt: skip
    for w in workers:
        w.start()
    try:
        try:
            ready.wait(START_TIMEOUT)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"{kind} {side} workers failed to open:\n{_word(results)}") from None
        t0 = time.perf_counter()
        errors = [e for e in _collect(results, workers) if e]
        elapsed = time.perf_counter() - t0
        if errors:
            raise RuntimeError(f"a {kind} {side} worker failed:\n{errors[0]}")
    finally:
        for w in workers:
            w.join(30)
            if w.is_alive():
                w.terminate()
                w.join()
    return {"parallel_messages_per_s": round(2 * turns * procs / elapsed, 1)}


def _collect(results: Any, workers: list[Any]) -> list[str | None]:
    """One word from each worker: None (done) or its traceback."""
    got: list[str | None] = []
    while len(got) < len(workers):
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            if not any(w.is_alive() for w in workers) and results.empty():
                got.append("a worker exited without a word")
    return got


def _word(results: Any) -> str:
    try:
        return cast(str, results.get(timeout=5))
    except queue.Empty:
        return "(no word from them)"


def _worker(
    kind: str, side: str, where: dict[str, Any], turns: int, ready: Any, results: Any
) -> None:
    """One of the ``--procs`` writers: open, wait for all the others, append, say done."""
    try:
        asyncio.run(_work(kind, side, where, turns, lambda: ready.wait(START_TIMEOUT),
                          lambda: results.put(None)))  # fmt: skip
    except BaseException:
        ready.abort()
        results.put(traceback.format_exc())
        raise


async def _work(kind: str, side: str, where: dict[str, Any], turns: int,
                ready: Callable[[], object], done: Callable[[], None]) -> None:  # fmt: skip
    if side == "store":
        store = _store_factory(kind, where)()
        sid = await _new_session(store)
        ready()
        await _store_appends(store, sid, turns)
        done()
        await store.close()
    elif kind.startswith("sqlite"):
        conn = _sqlite_connect(kind, where["floor_sqlite"])
        ready()
        _sqlite_appends(conn, _sid(), turns)
        done()
        conn.close()
    elif kind == "postgres":
        pg = await _pg_connect()
        ready()
        await _pg_appends(pg, where["floor_schema"], _sid(), turns)
        done()
        await pg.close()
    else:
        client = await _redis_connect()
        ready()
        await _redis_appends(client, f"{where['floor_prefix']}m:{_sid()}", turns)
        done()
        await client.aclose()


# -- bytes per message ------------------------------------------------------------------


async def _sizes(kind: str, where: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if kind.startswith("sqlite"):
        store = _sqlite_size(where["sqlite"], "messages")
        floor = _sqlite_size(where["floor_sqlite"], "m")
    elif kind == "postgres":
        s, f = where["schema"], where["floor_schema"]
        store = await _pg_size(f'"{s}".messages', f'"{s}".sessions')
        floor = await _pg_size(f'"{f}".m')
    else:
        store = await _redis_size(where["prefix"], "messages:")
        floor = await _redis_size(where["floor_prefix"], "m:")
    return {"store": store, "floor": floor}


def _per_message(size: int, messages: int) -> dict[str, Any]:
    return {"bytes_per_message": round(size / messages, 1), "messages": messages}


def _sqlite_size(path: str, table: str) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = conn.execute("PRAGMA page_count").fetchone()[0]
        size *= conn.execute("PRAGMA page_size").fetchone()[0]
        messages = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        wal = Path(path + "-wal")
        size += wal.stat().st_size if wal.exists() else 0
    finally:
        conn.close()
    return _per_message(size, messages)


async def _pg_size(messages: str, *others: str) -> dict[str, Any]:
    conn = await _pg_connect()
    try:
        (count,) = await (await conn.execute(f"SELECT count(*) FROM {messages}")).fetchone()
        size = 0
        for table in (messages, *others):
            cur = await conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,))
            size += (await cur.fetchone())[0]
    finally:
        await conn.close()
    return _per_message(size, count)


async def _redis_size(prefix: str, messages: str) -> dict[str, Any]:
    client = await _redis_connect()
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        async with client.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.memory_usage(k, samples=0)
            sizes = dict(zip(keys, await pipe.execute(), strict=True))
        async with client.pipeline(transaction=False) as pipe:
            for k in keys:
                if k.startswith((prefix + messages).encode()):
                    pipe.zcard(k)
            count = sum(await pipe.execute())
    finally:
        await client.aclose()
    token = (prefix + "write:").encode()
    tokens = [n for k, n in sizes.items() if n is not None and k.startswith(token)]
    out = _per_message(sum(n or 0 for k, n in sizes.items() if not k.startswith(token)), count)
    if tokens:
        out["write_token_bytes"] = round(statistics.mean(tokens), 1)
    return out


# -- the run ----------------------------------------------------------------------------

HIGHER = ("appends_per_s", "parallel_messages_per_s", "sql_only_appends_per_s")
# of the rest, lower is better


def _p50(times: list[float]) -> float:
    return round(statistics.median(times) * 1e3, 3)


def _figures(appends: list[float], fresh_tail: list[float], open_tail: list[float],
             fresh_full: list[float], open_full: list[float]) -> dict[str, Any]:  # fmt: skip
    p50 = _p50
    return {
        "appends_per_s": round(len(appends) / sum(appends), 1),
        "append_p50_ms": p50(appends),
        "append_p99_ms": round(_pct(appends, 0.99) * 1e3, 3),
        "fresh_tail_p50_ms": p50(fresh_tail),
        "open_tail_p50_ms": p50(open_tail),
        "fresh_full_load_p50_ms": p50(fresh_full),
        "open_full_load_p50_ms": p50(open_full),
    }


async def bench(kind: str, turns: int, tails: int, full: int, procs: int, rounds: int,
                tmp: Path) -> dict[str, Any]:  # fmt: skip
    run = uuid.uuid4().hex[:8]
    where = {"sqlite": str(tmp / f"{kind}.db"), "floor_sqlite": str(tmp / f"{kind}-floor.db"),
             "schema": f"lsbench_{run}", "floor_schema": f"lsbench_floor_{run}",
             "prefix": f"lsbench:{run}:", "floor_prefix": f"lsbench:floor:{run}:"}  # fmt: skip
    sides: dict[str, list[dict[str, Any]]] = {"store": [], "floor": []}
    order: list[tuple[str, Side]] = [("store", store_side), ("floor", floor_side)]
    try:
        for r in range(rounds):
            for side, fn in order if r % 2 == 0 else list(reversed(order)):
                sides[side].append(await fn(kind, where, turns, tails, full, procs))
        sizes = await _sizes(kind, where)
    finally:
        _clean(kind, where)
    best = {side: {k: (max if k in HIGHER else min)(x[k] for x in runs) for k in runs[0]}
                  | sizes[side] for side, runs in sides.items()}  # fmt: skip
    s, f = best["store"], best["floor"]

    def ratio(key: str) -> float:
        return round(float(s[key] / f[key]), 2)

    ceilings = {}
    if "sql_only_appends_per_s" in s:
        ceilings = {
            "sql_only_throughput_ratio": round(s["sql_only_appends_per_s"] / f["appends_per_s"], 2),
            "floor_query_on_store_file_tail_ratio": round(
                s["floor_query_fresh_tail_p50_ms"] / f["fresh_tail_p50_ms"], 2),
        }  # fmt: skip
    return {
        "store": s,
        "floor": f,
        "append_throughput_ratio": ratio("appends_per_s"),
        "parallel_throughput_ratio": ratio("parallel_messages_per_s"),
        "fresh_tail_ratio": ratio("fresh_tail_p50_ms"),
        "open_tail_ratio": ratio("open_tail_p50_ms"),
        "fresh_full_load_ratio": ratio("fresh_full_load_p50_ms"),
        "open_full_load_ratio": ratio("open_full_load_p50_ms"),
        "bytes_per_message_ratio": ratio("bytes_per_message"),
        **ceilings,
    }


def _clean(kind: str, where: dict[str, Any]) -> None:
    """Drop what the run wrote: with the blocking drivers, so that a cancelled run (Ctrl-C
    cancels the main task, which any further ``await`` would raise) still cleans up."""
    if kind == "postgres":
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for schema in (where["schema"], where["floor_schema"]):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for prefix in (where["prefix"], where["floor_prefix"]):
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for k in range(0, len(keys), 1000):
                client.delete(*keys[k : k + 1000])
        client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--tails", type=int, default=50)
    parser.add_argument("--full", type=int, default=1000, help="messages loaded whole")
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", default=",".join(STORES))
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lsw-floor-") as tmpdir:
        for kind in args.stores.split(","):
            out[kind] = await bench(kind, args.turns, args.tails, args.full, args.procs,
                                    args.rounds, Path(tmpdir))  # fmt: skip
            print(kind, json.dumps(out[kind]), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
