"""PostgreSQL and Redis storages under one workload: append throughput, tail-load latency
and concurrent throughput with 8 writer processes.

    python benchmarks/scaleout_bench.py                 # both, full size
    python benchmarks/scaleout_bench.py --quick         # smaller, for a smoke run
    python benchmarks/scaleout_bench.py --backends redis

Needs the plugins installed (pip install ./plugins/langswarm-storage-postgres
./plugins/langswarm-storage-redis) and the servers from LANGSWARM_TEST_POSTGRES_DSN /
LANGSWARM_TEST_REDIS_URL (default: local). Each run uses its own schema / key prefix and
removes it at the end. Prints a Markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import statistics
import time
import uuid
from typing import Any

from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord
from langswarm_runtime.session.storage.base import ISessionStorage

PG_DSN = os.environ.get(
    "LANGSWARM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LANGSWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WRITERS = 8


def make_storage(kind: str, options: dict[str, Any]) -> ISessionStorage:
    if kind == "postgres":
        from langswarm_storage_postgres import PostgresSessionStorage

        return PostgresSessionStorage(**options)
    from langswarm_storage_redis import RedisSessionStorage

    return RedisSessionStorage(**options)


def _turn(i: int) -> list[Message]:
    """A turn as the session writes it: user message + reply (about 300 bytes)."""
    return [
        Message(role="user", content=f"question {i}: " + "lorem ipsum " * 10),
        Message(role="assistant", content=f"answer {i}: " + "dolor sit amet " * 8),
    ]


async def _new_session(store: ISessionStorage, sid: str) -> None:
    await store.create_session(SessionRecord(session_id=sid, user_id="bench", provider="echo"))


async def bench_append(store: ISessionStorage, turns: int) -> float:
    """Sequential turns (2 messages each) on one session: messages per second."""
    await _new_session(store, "append")
    t0 = time.perf_counter()
    for i in range(turns):
        await store.append_messages("append", _turn(i))
    return 2 * turns / (time.perf_counter() - t0)


async def bench_tail(store: ISessionStorage, history: int, reads: int) -> tuple[float, float]:
    """``load_messages(last=50, statuses={committed})`` on a session of ``history``
    messages: p50 and p95 in milliseconds."""
    sid = f"tail-{history}"
    await _new_session(store, sid)
    batch = 500
    for start in range(0, history, batch):
        await store.append_messages(
            sid, [Message(role="user", content=f"m{start + j} " + "x" * 100)
                  for j in range(min(batch, history - start))]
        )
    timings = []
    for _ in range(reads):
        t0 = time.perf_counter()
        got = await store.load_messages(sid, last=50, statuses={MessageStatus.COMMITTED})
        timings.append((time.perf_counter() - t0) * 1000)
        assert len(got) == 50
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


def _writer(kind: str, options: dict[str, Any], sids: list[str], turns: int,
            ready: Any) -> None:
    asyncio.run(_write(kind, options, sids, turns, ready))


async def _write(kind: str, options: dict[str, Any], sids: list[str], turns: int,
                 ready: Any) -> None:
    store = make_storage(kind, options)
    try:
        await store.load_session(sids[0])  # connect before the clock starts
        ready.wait(120)  # the clock starts when every writer is connected
        for i in range(turns):
            await store.append_messages(sids[i % len(sids)], _turn(i))
    finally:
        await store.close()


async def bench_concurrent(kind: str, options: dict[str, Any], store: ISessionStorage,
                           turns: int) -> float:
    """8 processes appending turns to 4 shared sessions: total messages per second."""
    sids = [f"conc-{i}" for i in range(4)]
    for sid in sids:
        await _new_session(store, sid)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(WRITERS + 1)
    procs = [ctx.Process(target=_writer, args=(kind, options, sids, turns, ready))
             for _ in range(WRITERS)]
    for p in procs:
        p.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ready.wait, 120)
    t0 = time.perf_counter()
    for p in procs:
        await loop.run_in_executor(None, p.join)
    wall = time.perf_counter() - t0
    if any(p.exitcode for p in procs):
        raise SystemExit(f"{kind}: a writer process failed")
    total = 0
    for sid in sids:
        msgs = await store.load_messages(sid)
        seqs = [m.seq for m in msgs]
        assert seqs == sorted(set(seqs)), "seqs must be unique and ordered"  # type: ignore[type-var]
        total += len(msgs)
    assert total == WRITERS * turns * 2, f"expected {WRITERS * turns * 2} messages, got {total}"
    return total / wall


def _setup(kind: str) -> tuple[dict[str, Any], Any]:
    run = uuid.uuid4().hex[:8]
    if kind == "postgres":
        schema = f"bench_{run}"

        def drop() -> None:
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        return {"dsn": PG_DSN, "schema": schema, "pool_max_size": 4}, drop
    prefix = f"bench:{run}:"

    def delete() -> None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()

    return {"url": REDIS_URL, "key_prefix": prefix}, delete


async def run(kind: str, quick: bool) -> dict[str, Any]:
    options, cleanup = _setup(kind)
    store = make_storage(kind, options)
    try:
        turns = 300 if quick else 2000
        result: dict[str, Any] = {"append": await bench_append(store, turns)}
        for history in (1_000, 10_000) if not quick else (1_000, 3_000):
            result[f"tail_{history}"] = await bench_tail(store, history, 50 if quick else 300)
        result["concurrent"] = await bench_concurrent(kind, options, store,
                                                      50 if quick else 250)
        return result
    finally:
        await store.close()
        cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="postgres,redis")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.system()}")
    rows = []
    for kind in args.backends.split(","):
        r = asyncio.run(run(kind.strip(), args.quick))
        tails = [k for k in r if k.startswith("tail_")]
        rows.append((kind, r, tails))
    tail_cols = rows[0][2] if rows else []
    head = ["storage", "append (msg/s)"]
    head += [f"tail last=50 of {t[5:]} p50/p95 (ms)" for t in tail_cols]
    head += [f"{WRITERS} writer processes (msg/s)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for kind, r, tails in rows:
        cells = [kind, f"{r['append']:,.0f}"]
        cells += [f"{r[t][0]:.2f} / {r[t][1]:.2f}" for t in tails]
        cells += [f"{r['concurrent']:,.0f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
