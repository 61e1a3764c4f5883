"""The runtime's own turn, back to back and right after other work, as JSON.

    python3 benchmarks/cold_bench.py [--turns 600] [--gap-ms 10]

``send_message`` on the offline ``echo`` provider (hybrid, SQLite in a temp dir), turns
in three interleaved kinds: right after the previous turn; right after ``--gap-ms`` of
other Python work that allocates the way an SDK's request building does; and right
after an idle wait of the same length (as while a provider answers). Median per kind.
The runtime's work is identical in all three: what differs is the state of the CPU's
caches (and, after the wait, the vCPU's wake-up), which is why the runtime's steps cost
more inside a real turn than alone (benchmarks/README.md, per-turn overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from langswarm_runtime import SessionManager, SQLiteSessionStorage

KINDS = ("back_to_back", "after_python_work", "after_idle_wait")


def python_work(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        json.loads(json.dumps([{"role": "user", "content": "x" * 50, "n": [1, 2]}] * 50))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=600)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lsw-cold-") as tmpdir:
        manager = SessionManager(storage=SQLiteSessionStorage(Path(tmpdir) / "s.db"))
        session = await manager.create_session(user_id="bench", provider="echo")
        for i in range(60):
            await session.send_message(f"warm up {i}")
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for i in range(args.turns):
            kind = KINDS[i % len(KINDS)]
            if kind == "after_python_work":
                python_work(args.gap_ms)
            elif kind == "after_idle_wait":
                await asyncio.sleep(args.gap_ms / 1000)
            t0 = time.perf_counter()
            await session.send_message(f"hello {i}")
            times[kind].append(time.perf_counter() - t0)
        await manager.close()
    print(json.dumps({
        "benchmark": "runtime_turn_cold_vs_warm",
        "gap_ms": args.gap_ms,
        "median_ms": {k: round(statistics.median(v) * 1e3, 3) for k, v in times.items()},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
