"""Start-up benchmark: wall time of ``langswarm-run -m hi`` on the echo provider, as JSON.

    python3 benchmarks/startup_bench.py [--runs 10] [--no-hyperfine]

Each run is a fresh process that loads the config, builds the plugin manager, opens a
SQLite file, creates a session, sends one message and prints the reply: what a user waits
for. Measured two ways in one run:

- ``perf_counter``: a loop of ``subprocess.run`` timed with ``time.perf_counter`` (always);
- ``hyperfine``: when the ``hyperfine`` binary is on PATH (``apt-get install hyperfine``),
  its mean/median over the same command, with warm-up runs.

Two plugin settings: ``builtins_only`` (``LANGSWARM_LOAD_PLUGINS=""``) and
``all_installed`` (the variable unset: every installed plugin package is loaded, as for a
user who pip-installed some). ``python -c pass`` is the floor no Python CLI can beat.
The heaviest imports of one run (``python -X importtime``) are listed, and the run fails
loudly if any provider SDK shows up among them: start-up must not import one.
Target (issue 3): under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SDKS = ("openai", "anthropic", "google.genai", "cohere", "mistralai")
CONFIG = """\
version: 1
storage: {type: sqlite, path: chat.db}
defaults: {provider: local, user_id: bench}
providers:
  local: {type: echo}
"""


def cli() -> list[str]:
    """The installed console script when there is one, as a user would run it."""
    script = shutil.which("langswarm-run")
    return [script] if script else [sys.executable, "-m", "langswarm_runtime.cli"]


def timed_runs(cmd: list[str], env: dict[str, str], cwd: Path, runs: int) -> dict[str, float]:
    subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, check=True)  # warm the cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                                check=False)
        times.append(time.perf_counter() - t0)
        if result.returncode != 0 or "echo: hi" not in result.stdout:
            raise RuntimeError(f"run failed ({result.returncode}): {result.stderr.strip()}")
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4)}


def hyperfine(cmd: list[str], env: dict[str, str], cwd: Path, runs: int) -> dict[str, float]:
    export = cwd / "hyperfine.json"
    subprocess.run(
        ["hyperfine", "--warmup", "2", "--runs", str(runs), "--shell=none",
         "--export-json", str(export), " ".join(cmd)],
        env=env, cwd=cwd, capture_output=True, check=True,
    )
    data = json.loads(export.read_text())["results"][0]
    return {"mean_s": round(data["mean"], 4), "median_s": round(data["median"], 4),
            "stddev_s": round(data["stddev"], 4)}


def heaviest_imports(env: dict[str, str], cwd: Path, top: int = 12) -> list[dict[str, Any]]:
    """Top-level packages by import time in one ``-m hi`` run: the self time of every
    module, summed per top-level package (so pydantic counts once, whoever imports it)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "langswarm_runtime.cli", "-m", "hi"],
        env=env, cwd=cwd, capture_output=True, text=True, check=True,
    )
    by_package: dict[str, int] = {}
    imported: set[str] = set()
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        head, _cumulative, raw = line.split("|")
        name = raw.strip()
        imported.add(name)
        top_name = name.split(".")[0]
        self_us = int(head.rsplit(":", 1)[1])
        by_package[top_name] = by_package.get(top_name, 0) + self_us
    leaked = [s for s in SDKS if s in imported]
    if leaked:
        raise RuntimeError(f"start-up imported provider SDKs: {leaked}")
    ranked = sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
    return [{"package": k, "self_ms": round(v / 1000, 1)} for k, v in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-hyperfine", action="store_true")
    args = parser.parse_args()
    use_hyperfine = not args.no_hyperfine and shutil.which("hyperfine") is not None
    cmd = [*cli(), "--config", "swarm.yaml", "--no-stream", "-m", "hi"]
    out: dict[str, Any] = {"benchmark": "startup", "command": "langswarm-run -m hi (echo)",
                           "runs": args.runs, "python": platform.python_version(),
                           "cpus": os.cpu_count(), "results": {}}
    with tempfile.TemporaryDirectory(prefix="lsw-startup-") as tmp:
        cwd = Path(tmp)
        (cwd / "swarm.yaml").write_text(CONFIG, encoding="utf-8")
        base = {k: v for k, v in os.environ.items() if k != "LANGSWARM_CONFIG"}
        settings = {
            "builtins_only": {**base, "LANGSWARM_LOAD_PLUGINS": ""},
            "all_installed": {k: v for k, v in base.items() if k != "LANGSWARM_LOAD_PLUGINS"},
        }
        for label, env in settings.items():
            row: dict[str, Any] = {"perf_counter": timed_runs(cmd, env, cwd, args.runs)}
            if use_hyperfine:
                row["hyperfine"] = hyperfine(cmd, env, cwd, args.runs)
            out["results"][label] = row
        out["python_floor"] = timed_runs(
            [sys.executable, "-c", "print('echo: hi')"], base, cwd, args.runs
        )
        out["heaviest_imports_builtins_only"] = heaviest_imports(settings["builtins_only"], cwd)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
