"""Provider overhead benchmark: what the runtime adds to a turn, per provider, as JSON.

    python3 benchmarks/overhead_bench.py [--turns 300] [--warmup 30] [--providers openai,...]
                                         [--synchronous NORMAL|FULL|MEMORY] [--breakdown]
                                         [--profile PROVIDER]

For each provider, side by side in one run (turns interleaved, the order flipped every
turn so neither side always runs on a warmer cache):

- ``runtime``: ``Session.send_message`` on a hybrid session from ``SessionManager``
  (SQLite in a temp dir, default middleware: none), whose stored history was pre-filled
  with 50 messages; ``context.max_messages: 50``, so every call sends system prompt + 50
  messages + the new one, and every turn makes its durable writes (pending user message,
  committed turn, session record). ``--synchronous MEMORY``: the in-memory storage
  instead of SQLite, so nothing is written durably: the difference to a SQLite run is
  what the durable writes cost.
- ``raw_sdk``: the provider's official async SDK client, called directly with the same
  shape of message list (system + the last 50 messages + the new one, kept in a Python
  list), the way an application without the runtime would.

Both talk to the same provider emulator, which runs in its own process (so its work does
not compete with the client for the GIL) and answers at once. Per provider: median and
p90 per-turn wall time for both sides, the difference of the medians in ms, and the ratio.

``--breakdown`` also times the steps of ``send_message`` and the SDK call itself on both
sides (the same clock), and each side's time outside its SDK call.

``--profile openai`` runs only the runtime side of that provider under cProfile and prints
where its time goes (cumulative, top functions), to find what the overhead is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, cast

from langswarm_runtime import SessionManager
from langswarm_runtime.session.models import Message, SessionBackend

PROVIDERS = ("openai", "anthropic", "gemini", "cohere", "mistral")
MODELS = {
    "openai": "gpt-5.5",
    "anthropic": "claude-sonnet-5-5",
    "gemini": "gemini-3.8-flash",
    "cohere": "command-a-plus-05-2026",
    "mistral": "mistral-large-latest",
    "echo": "echo-1",
}
KEY = "bench-dummy-key"
SYSTEM = "You are a concise assistant."
HISTORY = 50
CONFIG = """\
version: 1
storage: {storage}
providers:
  p:
    type: {kind}
    model: {model}
    api_key: {key}
    base_url: "{url}"
    context: {{max_messages: {history}}}
