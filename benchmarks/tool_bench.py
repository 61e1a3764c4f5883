"""Tool-loop benchmark: what the runtime adds per tool round, per provider, as JSON.

    python3 benchmarks/tool_bench.py [--turns 60] [--warmup 10] [--providers openai,...]
                                     [--media]

A turn here is a 3-round tool turn: the user asks for tool ``step`` (``call step {"n": 1}``,
the emulator's rule), the tool's result asks the model for the next step (the chain
rule), and after the third result the model answers in text: four model calls, three
tool runs. For each provider, side by side in one run (turns interleaved, the order
flipped every turn):

- ``runtime``: ``Session.send_message`` on a hybrid session (SQLite in a temp dir), the
  tool given as a ``@tool`` function: every step is written durably as it happens and
  the turn is committed whole.
- ``raw_loop``: the provider's official async SDK and a hand-written loop (offer the
  tool, run each call, append the result, call again), history in a Python list cut to
  the same window the runtime sends (its default ``max_messages: 200``: 25 whole turns).

The emulator runs in its own process. Per provider: median per-turn wall time of both
sides, and the runtime's added time per round ((runtime - raw) / 3). Target: at most
1 ms per round.

``--breakdown``: also where each side's turn goes (medians per turn, ms): the time inside
the SDK's call method (the same clock on both sides), and on the runtime side its durable
writes (``_write`` of the SQLite storage: the pending steps and the commit), the tool runs,
building the requests, the adapters' own work (their ``send`` minus the SDK call) and the
rest of ``send_message``. ``--async-tool``: the tool as an ``async def`` (run on the event
loop) instead of a plain function (run on a worker thread).

``--media``: the blob store instead: one 1 MiB image sent in 1,000 turns of one session
(SQLite), and the growth of the database file (target: about 1 MiB, not 1 GiB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead_bench import KEY, MODELS, SdkClock, start_emulator

from langswarm_runtime import SessionManager
from langswarm_runtime.session.models import SessionBackend
from langswarm_runtime.tools import tool

PROVIDERS = ("openai", "anthropic", "gemini", "cohere", "mistral")
ROUNDS = 3
#: Both sides send the same history: the runtime's default window (max_messages 200) holds
#: the last 25 whole turns of 8 messages; the raw loop keeps the same 200 entries.
WINDOW = 200
CONFIG = """\
version: 1
storage: {{type: sqlite, path: "{db}"}}
providers:
  p: {{type: {kind}, model: {model}, api_key: {key}, base_url: "{url}"}}
"""
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
DESCRIPTION = "One step of a job; its result says what to do next."


def step_result(n: int) -> str:
    return f'call step {{"n": {n + 1}}}' if n < ROUNDS else "done"


@tool
def step(n: int) -> str:
    """One step of a job; its result says what to do next."""
    return step_result(n)


@tool(name="step")
async def async_step(n: int) -> str:
    """One step of a job; its result says what to do next."""
    return step_result(n)


class Breakdown:
    """Where a runtime turn's time goes (``--breakdown``), by wrapping the session's
    storage, tool runner, request builder and adapter on these objects only."""

    PARTS = ("writes", "tools", "request", "adapter")

    def __init__(self, kind: str, session: Any, storage: Any) -> None:
        import langswarm_runtime.session.session as session_module

        self.clock = SdkClock(kind)
        self.spent: dict[str, float] = dict.fromkeys(self.PARTS, 0.0)
        self.module = session_module
        self.run_tool_calls = session_module.run_tool_calls
        self.undo: list[tuple[Any, str]] = [(storage, "_write"), (session, "_build_request"),
                                           (session._provider, "send")]  # fmt: skip
        self._wrap(storage, "_write", "writes")
        self._wrap(session, "_build_request", "request")
        self._wrap(session._provider, "send", "adapter")
        session_module.run_tool_calls = self._timed(self.run_tool_calls, "tools")  # type: ignore[assignment]

    def _timed(self, fn: Callable[..., Awaitable[Any]], part: str) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - t0

        return timed

    def _wrap(self, obj: Any, name: str, part: str) -> None:
        setattr(obj, name, self._timed(getattr(obj, name), part))

    def take(self, total: float) -> dict[str, float]:
        """This turn's parts (seconds), then start over."""
        sdk = self.clock.take()
        parts = {"sdk": sdk, **self.spent}
        parts["adapter"] -= sdk  # the adapter's own work around the SDK call
        parts["rest"] = total - sum(parts.values())
        self.spent = dict.fromkeys(self.PARTS, 0.0)
        return parts

    def remove(self) -> None:
        self.clock.remove()
        self.module.run_tool_calls = self.run_tool_calls  # type: ignore[assignment]
        for obj, name in self.undo:
            obj.__dict__.pop(name, None)


