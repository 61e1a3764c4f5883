"""pii_filter throughput: messages per second and MB/s on the labelled corpus.

Run: python3 benchmarks/pii_bench.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

from langswarm_runtime.middleware.pii import PIIFilterMiddleware

PROSE = ("the model should answer in short sentences and keep the tone friendly while "
         "it explains how the new release changes the deployment steps for each team")
CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_corpus.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line]
    long_text = " ".join(texts)  # one PII-dense ~20 kB message
    words = PROSE.split()
    prose = " ".join(words[i * 7 % len(words)] for i in range(3500))  # ~20 kB, no PII
    session = SimpleNamespace(session_id="bench")
    for mode in ("redact", "hash"):
        mw = PIIFilterMiddleware(mode=mode)
        start = time.perf_counter()
        for _ in range(args.rounds):
            for text in texts:
                mw.filter_text(session, text)
        short = time.perf_counter() - start
        n = args.rounds * len(texts)
        start = time.perf_counter()
        for _ in range(args.rounds):
            mw.filter_text(session, long_text)
        big = time.perf_counter() - start
        mb = args.rounds * len(long_text.encode()) / 1e6
        start = time.perf_counter()
        for _ in range(args.rounds):
            mw.filter_text(session, prose)
        plain = time.perf_counter() - start
        mb_plain = args.rounds * len(prose.encode()) / 1e6
        print(f"{mode:6}  corpus lines: {n / short:7.0f} msg/s ({short / n * 1e6:5.1f} us each)"
              f" | {len(long_text) // 1000} kB PII-dense: {mb / big:5.2f} MB/s"
              f" | {len(prose) // 1000} kB plain prose: {mb_plain / plain:5.2f} MB/s")


if __name__ == "__main__":
    main()