"""

RawCall = Callable[[list[dict[str, str]], str], Awaitable[str]]


# -- the emulator, in its own process ------------------------------------------------------


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "langswarm_runtime.testing.emulator", "--port", "0"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "provider emulator listening on http://127.0.0.1:N"
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


#: The SDK method each provider's call goes through, on both sides (``SdkClock``).
SDK_METHODS = {
    "openai": ("openai.resources.responses", "AsyncResponses", "create"),
    "anthropic": ("anthropic.resources.messages", "AsyncMessages", "create"),
    "gemini": ("google.genai.models", "AsyncModels", "generate_content"),
    "cohere": ("cohere.v2.client", "AsyncV2Client", "chat"),
    "mistral": ("mistralai.client.chat", "Chat", "complete_async"),
}


class SdkClock:
    """Time spent inside the provider SDK's call method, whoever calls it (``--breakdown``):
    the method is wrapped on its class, so the runtime's adapter and the raw baseline
    are timed by the same clock. ``take()`` returns the seconds since the last take."""

    def __init__(self, kind: str) -> None:
        import importlib

        module, cls_name, method = SDK_METHODS[kind]
        self.cls = getattr(importlib.import_module(module), cls_name)
        self.method = method
        self.original = getattr(self.cls, method)
        self.spent = 0.0
        original, clock = self.original, self

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                clock.spent += time.perf_counter() - t0

        setattr(self.cls, method, timed)

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent

    def remove(self) -> None:
        setattr(self.cls, self.method, self.original)


# -- raw SDK clients: the baseline ---------------------------------------------------------


def raw_client(kind: str, url: str) -> tuple[RawCall, Callable[[], Awaitable[None]]]:
    """An idiomatic direct call for each SDK (its defaults, the same timeout and retry
    count the runtime's entry uses), and how to close it."""
    model = MODELS[kind]
    if kind == "openai":
        import openai

        oa = openai.AsyncOpenAI(api_key=KEY, base_url=f"{url}/v1", timeout=60, max_retries=2)

        async def call_openai(history: list[dict[str, str]], text: str) -> str:
            items: Any = [{"role": "system", "content": SYSTEM}, *history,
                          {"role": "user", "content": text}]
            response = await oa.responses.create(model=model, input=items, store=False)
            return response.output_text

        return call_openai, oa.close
    if kind == "anthropic":
        import anthropic

        an = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, timeout=60, max_retries=2)

        async def call_anthropic(history: list[dict[str, str]], text: str) -> str:
            message = await an.messages.create(
                model=model, max_tokens=1024, system=SYSTEM,
                messages=cast(Any, [*history, {"role": "user", "content": text}]),
            )
            return "".join(b.text for b in message.content if b.type == "text")

        return call_anthropic, an.close
    if kind == "gemini":
        from google import genai

        ge = genai.Client(api_key=KEY, http_options={"base_url": url, "api_version": "v1beta",
                                                     "timeout": 60_000})

        async def call_gemini(history: list[dict[str, str]], text: str) -> str:
            contents = [
                {"role": "model" if m["role"] == "assistant" else "user",
                 "parts": [{"text": m["content"]}]}
                for m in [*history, {"role": "user", "content": text}]
            ]
            response = await ge.aio.models.generate_content(
                model=model, contents=cast(Any, contents),
                config={"system_instruction": SYSTEM,
                        "automatic_function_calling": {"disable": True}},
            )
            return response.text or ""

        return call_gemini, ge.aio.aclose
    if kind == "cohere":
        import cohere

        co = cohere.AsyncClientV2(api_key=KEY, base_url=url, timeout=60)

        async def call_cohere(history: list[dict[str, str]], text: str) -> str:
            response = await co.chat(
                model=model,
                messages=cast(Any, [{"role": "system", "content": SYSTEM}, *history,
                                    {"role": "user", "content": text}]),
                request_options={"max_retries": 2},
            )
            return "".join(c.text for c in response.message.content or [] if c.type == "text")

        async def close_cohere() -> None:
            await co._client_wrapper.httpx_client.httpx_client.aclose()

        return call_cohere, close_cohere
    if kind == "mistral":
        from mistralai.client import Mistral

        mi = Mistral(api_key=KEY, server_url=url, timeout_ms=60_000)

        async def call_mistral(history: list[dict[str, str]], text: str) -> str:
            response = await mi.chat.complete_async(
                model=model,
                messages=cast(Any, [{"role": "system", "content": SYSTEM}, *history,
                                    {"role": "user", "content": text}]),
            )
            message = response.choices[0].message
            content = message.content if message is not None else None
            return content if isinstance(content, str) else ""

        async def close_mistral() -> None:
            await mi.__aexit__(None, None, None)  # type: ignore[no-untyped-call]

        return call_mistral, close_mistral
    raise ValueError(f"unknown provider {kind!r}")