RawTurn = Callable[[str], Awaitable[str]]


def raw_loop(kind: str, url: str) -> tuple[RawTurn, Callable[[], Awaitable[None]]]:
    """A hand-written tool loop with the official SDK (the baseline), and its close."""
    model = MODELS[kind]
    if kind == "openai":
        import openai

        oa = openai.AsyncOpenAI(api_key=KEY, base_url=f"{url}/v1", timeout=60, max_retries=2)
        tools: Any = [{"type": "function", "name": "step", "description": DESCRIPTION,
                       "parameters": SCHEMA, "strict": False}]  # fmt: skip
        items: list[Any] = []

        async def turn_openai(text: str) -> str:
            del items[:-WINDOW]
            items.append({"role": "user", "content": text})
            while True:
                r = await oa.responses.create(model=model, input=items, tools=tools, store=False)
                calls = [o for o in r.output if o.type == "function_call"]
                if not calls:
                    items.append({"role": "assistant", "content": r.output_text})
                    return r.output_text
                for c in calls:
                    items.append({"type": "function_call", "call_id": c.call_id,
                                  "name": c.name, "arguments": c.arguments})  # fmt: skip
                    out = step_result(json.loads(c.arguments)["n"])
                    items.append({"type": "function_call_output", "call_id": c.call_id,
                                  "output": out})  # fmt: skip

        return turn_openai, oa.close
    if kind == "anthropic":
        import anthropic

        an = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, timeout=60, max_retries=2)
        a_tools: Any = [{"name": "step", "description": DESCRIPTION, "input_schema": SCHEMA}]
        a_messages: list[Any] = []

        async def turn_anthropic(text: str) -> str:
            del a_messages[:-WINDOW]
            a_messages.append({"role": "user", "content": text})
            while True:
                m = await an.messages.create(model=model, max_tokens=1024, tools=a_tools,
                                             messages=a_messages)  # fmt: skip
                a_messages.append({"role": "assistant",
                                   "content": [b.model_dump() for b in m.content]})  # fmt: skip
                uses = [b for b in m.content if b.type == "tool_use"]
                if not uses:
                    return "".join(b.text for b in m.content if b.type == "text")
                a_messages.append({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": b.id,
                     "content": step_result(cast(Any, b.input)["n"])} for b in uses
                ]})  # fmt: skip

        return turn_anthropic, an.close
    if kind == "gemini":
        from google import genai

        ge = genai.Client(api_key=KEY, http_options={"base_url": url, "api_version": "v1beta",
                                                     "timeout": 60_000})  # fmt: skip
        g_tools: Any = [{"function_declarations": [
            {"name": "step", "description": DESCRIPTION, "parameters_json_schema": SCHEMA}]}]
        contents: list[Any] = []

        async def turn_gemini(text: str) -> str:
            del contents[:-WINDOW]
            contents.append({"role": "user", "parts": [{"text": text}]})
            while True:
                r = await ge.aio.models.generate_content(
                    model=model, contents=contents,
                    config={"tools": g_tools, "automatic_function_calling": {"disable": True}},
                )  # fmt: skip
                content = r.candidates[0].content if r.candidates else None
                parts = list(content.parts or []) if content is not None else []
                contents.append({"role": "model",
                                 "parts": [p.model_dump(exclude_none=True) for p in parts]})
                calls = [p.function_call for p in parts if p.function_call]
                if not calls:
                    return r.text or ""
                contents.append({"role": "user", "parts": [
                    {"function_response": {"name": c.name, "id": c.id, "response": {
                        "output": step_result(int((c.args or {})["n"]))}}} for c in calls
                ]})  # fmt: skip

        return turn_gemini, ge.aio.aclose
    if kind in ("cohere", "mistral"):
        chat_tools: Any = [{"type": "function", "function": {
            "name": "step", "description": DESCRIPTION, "parameters": SCHEMA}}]
        messages: list[Any] = []
        if kind == "cohere":
            import cohere

            co = cohere.AsyncClientV2(api_key=KEY, base_url=url, timeout=60)

            async def chat(msgs: list[Any]) -> tuple[str, list[Any]]:
                r = await co.chat(model=model, messages=msgs, tools=chat_tools)
                text = "".join(c.text for c in r.message.content or [] if c.type == "text")
                return text, list(r.message.tool_calls or [])

            async def close() -> None:
                await co._client_wrapper.httpx_client.httpx_client.aclose()
        else:
            from mistralai.client import Mistral

            mi = Mistral(api_key=KEY, server_url=url, timeout_ms=60_000)

            async def chat(msgs: list[Any]) -> tuple[str, list[Any]]:
                r = await mi.chat.complete_async(model=model, messages=msgs, tools=chat_tools)
                message = r.choices[0].message
                content = message.content if message is not None else None
                calls = list(message.tool_calls or []) if message is not None else []
                return (content if isinstance(content, str) else ""), calls

            async def close() -> None:
                await mi.__aexit__(None, None, None)  # type: ignore[no-untyped-call]

        async def turn_chat(text: str) -> str:
            del messages[:-WINDOW]
            messages.append({"role": "user", "content": text})
            while True:
                answer, calls = await chat(messages)
                if not calls:
                    messages.append({"role": "assistant", "content": answer})
                    return answer
                messages.append({"role": "assistant", "tool_calls": [
                    {"id": c.id, "type": "function", "function": {
                        "name": c.function.name, "arguments": c.function.arguments}}
                    for c in calls]})  # fmt: skip
                for c in calls:
                    n = json.loads(c.function.arguments)["n"]
                    messages.append({"role": "tool", "tool_call_id": c.id,
                                     "content": step_result(n)})  # fmt: skip

        return turn_chat, close
    raise ValueError(f"unknown provider {kind!r}")


