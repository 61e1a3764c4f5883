"""Prompt-caching benchmark: input tokens billed over a long hybrid session, per provider,
with and without caching, and with a full context window that slides one turn at a time
or moves in steps (``context.step``). JSON on stdout.

    python3 benchmarks/caching_bench.py [--turns 100] [--providers anthropic,openai,...]
                                        [--window 40] [--step 30] [--markdown]

Every run is a fresh ``SessionManager`` session (SQLite in a temp dir) talking through the
provider's official SDK to a fresh in-process emulator, whose prompt cache is
deterministic: tokens (words) of the longest prompt prefix it has seen before are read
from cache; for Anthropic only prefixes ending at a ``cache_control`` breakpoint are
written, and those writes are counted apart (``written``). Per provider, six runs:

- window ``all`` (``max_messages: null``: the whole history every turn), ``slide``
  (``max_messages: --window``) and ``step`` (the same plus ``step: --step``);
- each ``cache off`` (Anthropic: ``prompt_caching: false``; the others: the emulator's
  automatic cache off, i.e. what a provider without caching bills) and ``cache on``.

Per run: ``input`` (all prompt tokens sent), ``read`` (served from cache), ``written``
(Anthropic cache writes), ``uncached`` = input - read - written, and ``billed``, the input
in full-price token equivalents: uncached + read x read_rate + written x write_rate. The
rates are assumptions, in the JSON: Anthropic bills cache reads at 0.1x and 5-minute
writes at 1.25x; for the automatic caches the discount depends on the model (OpenAI
50-90 %, Gemini 75-90 %), and 0.1x is used for all of them (``--read-rate`` overrides).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from langswarm_runtime import SessionManager
from langswarm_runtime.testing.emulator import ProviderEmulator

PROVIDERS = ("anthropic", "openai", "gemini", "mistral", "cohere")
KEY = "bench-dummy-key"
SYSTEM = (
    "You are a patient support assistant for a small software company. Answer in plain "
    "language, keep replies short, ask one clarifying question when the request is "
    "ambiguous, never invent product features, and say so when you do not know."
)
#: (read, write) price multipliers relative to an uncached input token.
RATES = {"anthropic": (0.1, 1.25)}
DEFAULT_READ_RATE = 0.1
WINDOWS = ("all", "slide", "step")


def _question(i: int) -> str:
    return (
        f"Question {i}: my export job number {i * 7} stopped halfway with a timeout after "
        f"uploading {i % 13} files. What should I check first, and is it safe to start it "
        "again from the beginning without losing the files already uploaded?"
    )


def _config(tmp: Path, provider: str, url: str, window: str, cache: bool, args: Any) -> Path:
    context = {
        "all": "{max_messages: null}",
        "slide": f"{{max_messages: {args.window}}}",
        "step": f"{{max_messages: {args.window}, step: {args.step}}}",
    }[window]
    lines = [
        "version: 1",
        f'storage: {{type: sqlite, path: "{tmp / "bench.db"}"}}',
        "providers:",
        "  p:",
        f"    type: {provider}",
        f"    model: {provider}-bench",
        f"    api_key: {KEY}",
        f'    base_url: "{url}"',
        "    max_retries: 0",
        f"    context: {context}",
    ]
    if provider == "anthropic":
        lines.append(f"    prompt_caching: {str(cache).lower()}")
    path = tmp / f"{provider}-{window}-{cache}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _run(provider: str, window: str, cache: bool, args: Any) -> dict[str, Any]:
    # Anthropic's cache is opt-in per request (breakpoints); the others' is automatic.
    emu_cache = cache or provider == "anthropic"
    with (
        tempfile.TemporaryDirectory() as tmp,
        ProviderEmulator(prompt_cache=emu_cache) as emu,
    ):
        path = _config(Path(tmp), provider, emu.url(provider), window, cache, args)
        async with SessionManager.from_config(path) as manager:
            session = await manager.create_session(
                user_id="bench", provider="p", backend="hybrid", system_prompt=SYSTEM
            )
            first_hit = None
            for i in range(args.turns):
                reply = await session.send_message(_question(i))
                if first_hit is None and reply.usage and reply.usage.cached_tokens:
                    first_hit = i + 1
            usage = session.usage
        totals = emu.prefix_cache.totals(provider)
    read_rate, write_rate = RATES.get(provider, (args.read_rate, 1.0))
    written = totals["written"]
    uncached = usage.input_tokens - usage.cached_tokens - written
    billed = uncached + usage.cached_tokens * read_rate + written * write_rate
    return {
        "input": usage.input_tokens,
        "read": usage.cached_tokens,
        "written": written,
        "uncached": uncached,
        "billed": round(billed),
        "hit_rate": round(usage.cached_tokens / usage.input_tokens, 3),
        "first_cached_turn": first_hit,
    }


async def main_async(args: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for provider in args.providers:
        runs: dict[str, Any] = {}
        for window in WINDOWS:
            off = await _run(provider, window, False, args)
            on = await _run(provider, window, True, args)
            on["billed_vs_off"] = round(on["billed"] / off["billed"], 3)
            runs[window] = {"cache_off": off, "cache_on": on}
        results[provider] = runs
    return {
        "turns": args.turns,
        "window": {"max_messages": args.window, "step": args.step},
        "rates": {p: RATES.get(p, (args.read_rate, 1.0)) for p in args.providers},
        "tokens": "emulator words",
        "python": platform.python_version(),
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    rows = [
        (
            "| provider | window | input | read from cache | cache writes | billed off | "
            "billed on | on/off |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for provider, runs in report["results"].items():
        for window, pair in runs.items():
            off, on = pair["cache_off"], pair["cache_on"]
            rows.append(
                f"| {provider} | {window} | {on['input']:,} | {on['read']:,} | "
                f"{on['written']:,} | {off['billed']:,} | {on['billed']:,} | "
                f"{on['billed_vs_off']:.2f} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--window", type=int, default=40, help="max_messages when windowed")
    parser.add_argument("--step", type=int, default=30, help="context.step for 'step' runs")
    parser.add_argument("--read-rate", type=float, default=DEFAULT_READ_RATE)
    parser.add_argument("--markdown", action="store_true", help="also print a table")
    args = parser.parse_args(argv)
    args.providers = [p for p in args.providers.split(",") if p]
    unknown = sorted(set(args.providers) - set(PROVIDERS))
    if unknown:
        parser.error(f"unknown providers: {', '.join(unknown)}")
    report = asyncio.run(main_async(args))
    json.dump(report, sys.stdout, indent=2)
    print()
    if args.markdown:
        print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