def prefill() -> list[dict[str, str]]:
    """50 alternating messages of about the size the emulator's echo replies have."""
    out = []
    for i in range(HISTORY // 2):
        out.append({"role": "user", "content": f"question {i}: what about item {i}?"})
        out.append({"role": "assistant", "content": f"echo: question {i} [earlier: {2 * i}]"})
    return out


# -- one provider --------------------------------------------------------------------------


async def runtime_session(kind: str, url: str, tmp: Path, sync: str) -> tuple[Any, Any]:
    cfg = tmp / f"{kind}.yaml"
    # sync "MEMORY": the in-memory storage (no durable writes), to tell what the
    # storage costs from what the rest of the runtime does.
    storage = ("{type: memory}" if sync == "MEMORY" else
               f'{{type: sqlite, path: "{tmp / f"{kind}.db"}", synchronous: {sync}}}')  # fmt: skip
    cfg.write_text(CONFIG.format(storage=storage, kind=kind, model=MODELS[kind], key=KEY,
                                 url=url, history=HISTORY), encoding="utf-8")  # fmt: skip
    manager = SessionManager.from_config(cfg)
    session = await manager.create_session(
        user_id="bench", provider="p", backend=SessionBackend.HYBRID, system_prompt=SYSTEM
    )
    await manager.storage.append_messages(
        session.session_id, [Message(role=cast(Any, m["role"]), content=m["content"]) for m in prefill()]
    )
    return manager, session


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench_provider(
    kind: str, url: str, turns: int, warmup: int, sync: str, breakdown: bool = False
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lsw-overhead-") as tmpdir:
        manager, session = await runtime_session(kind, url, Path(tmpdir), sync)
        # Before the raw client exists: some SDK clients bind their call method at init.
        clock = SdkClock(kind) if breakdown else None
        call, close = raw_client(kind, url)
        history = prefill()
        times: dict[str, list[float]] = {"runtime": [], "raw_sdk": []}
        cpus: dict[str, list[float]] = {"runtime": [], "raw_sdk": []}

        async def run_runtime(text: str) -> tuple[float, float]:
            c0, t0 = time.process_time(), time.perf_counter()
            reply = await session.send_message(text)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert reply.content.startswith("echo: "), reply.content
            return elapsed, cpu

        async def run_raw(text: str) -> tuple[float, float]:
            c0, t0 = time.process_time(), time.perf_counter()
            answer = await call(history[-HISTORY:], text)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert answer.startswith("echo: "), answer
            history.extend([{"role": "user", "content": text},
                            {"role": "assistant", "content": answer}])
            return elapsed, cpu

        phases = Phases(session) if breakdown else None
        in_sdk: dict[str, list[float]] = {"runtime": [], "raw_sdk": []}
        try:
            for i in range(warmup + turns):
                if phases and i == warmup:
                    phases.reset()
                text = f"question {HISTORY // 2 + i}: what about item {i}?"
                order = [("runtime", run_runtime), ("raw_sdk", run_raw)]
                for side, fn in order if i % 2 == 0 else reversed(order):
                    if clock:
                        clock.take()
                    elapsed, cpu = await fn(text)
                    spent = clock.take() if clock else 0.0
                    if i >= warmup:
                        times[side].append(elapsed)
                        cpus[side].append(cpu)
                        in_sdk[side].append(spent)
            stored = len(await session.get_history())
        finally:
            if phases:
                phases.remove()
            if clock:
                clock.remove()
            await close()
            await manager.close()
    assert stored == HISTORY + 2 * (warmup + turns)
    result: dict[str, Any] = {}
    for side, values in times.items():
        result[side] = {"median_ms": _ms(statistics.median(values)),
                        "p90_ms": _ms(_pct(values, 0.9)),
                        "cpu_median_ms": _ms(statistics.median(cpus[side]))}
    med_rt, med_raw = result["runtime"]["median_ms"], result["raw_sdk"]["median_ms"]
    result["added_ms"] = round(med_rt - med_raw, 3)
    result["added_p90_ms"] = round(result["runtime"]["p90_ms"] - result["raw_sdk"]["p90_ms"], 3)
    # Turns run in pairs (runtime, raw) close in time: the median of the pairwise
    # differences is less sensitive to load drift on a shared machine than med - med.
    result["added_paired_median_ms"] = _ms(
        statistics.median(a - b for a, b in zip(times["runtime"], times["raw_sdk"]))
    )
    result["added_cpu_ms"] = round(
        result["runtime"]["cpu_median_ms"] - result["raw_sdk"]["cpu_median_ms"], 3
    )
    result["ratio"] = round(med_rt / med_raw, 3)
    if phases:
        result["runtime_phases_median_ms"] = phases.summary()
        # The same SDK method on both sides: equal figures mean the SDK's own work is
        # not what the runtime adds; "outside" is each side's turn minus its SDK call.
        result["sdk_call_median_ms"] = {k: _ms(statistics.median(v)) for k, v in in_sdk.items()}
        result["outside_sdk_median_ms"] = {
            k: _ms(statistics.median(t - s for t, s in zip(times[k], in_sdk[k], strict=True)))
            for k in times
        }
    return result


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


class Phases:
    """Wall time of each step of ``Session.send_message``, by wrapping the session's
    step methods on this one session object (``--breakdown``; adds a few µs per step).

    ``begin``: validation, outgoing middleware, durable pending record; ``context``:
    building the request, i.e. reading and cutting the stored history; ``provider``: the
    adapter (request mapping, SDK, HTTP, reply mapping); ``finish``: the atomic commit of
    the turn and the session record update (the incoming chain runs just before it).
    ``pending_write`` and ``commit_write``: the storage calls alone inside ``begin`` and
    ``finish`` (the durable writes)."""

    STEPS: ClassVar[dict[str, str]] = {"begin": "_begin", "context": "_build_request", "finish": "_commit"}

    def __init__(self, session: Any) -> None:
        self.session = session
        self.samples: dict[str, list[float]] = {}
        for phase, attr in self.STEPS.items():
            setattr(session, attr, self._timed(phase, getattr(session, attr)))
        provider = session._provider
        provider.send = self._timed("provider", provider.send)
        self.provider = provider
        storage = self.storage = session._storage
        storage.append_messages = self._timed("pending_write", storage.append_messages)
        storage.commit_turn = self._timed("commit_write", storage.commit_turn)

    def _timed(self, phase: str, fn: Callable[..., Awaitable[Any]]) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.samples.setdefault(phase, []).append(time.perf_counter() - t0)

        return timed

    def reset(self) -> None:
        self.samples.clear()

    def remove(self) -> None:
        for attr in self.STEPS.values():
            self.session.__dict__.pop(attr, None)
        self.provider.__dict__.pop("send", None)
        self.storage.__dict__.pop("append_messages", None)
        self.storage.__dict__.pop("commit_turn", None)

    def summary(self) -> dict[str, float]:
        return {k: _ms(statistics.median(v)) for k, v in self.samples.items()}


async def core_turns(url: str, turns: int, warmup: int, sync: str) -> dict[str, Any]:
    """``send_message`` on the offline echo provider: the runtime's own per-turn cost
    (middleware, storage, context, record) with no SDK and no network in the way."""
    with tempfile.TemporaryDirectory(prefix="lsw-overhead-") as tmpdir:
        manager, session = await runtime_session("echo", url, Path(tmpdir), sync)
        times: list[float] = []
        cpus: list[float] = []
        try:
            for i in range(warmup + turns):
                c0, t0 = time.process_time(), time.perf_counter()
                await session.send_message(f"question {i}: what about item {i}?")
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
        finally:
            await manager.close()
    return {"median_ms": _ms(statistics.median(times)), "p90_ms": _ms(_pct(times, 0.9)),
            "cpu_median_ms": _ms(statistics.median(cpus))}


def _bucket(filename: str, name: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    if "sqlite3" in name:
        return "sqlite3 (C calls: execute, commit, fetch)"
    if "pydantic" in filename or "validate_python" in name or "model_copy" in name:
        return "pydantic (model build/copy/validate)"
    if "langswarm_runtime/session/storage" in filename:
        return "runtime: storage module (Python side)"
    if "langswarm_runtime/session/context" in filename:
        return "runtime: context selection"
    if "langswarm_runtime/session/middleware" in filename:
        return "runtime: middleware chain"
    if "langswarm_runtime/providers" in filename:
        return "runtime: provider adapter"
    if "langswarm_runtime" in filename:
        return "runtime: session/other"
    if "asyncio" in filename or "selectors" in filename or "epoll" in name:
        return "asyncio event loop"
    if "json" in filename or "json" in name:
        return "json"
    if "site-packages" in filename:
        return "SDK / httpx"
    return "other (stdlib, builtins)"


async def profile_runtime(kind: str, url: str, turns: int, warmup: int, sync: str) -> str:
    """cProfile of ``turns`` runtime turns (after ``warmup``): self time grouped by part
    of the stack, then the top functions by cumulative time."""
    with tempfile.TemporaryDirectory(prefix="lsw-overhead-") as tmpdir:
        manager, session = await runtime_session(kind, url, Path(tmpdir), sync)
        try:
            for i in range(warmup):
                await session.send_message(f"warm {i}")
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(turns):
                await session.send_message(f"question {i}")
            profiler.disable()
        finally:
            await manager.close()
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = {}
    for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        groups[_bucket(filename, name)] = groups.get(_bucket(filename, name), 0.0) + row[2]
    total = sum(groups.values())
    out = io.StringIO()
    out.write(f"self time per turn by part of the stack ({kind}, {turns} turns, profiled):\n")
    for group, secs in sorted(groups.items(), key=lambda kv: -kv[1]):
        out.write(f"  {secs / turns * 1e3:8.3f} ms  {100 * secs / total:5.1f} %  {group}\n")
    out.write(f"  {total / turns * 1e3:8.3f} ms  total\n\n")
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL", "MEMORY"],
                        help="SQLite's level, or MEMORY: the in-memory storage instead")
    parser.add_argument("--profile", metavar="PROVIDER", help="cProfile the runtime side only")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each step of send_message (adds a few µs)")
    args = parser.parse_args()
    os.environ.setdefault("LANGSWARM_LOAD_PLUGINS", "")  # built-ins only, like the tests
    proc, url = start_emulator()
    try:
        if args.profile:
            print(asyncio.run(profile_runtime(args.profile, f"{url}/{args.profile}",
                                              args.turns, args.warmup, args.synchronous)))
            return
        results = {}
        for kind in args.providers.split(","):
            results[kind] = asyncio.run(
                bench_provider(kind, f"{url}/{kind}", args.turns, args.warmup,
                               args.synchronous, args.breakdown)
            )
            print(f"{kind}: {json.dumps(results[kind])}", file=sys.stderr)
        core = asyncio.run(core_turns(url, args.turns, args.warmup, args.synchronous))
        print(f"echo (runtime core): {json.dumps(core)}", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(json.dumps({
        "benchmark": "provider_overhead",
        "turns": args.turns, "warmup": args.warmup, "history": HISTORY,
        "sqlite_synchronous": args.synchronous,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "results": results,
        "runtime_core_echo": core,
    }, indent=2))


if __name__ == "__main__":
    main()
