"""Storage benchmark: append throughput and resume latency, printed as JSON.

    python3 benchmarks/storage_bench.py [--rounds 3] [--synchronous NORMAL]

Measured side by side in one run, each on a fresh database file in a temp directory:

- ``langswarm_sqlite``: ``SQLiteSessionStorage``, one ``append_messages`` call per turn.
- ``plain_sqlite3``: a hand-written sqlite3 script, one WAL transaction per turn, the same
  durability settings (journal_mode=WAL, the same ``synchronous``), no async, no models.
- ``openai_agents``: the ``SQLiteSession`` of openai-agents, when it is importable
  (the peer figure; skipped cleanly when absent).

Append: 20 sessions x 500 turns, interleaved (turn t of every session, then turn t+1),
each turn a user and an assistant message of 200 characters. Resume: a fresh storage
object (open + first read) loading the last 20 messages, and the whole history, of a
session with 1,000 and with 10,000 messages. Figures are the best of ``--rounds``
rounds for throughput and the median of many repeats for latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langswarm_runtime.session.models import Message, SessionRecord
from langswarm_runtime.session.storage.sqlite import SQLiteSessionStorage

CONTENT_USER = ("u" * 199) + "?"
CONTENT_ASSISTANT = ("a" * 199) + "."

try:  # optional peer
    from agents import SQLiteSession as AgentsSQLiteSession  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    AgentsSQLiteSession = None


# -- plain sqlite3 baseline -------------------------------------------------------------


def plain_connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, session_id TEXT, "
        "role TEXT, content TEXT, created_at REAL)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS by_session ON messages (session_id, id)")
    return conn


def plain_append(path: str, synchronous: str, sessions: int, turns: int) -> float:
    conn = plain_connect(path, synchronous)
    sql = "INSERT INTO messages (session_id, role, content, created_at) VALUES (?, ?, ?, ?)"
    start = time.perf_counter()
    for _ in range(turns):
        for s in range(sessions):
            sid = f"s{s}"
            conn.execute("BEGIN")
            now = time.time()
            conn.executemany(
                sql,
                [(sid, "user", CONTENT_USER, now), (sid, "assistant", CONTENT_ASSISTANT, now)],
            )
            conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def plain_load(path: str, synchronous: str, last: int | None) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    if last is None:
        rows = conn.execute(
            "SELECT role, content, created_at FROM messages WHERE session_id = ? ORDER BY id",
            ("s0",),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT role, content, created_at FROM messages WHERE session_id = ? "
            "ORDER BY id DESC LIMIT ?",
            ("s0", last),
        ).fetchall()
        rows.reverse()
    elapsed = time.perf_counter() - start
    assert rows
    conn.close()
    return elapsed


# -- langswarm ----------------------------------------------------------------------------


async def ls_append(path: str, synchronous: Any, sessions: int, turns: int) -> dict[str, float]:
    storage = SQLiteSessionStorage(path, synchronous=synchronous)
    for s in range(sessions):
        await storage.create_session(SessionRecord(session_id=f"s{s}", user_id="u", provider="echo"))
    slowest = 0.0
    calls: list[float] = []
    start = time.perf_counter()
    for _ in range(turns):
        for s in range(sessions):
            t0 = time.perf_counter()
            await storage.append_messages(
                f"s{s}",
                [
                    Message(role="user", content=CONTENT_USER),
                    Message(role="assistant", content=CONTENT_ASSISTANT),
                ],
            )
            calls.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    slowest = max(calls)
    await storage.close()
    calls.sort()
    return {
        "elapsed": elapsed,
        "p99_call_ms": calls[int(len(calls) * 0.99)] * 1000,
        "max_call_ms": slowest * 1000,
    }


async def ls_load(path: str, synchronous: Any, last: int | None) -> float:
    start = time.perf_counter()
    storage = SQLiteSessionStorage(path, synchronous=synchronous)
    rows = await storage.load_messages("s0", last=last)
    elapsed = time.perf_counter() - start
    assert rows
    await storage.close()
    return elapsed


# -- openai-agents peer ---------------------------------------------------------------------


async def agents_append(path: str, sessions: int, turns: int) -> float:
    objs = [AgentsSQLiteSession(f"s{s}", path) for s in range(sessions)]
    start = time.perf_counter()
    for _ in range(turns):
        for obj in objs:
            await obj.add_items(
                [
                    {"role": "user", "content": CONTENT_USER},
                    {"role": "assistant", "content": CONTENT_ASSISTANT},
                ]
            )
    elapsed = time.perf_counter() - start
    for obj in objs:
        obj.close()
    return elapsed


async def agents_load(path: str, last: int | None) -> float:
    start = time.perf_counter()
    obj = AgentsSQLiteSession("s0", path)
    rows = await obj.get_items(limit=last)
    elapsed = time.perf_counter() - start
    assert rows
    obj.close()
    return elapsed


# -- driver ------------------------------------------------------------------------------


async def fill(kind: str, path: str, synchronous: Any, n_messages: int) -> None:
    """A database whose session s0 has ``n_messages`` messages (s1 gets as many, so the
    read has to find its rows among others')."""
    if kind == "plain":
        conn = plain_connect(path, synchronous)
        conn.execute("BEGIN")
        for i in range(n_messages):
            for sid in ("s0", "s1"):
                conn.execute(
                    "INSERT INTO messages (session_id, role, content, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (sid, "user" if i % 2 == 0 else "assistant", CONTENT_USER, time.time()),
                )
        conn.execute("COMMIT")
        conn.close()
    elif kind == "langswarm":
        storage = SQLiteSessionStorage(path, synchronous=synchronous)
        for sid in ("s0", "s1"):
            await storage.create_session(SessionRecord(session_id=sid, user_id="u", provider="echo"))
        for _ in range(n_messages // 2):
            for sid in ("s0", "s1"):
                await storage.append_messages(
                    sid,
                    [
                        Message(role="user", content=CONTENT_USER),
                        Message(role="assistant", content=CONTENT_ASSISTANT),
                    ],
                )
        await storage.close()
    else:
        objs = [AgentsSQLiteSession(sid, path) for sid in ("s0", "s1")]
        for _ in range(n_messages // 2):
            for obj in objs:
                await obj.add_items(
                    [
                        {"role": "user", "content": CONTENT_USER},
                        {"role": "assistant", "content": CONTENT_ASSISTANT},
                    ]
                )
        for obj in objs:
            obj.close()


def loader(kind: str, path: str, sync: Any, last: int | None) -> Callable[[], Awaitable[float]]:
    """One timed resume (open + load) of session s0 for ``kind``."""

    async def run() -> float:
        if kind == "plain":
            return plain_load(path, sync, last)
        if kind == "langswarm":
            return await ls_load(path, sync, last)
        return await agents_load(path, last)

    return run


async def interleaved(
    fns: dict[str, Callable[[], Awaitable[float]]], repeat: int
) -> dict[str, list[float]]:
    """Round-robin the contenders, so load from other processes hits them alike."""
    for fn in fns.values():
        await fn()  # warm the OS page cache; not timed
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for kind, fn in fns.items():
            samples[kind].append(await fn())
    return samples


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=200, help="repeats per latency figure")
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    args = parser.parse_args()
    sync = args.synchronous
    peers = ["plain", "langswarm"] + (["agents"] if AgentsSQLiteSession else [])
    n_msgs = args.sessions * args.turns * 2
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "synchronous": sync,
        "workload": f"{args.sessions} sessions x {args.turns} turns interleaved, "
        "2 x 200-char messages per turn",
        "openai_agents": "present" if AgentsSQLiteSession else "absent (skipped)",
    }
    with tempfile.TemporaryDirectory(prefix="lsbench-") as tmp:
        best: dict[str, float] = {}
        extra: dict[str, float] = {}
        for r in range(args.rounds):  # rounds alternate, so drift hits everyone alike
            for kind in peers:
                path = os.path.join(tmp, f"append-{kind}-{r}.db")
                if kind == "plain":
                    t = plain_append(path, sync, args.sessions, args.turns)
                elif kind == "langswarm":
                    res = await ls_append(path, sync, args.sessions, args.turns)
                    t = res["elapsed"]
                    if t < best.get(kind, float("inf")):
                        extra = {k: round(v, 3) for k, v in res.items() if k != "elapsed"}
                else:
                    t = await agents_append(path, args.sessions, args.turns)
                best[kind] = min(best.get(kind, float("inf")), t)
        append = {k: {"messages_per_s": round(n_msgs / v)} for k, v in best.items()}
        append["langswarm"].update(extra)
        append["langswarm"]["time_ratio_vs_plain"] = round(best["langswarm"] / best["plain"], 3)
        out["append"] = append

        resume: dict[str, Any] = {}
        for history in (1000, 10000):
            paths = {k: os.path.join(tmp, f"resume-{k}-{history}.db") for k in peers}
            for kind in peers:
                await fill(kind, paths[kind], sync, history)
            figures: dict[str, Any] = {k: {} for k in peers}
            for label, last, rep in (("last20_ms", 20, args.repeat),
                                     ("full_ms", None, max(10, args.repeat // 10))):  # fmt: skip
                samples = await interleaved(
                    {k: loader(k, paths[k], sync, last) for k in peers}, rep
                )
                for kind, values in samples.items():
                    figures[kind][label] = round(statistics.median(values) * 1000, 3)
            ls, pl = figures["langswarm"], figures["plain"]
            ls["last20_ratio_vs_plain"] = round(ls["last20_ms"] / pl["last20_ms"], 3)
            ls["full_ratio_vs_plain"] = round(ls["full_ms"] / pl["full_ms"], 3)
            resume[f"history_{history}"] = figures
        out["resume"] = resume
    return out


if __name__ == "__main__":
    result = asyncio.run(main())
    json.dump(result, sys.stdout, indent=2)
    print()