async def bench_provider(
    kind: str, url: str, turns: int, warmup: int, breakdown: bool = False,
    async_tool: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lsw-tools-") as tmpdir:
        cfg = Path(tmpdir) / "swarm.yaml"
        cfg.write_text(CONFIG.format(db=Path(tmpdir) / "s.db", kind=kind, model=MODELS[kind],
                                     key=KEY, url=url), encoding="utf-8")  # fmt: skip
        manager = SessionManager.from_config(cfg)
        session = await manager.create_session(
            user_id="bench", provider="p", backend=SessionBackend.HYBRID,
            tools=[async_step if async_tool else step],
        )
        # Before the raw client exists: some SDK clients bind their call method at init.
        split = Breakdown(kind, session, manager.storage) if breakdown else None
        raw, close = raw_loop(kind, url)
        times: dict[str, list[float]] = {"runtime": [], "raw_loop": []}
        parts: dict[str, list[dict[str, float]]] = {"runtime": [], "raw_loop": []}
        expected = "tool step returned done"

        async def run_runtime(text: str) -> float:
            t0 = time.perf_counter()
            reply = await session.send_message(text)
            elapsed = time.perf_counter() - t0
            assert reply.content == expected, reply.content
            return elapsed

        async def run_raw(text: str) -> float:
            t0 = time.perf_counter()
            answer = await raw(text)
            elapsed = time.perf_counter() - t0
            assert answer == expected, answer
            return elapsed

        try:
            for i in range(warmup + turns):
                order = [("runtime", run_runtime), ("raw_loop", run_raw)]
                for side, fn in order if i % 2 == 0 else reversed(order):
                    elapsed = await fn('call step {"n": 1}')
                    if split:
                        turn_parts = split.take(elapsed)
                        if side == "raw_loop":  # only the SDK clock ran
                            turn_parts = {"sdk": turn_parts["sdk"],
                                          "rest": elapsed - turn_parts["sdk"]}  # fmt: skip
                        if i >= warmup:
                            parts[side].append(turn_parts)
                    if i >= warmup:
                        times[side].append(elapsed)
            stored = len(await session.get_history())
        finally:
            if split:
                split.remove()
            await close()
            await manager.close()
    assert stored == (warmup + turns) * (2 + 2 * ROUNDS), stored
    med = {side: statistics.median(v) * 1e3 for side, v in times.items()}
    paired = statistics.median(a - b for a, b in zip(times["runtime"], times["raw_loop"]))
    result: dict[str, Any] = {
        "runtime_median_ms": round(med["runtime"], 3),
        "raw_loop_median_ms": round(med["raw_loop"], 3),
        "added_per_round_ms": round((med["runtime"] - med["raw_loop"]) / ROUNDS, 3),
        "added_per_round_paired_ms": round(paired * 1e3 / ROUNDS, 3),
    }
    if split:
        result["breakdown_median_ms_per_turn"] = {
            side: {k: round(statistics.median(p[k] for p in rows) * 1e3, 3) for k in rows[0]}
            for side, rows in parts.items()
        }
    return result


async def bench_media(turns: int = 1000) -> dict[str, Any]:
    from langswarm_runtime import SQLiteSessionStorage
    from langswarm_runtime.session.parts import ImagePart

    image = ImagePart.from_bytes(os.urandom(1024 * 1024), "image/png")
    with tempfile.TemporaryDirectory(prefix="lsw-media-") as tmpdir:
        db = Path(tmpdir) / "s.db"
        manager = SessionManager(storage=SQLiteSessionStorage(db_path=str(db)))
        session = await manager.create_session(user_id="bench", provider="echo")
        await session.send_message("warm up")
        await manager.storage._call(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)"))  # type: ignore[attr-defined]
        before = db.stat().st_size
        t0 = time.perf_counter()
        for i in range(turns):
            await session.send_message([f"look {i}", image])
        elapsed = time.perf_counter() - t0
        await manager.storage._call(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)"))  # type: ignore[attr-defined]
        after = db.stat().st_size
        await manager.close()
    return {
        "turns": turns,
        "image_bytes": 1024 * 1024,
        "db_growth_bytes": after - before,
        "growth_per_turn_bytes": round((after - before - 1024 * 1024) / turns, 1),
        "turn_median_ms": round(elapsed / turns * 1e3, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--media", action="store_true")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the parts of each turn (adds a few us)")
    parser.add_argument("--async-tool", action="store_true",
                        help="the tool as an async def, run on the event loop")
    args = parser.parse_args()
    if args.media:
        print(json.dumps({"media": await bench_media()}, indent=2))
        return
    proc, url = start_emulator()
    try:
        results = {}
        for kind in args.providers.split(","):
            results[kind] = await bench_provider(kind, f"{url}/{kind}", args.turns, args.warmup,
                                                 args.breakdown, args.async_tool)
            print(f"{kind}: {results[kind]}", file=sys.stderr)
    finally:
        proc.kill()
    print(json.dumps({"rounds_per_turn": ROUNDS, "async_tool": args.async_tool,
                      "providers": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
