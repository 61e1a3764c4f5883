"""The tool loop, caller-run tools, media and structured output through the session
pipeline, on the offline provider (it follows the emulator's rules) and real SQLite
files. Each provider's wire is checked by its own ProviderConformance suite."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from langswarm_runtime import (
    InvalidMessage,
    Message,
    MessageStatus,
    MessageTooLarge,
    ProviderBadResponse,
    SessionManager,
    SQLiteSessionStorage,
)
from langswarm_runtime.errors import ToolResultsOwed, ToolRoundsExceeded
from langswarm_runtime.providers.base import ContextConfig
from langswarm_runtime.providers.portable import for_provider, rewrite_call_id
from langswarm_runtime.session.context import select_context
from langswarm_runtime.session.parts import (
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.session.storage.memory import MemorySessionStorage
from langswarm_runtime.tools import ToolSpec, tool

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
calls_seen: list[str] = []


@tool
async def weather(city: str) -> str:
    """Current weather for a city."""
    calls_seen.append(city)
    return f"Sunny in {city}"


@tool
async def slow(seconds: float) -> str:
    """Sleeps."""
    await asyncio.sleep(seconds)
    return "woke"


def _manager(db: Path, **defaults: Any) -> SessionManager:
    from langswarm_runtime.config import build_config

    config, plugins = build_config({"version": 1, "storage": {"type": "memory"},
                                    "defaults": defaults})  # fmt: skip
    return SessionManager(storage=SQLiteSessionStorage(db_path=str(db)), config=config,
                          plugins=plugins)  # fmt: skip


def _shape(history: list[Message]) -> list[tuple[str, ...]]:
    return [(m.role, *(p.type for p in m.parts)) if m.parts else (m.role, "text")
            for m in history]  # fmt: skip


async def test_runtime_runs_tools_until_the_model_answers(tmp_path: Path) -> None:
    async with _manager(tmp_path / "s.db") as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[weather])
        both = 'call weather {"city": "Rome"}\ncall weather {"city": "Oslo"}'
        reply = await session.send_message(both)
        assert reply.content == "tool weather returned Sunny in Rome; tool weather returned Sunny in Oslo"
        history = await session.get_history()
    assert _shape(history) == [
        ("user", "text"), ("assistant", "tool_call", "tool_call"),
        ("tool", "tool_result", "tool_result"), ("assistant", "text"),
    ]  # fmt: skip
    calls, results = history[1].tool_calls, history[2].tool_results
    assert [r.call_id for r in results] == [c.id for c in calls]
    assert [r.name for r in results] == ["weather", "weather"]
    assert session.tools == [weather.spec]


@tool
async def step(n: int) -> str:
    """One step of a job; its result asks for the next."""
    return f'call step {{"n": {n + 1}}}' if n < 3 else "done"


async def test_each_step_of_a_turn_is_made_portable_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool turn sends its earlier steps again on every call; each is translated for
    the provider once (then kept by object), not once per call. Then, committed, once
    more by seq, and never again on later turns."""
    from langswarm_runtime.providers import portable

    translated: list[str] = []
    real = portable.for_provider

    def counting(messages: list[Message], **kwargs: Any) -> list[Message]:
        translated.extend(m.role for m in messages)
        return real(messages, **kwargs)

    monkeypatch.setattr(portable, "for_provider", counting)
    async with _manager(tmp_path / "s.db") as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[step],
                                           backend="hybrid")  # fmt: skip
        reply = await session.send_message('call step {"n": 1}')
        assert reply.content == "tool step returned done"
        # 3 rounds: 3 assistant calls + 3 tool results, each once (was 2 + 4 + 6).
        assert sorted(translated) == ["assistant"] * 3 + ["tool"] * 3
        translated.clear()
        await session.send_message('call step {"n": 3}')
        # The previous turn's 6 committed steps, now by seq, and this turn's 2 steps.
        assert sorted(translated) == ["assistant"] * 4 + ["tool"] * 4
        translated.clear()
        await session.send_message("hello")
        assert sorted(translated) == ["assistant"] + ["tool"]  # only the last turn's
        assert len(await session.get_history()) == 8 + 4 + 2


async def test_parallel_calls_run_concurrently(tmp_path: Path) -> None:
    async with _manager(tmp_path / "s.db") as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[slow])
        lines = "\n".join('call slow {"seconds": 0.4}' for _ in range(5))
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await session.send_message(lines)
        elapsed = loop.time() - started
    assert reply.content.count("returned woke") == 5
    assert elapsed < 1.5, f"5 calls of 0.4 s took {elapsed:.2f} s: not concurrent"


async def test_tool_timeout_and_bad_arguments_go_back_to_the_model(tmp_path: Path) -> None:
    async with _manager(tmp_path / "s.db", tool_timeout=0.2) as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[slow, weather])
        reply = await session.send_message('call slow {"seconds": 5}')
        assert reply.content == "tool slow returned tool slow timed out after 0.2s"
        reply = await session.send_message('call weather {"town": "Paris"}')
        assert reply.content.startswith("tool weather returned invalid arguments: city")
        history = await session.get_history()
    assert [r.is_error for m in history for r in m.tool_results] == [True, True]


async def test_max_tool_rounds_fails_the_turn_and_keeps_its_steps(tmp_path: Path) -> None:
    @tool
    def again() -> str:
        """Asks to be called again."""
        return "call again"

    async with _manager(tmp_path / "s.db", max_tool_rounds=2) as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[again])
        await session.send_message("kept")
        # A result that reads "call again" makes the model call again (the chain rule).
        with pytest.raises(ToolRoundsExceeded, match="2 rounds"):
            await session.send_message("call again")
        everything = await session.get_history(include_failed=True)
        failed = [m for m in everything if m.status is MessageStatus.FAILED]
        assert [m.role for m in failed] == ["user", "assistant", "tool", "assistant", "tool",
                                            "assistant"]  # fmt: skip
        assert [m.content for m in await session.get_history()] == [
            "kept", "echo: kept [earlier messages: 0]"
        ]
        reply = await session.send_message("after")
        assert reply.content == "echo: after [earlier messages: 2]"  # no failed step sent


async def test_caller_run_tool_waits_across_restart(tmp_path: Path) -> None:
    lookup = ToolSpec(name="lookup", description="Caller's table.")
    db = tmp_path / "s.db"
    async with _manager(db) as mgr:
        session = await mgr.create_session(user_id="u", provider="echo")
        reply = await session.send_message('call lookup {"key": "a"}', tools=[lookup])
        [call] = reply.tool_calls
        sid = session.session_id
    async with _manager(db) as mgr:
        again = await mgr.get_session(sid)
        assert again is not None and again.tools == [lookup]
        assert [c.id for c in await again.open_tool_calls()] == [call.id]
        with pytest.raises(ToolResultsOwed) as info:
            await again.send_message("next")
        assert info.value.call_ids == [call.id] and call.id in str(info.value)
        with pytest.raises(ToolResultsOwed, match="exactly the open tool calls"):
            await again.send_tool_results([ToolResult(call_id="nope", content="x")])
        final = await again.send_tool_results([ToolResult(call_id=call.id, content="42")])
        assert final.content == "tool lookup returned 42"
        assert await again.open_tool_calls() == []
        with pytest.raises(ToolResultsOwed, match="no tool calls"):
            await again.send_tool_results([ToolResult(call_id=call.id, content="42")])
        history = await again.get_history()
    assert _shape(history) == [("user", "text"), ("assistant", "tool_call"),
                               ("tool", "tool_result"), ("assistant", "text")]  # fmt: skip


async def test_mixed_round_runs_ours_and_returns_the_callers(tmp_path: Path) -> None:
    lookup = ToolSpec(name="lookup")
    async with _manager(tmp_path / "s.db") as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[weather, lookup])
        reply = await session.send_message('call weather {"city": "Rome"}\ncall lookup {}')
        assert [c.name for c in reply.tool_calls] == ["lookup"]  # ours already ran
        final = await session.send_tool_results(
            [ToolResult(call_id=reply.tool_calls[0].id, content="7")]
        )
        # The model gets the whole round's results (ours went out with the caller's).
        assert final.content == "tool weather returned Sunny in Rome; tool lookup returned 7"
        history = await session.get_history()
    assert _shape(history) == [
        ("user", "text"), ("assistant", "tool_call", "tool_call"), ("tool", "tool_result"),
        ("tool", "tool_result"), ("assistant", "text"),
    ]  # fmt: skip


async def test_hydrated_session_gets_implementations_from_code(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with _manager(db) as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[weather])
        sid = session.session_id
    async with _manager(db) as mgr:  # no implementation given: the call goes to the caller
        bare = await mgr.get_session(sid)
        assert bare is not None
        reply = await bare.send_message('call weather {"city": "Bern"}')
        [call] = reply.tool_calls
        await bare.send_tool_results([ToolResult(call_id=call.id, content="cloudy")])
    async with _manager(db) as mgr:
        again = await mgr.get_session(sid, tools=[weather])
        assert again is not None
        reply = await again.send_message('call weather {"city": "Bern"}')
        assert reply.content == "tool weather returned Sunny in Bern"


async def test_stream_events_in_order(tmp_path: Path) -> None:
    async with _manager(tmp_path / "s.db") as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[weather])
        events = [e async for e in session.stream_events('call weather {"city": "Lima"}')]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-1] == "done"
    assert set(kinds[2:-1]) == {"text"}
    assert "".join(e.text for e in events) == events[-1].message.content  # type: ignore[union-attr]
    assert events[1].result.call_id == events[0].call.id  # type: ignore[union-attr]


def _killed_mid_loop(db: str, marker: str) -> None:
    async def run() -> None:
        @tool
        async def hang() -> str:
            """Hangs."""
            Path(marker).write_text("in the tool")
            await asyncio.sleep(60)
            return "never"

        async with _manager(Path(db)) as mgr:
            session = await mgr.get_session("placeholder") or await mgr.create_session(
                user_id="u", provider="echo", tools=[hang, weather]
            )
            Path(marker + ".sid").write_text(session.session_id)
            await session.send_message('call weather {"city": "Oslo"}')
            await session.send_message("call weather {\"city\": \"Rome\"}\ncall hang {}")

    asyncio.run(run())


async def test_sigkill_mid_loop_keeps_every_step_and_no_half_turn(tmp_path: Path) -> None:
    import multiprocessing

    db, marker = str(tmp_path / "s.db"), str(tmp_path / "marker")
    proc = multiprocessing.get_context("spawn").Process(target=_killed_mid_loop, args=(db, marker))
    proc.start()
    for _ in range(300):
        if os.path.exists(marker):
            break
        await asyncio.sleep(0.05)
    assert os.path.exists(marker), "the child never reached the tool"
    assert proc.pid is not None
    os.kill(proc.pid, 9)
    proc.join(10)
    sid = Path(marker + ".sid").read_text()
    async with _manager(Path(db)) as mgr:
        session = await mgr.get_session(sid, tools=[weather])
        assert session is not None
        everything = await session.get_history(include_failed=True)
        cut = [m for m in everything if m.status is MessageStatus.INTERRUPTED]
        # Every step written before the kill is there, marked interrupted: the user
        # message and the model's two calls (the weather result was not yet written:
        # results of one round are written together).
        assert _shape(cut) == [("user", "text"), ("assistant", "tool_call", "tool_call")]
        history = await session.get_history()
        assert _shape(history) == [("user", "text"), ("assistant", "tool_call"),
                                   ("tool", "tool_result"), ("assistant", "text")]  # fmt: skip
        reply = await session.send_message("after")
        assert reply.content == "echo: after [earlier messages: 4]"  # no half turn sent


async def test_image_is_stored_once_and_sent_with_its_bytes(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    big = PNG + os.urandom(200_000)  # a PNG header, then bulk
    image = ImagePart.from_bytes(big, "image/png")
    async with _manager(db) as mgr:
        sessions = [await mgr.create_session(user_id="u", provider="echo") for _ in range(2)]
        for session in sessions:
            for _ in range(10):
                reply = await session.send_message(["look", image])
                assert f"[image/png {len(big)} bytes]" in reply.content
        import sqlite3

        conn = sqlite3.connect(db)
        assert conn.execute("SELECT COUNT(*), SUM(size) FROM blobs").fetchone() == (1, len(big))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert os.path.getsize(db) < 1.5 * len(big)  # 20 references, one copy
        [user, _] = (await sessions[0].get_history())[:2]
        [stored] = [p for p in user.parts if isinstance(p, ImagePart)]
        assert stored.data is None and stored.sha256 == image.sha256 and stored.size == len(big)
        assert await mgr.storage.load_blob(image.sha256) == big  # type: ignore[arg-type]
        await mgr.delete_session(sessions[0].session_id)
        assert conn.execute("SELECT COUNT(*) FROM blobs").fetchone() == (1,)  # still used
        await mgr.delete_session(sessions[1].session_id)
        assert conn.execute("SELECT COUNT(*) FROM blobs").fetchone() == (0,)
        conn.close()


async def test_media_over_the_limit_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    async with _manager(tmp_path / "s.db", max_media_bytes=1000) as mgr:
        session = await mgr.create_session(user_id="u", provider="echo")
        with pytest.raises(MessageTooLarge, match="over the limit of 1000 bytes"):
            await session.send_message(["look", ImagePart.from_bytes(b"x" * 1001, "image/png")])
        assert await session.get_history(include_failed=True) == []
        with pytest.raises(InvalidMessage, match="send_tool_results"):
            await session.send_message([ToolResult(call_id="c", content="x")])
        with pytest.raises(InvalidMessage):
            await session.send_message([])


class Invoice(BaseModel):
    customer: str
    total: int


async def test_structured_output_is_validated(tmp_path: Path) -> None:
    async with _manager(tmp_path / "s.db") as mgr:
        session = await mgr.create_session(user_id="u", provider="echo")
        reply = await session.send_message("ACME", response_format=Invoice)
        assert reply.parsed == Invoice(customer="ACME", total=1)
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        reply = await session.send_message('json {"n": 3}', response_format=schema)
        assert reply.parsed == {"n": 3}
        with pytest.raises(ProviderBadResponse, match="does not match the schema"):
            await session.send_message('json {"n": "x"}', response_format=schema)
        with pytest.raises(ProviderBadResponse, match="does not match Invoice"):
            await session.send_message('json {"customer": 1}', response_format=Invoice)
        with pytest.raises(ProviderBadResponse, match="not JSON"):
            await session.send_message("json {", response_format=schema)
        assert len(await session.get_history()) == 4
        failed = [m for m in await session.get_history(include_failed=True)
                  if m.status is MessageStatus.FAILED]  # fmt: skip
        assert len(failed) == 3


async def test_tool_hooks_of_middleware_see_calls_and_results(tmp_path: Path) -> None:
    seen: list[str] = []

    class Scrub:
        name = "scrub"

        def process_tool_call(self, session: Any, call: ToolCall) -> ToolCall:
            seen.append(f"call {call.name}")
            return call.model_copy(update={"arguments": {"city": "[city]"}})

        def process_tool_result(self, session: Any, result: ToolResult) -> ToolResult:
            seen.append(f"result {result.content}")
            return result.model_copy(update={"content": result.content.replace("Oslo", "[city]")})

    calls_seen.clear()
    async with _manager(tmp_path / "s.db") as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[weather])
        session.add_middleware(Scrub())
        reply = await session.send_message('call weather {"city": "Oslo"}')
        history = await session.get_history()
    assert calls_seen == ["Oslo"]  # the tool ran with what the model sent
    assert seen == ["call weather", "result Sunny in Oslo"]
    assert history[1].tool_calls[0].arguments == {"city": "[city]"}  # stored scrubbed
    assert reply.content == "tool weather returned Sunny in [city]"  # and sent scrubbed


def test_foreign_reasoning_is_left_out_and_ids_rewritten() -> None:
    mine = ReasoningPart(text="t", provider="anthropic", model="claude-sonnet-5-5-20260101",
                         data={"signature": "s"})  # fmt: skip
    theirs = ReasoningPart(text="u", provider="openai", model="gpt-5", data={"x": 1})
    call = ToolCall(id="call_abc-123.x", name="f")
    messages = [
        Message(role="assistant", parts=[mine, theirs, call]),
        Message(role="tool", parts=[ToolResult(call_id=call.id, content="r")]),
    ]
    out = for_provider(messages, provider="anthropic", model="claude-sonnet-5-5",
                       wire_call_id=lambda i: rewrite_call_id(i, r"^[a-zA-Z0-9]{9}$"))  # fmt: skip
    assert [p.type for p in out[0].parts] == ["reasoning", "tool_call"]
    assert out[0].parts[0] == mine
    new_id = out[0].tool_calls[0].id
    assert len(new_id) == 9 and new_id.isalnum()
    assert out[1].tool_results[0].call_id == new_id  # the pair still matches
    assert rewrite_call_id("call_abc-123.x", r"^[a-zA-Z0-9]{9}$") == new_id  # stable
    assert rewrite_call_id("abc123XYZ", r"^[a-zA-Z0-9]{9}$") == "abc123XYZ"  # kept
    other = for_provider(messages, provider="anthropic", model="claude-opus-5")
    assert [p.type for p in other[0].parts] == ["tool_call"]


# -- the context policy keeps pairs whole ------------------------------------------------

_turn_shapes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3),  # tool rounds
        st.integers(min_value=1, max_value=3),  # calls per round
        st.booleans(),  # with an image
        st.booleans(),  # paused for the caller mid-turn (results come in a later commit)
    ),
    min_size=1,
    max_size=12,
)


def _history(shapes: list[tuple[int, int, bool, bool]]) -> list[Message]:
    messages: list[Message] = []
    n = 0
    for i, (rounds, per_round, image, paused) in enumerate(shapes):
        parts: list[Any] = [TextPart(text=f"question {i} " + "word " * (i % 5))]
        if image:
            parts.append(ImagePart(media_type="image/png", sha256="0" * 64, size=10,
                                   width=800, height=600))  # fmt: skip
        messages.append(Message(role="user", parts=parts))
        for r in range(rounds):
            calls = [ToolCall(id=f"c{(n := n + 1)}", name="f", arguments={"r": r})
                     for _ in range(per_round)]  # fmt: skip
            messages.append(Message(role="assistant", parts=calls))
            results = [ToolResult(call_id=c.id, content="ok " * r, name="f") for c in calls]
            if paused and per_round > 1:  # ours first, the caller's in a later message
                messages.append(Message(role="tool", parts=results[:1]))
                messages.append(Message(role="tool", parts=results[1:]))
            else:
                messages.append(Message(role="tool", parts=results))
        messages.append(Message(role="assistant", content=f"answer {i}"))
    return messages


def _check_valid_for_every_provider(selected: list[Message]) -> None:
    if not selected:
        return
    assert selected[0].role == "user", "a context starts with a user message"
    open_calls: set[str] = set()
    for m in selected:
        if m.role == "user":
            assert not open_calls, "a call travels without its result"
        for c in m.tool_calls:
            open_calls.add(c.id)
        for r in m.tool_results:
            assert r.call_id in open_calls, "a result travels without its call"
            open_calls.discard(r.call_id)
    assert not open_calls, "a call travels without its result"
    roles = [("user" if m.role == "tool" else m.role) for m in selected]
    merged = [r for i, r in enumerate(roles) if i == 0 or r != roles[i - 1]]
    # Strict alternation once consecutive tool results merge into one user turn (the
    # Anthropic and Gemini rule): user, assistant, user, ...
    assert merged == ["user", "assistant"] * (len(merged) // 2) + ["user"] * (len(merged) % 2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=_turn_shapes,
    max_messages=st.one_of(st.none(), st.integers(min_value=1, max_value=40)),
    max_tokens=st.one_of(st.none(), st.integers(min_value=20, max_value=6000)),
    provider=st.sampled_from(["openai", "anthropic", "gemini", "mistral", "cohere"]),
)
def test_selected_context_keeps_tool_pairs_whole(
    shapes: list[tuple[int, int, bool, bool]],
    max_messages: int | None,
    max_tokens: int | None,
    provider: str,
) -> None:
    from langswarm_runtime.providers.media_tokens import media_tokens

    async def run() -> list[Message]:
        storage = MemorySessionStorage()
        from langswarm_runtime.session.models import SessionRecord

        await storage.create_session(SessionRecord(session_id="s", user_id="u", provider="p"))
        await storage.append_messages("s", _history(shapes))
        policy = ContextConfig(max_messages=max_messages, max_tokens=max_tokens)
        return await select_context(
            storage, "s", policy, media_tokens=lambda p: media_tokens(provider, p)
        )

    selected = asyncio.run(run())
    _check_valid_for_every_provider(selected)
    if max_messages is not None:
        assert len(selected) <= max_messages


async def test_pii_filter_scrubs_tool_arguments_and_results_before_storage(
    tmp_path: Path,
) -> None:
    from langswarm_runtime.middleware.pii import PIIFilterMiddleware
    from langswarm_runtime.testing.provider_helpers import sqlite_files_contain

    @tool
    def contact(name: str) -> str:
        """Looks a contact up."""
        return f"{name}: reach them at bob@example.com"

    db = tmp_path / "s.db"
    async with _manager(db) as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[contact])
        session.add_middleware(PIIFilterMiddleware(entities=["email"]))
        reply = await session.send_message('call contact {"name": "alice@example.com"}')
        history = await session.get_history()
    assert history[1].tool_calls[0].arguments == {"name": "[EMAIL]"}
    assert history[2].tool_results[0].content == "[EMAIL]: reach them at [EMAIL]"
    assert "example.com" not in reply.content
    assert not sqlite_files_contain(db, "example.com"), "personal data reached the database"


async def test_audit_log_records_tool_calls(tmp_path: Path) -> None:
    import json as json_

    from langswarm_runtime.middleware.audit import AuditLogMiddleware

    log = tmp_path / "audit.jsonl"
    async with _manager(tmp_path / "s.db") as mgr:
        session = await mgr.create_session(user_id="u", provider="echo", tools=[weather])
        session.add_middleware(AuditLogMiddleware(path=str(log)))
        await session.send_message('call weather {"city": "Kyiv"}')
    entries = [json_.loads(line) for line in log.read_text().splitlines()]
    kinds = [e.get("kind") or e["role"] for e in entries]
    assert kinds == ["user", "assistant", "tool_call", "tool_result", "assistant"]
    call = entries[2]
    assert call["tool"] == "weather" and call["direction"] == "incoming"
    assert entries[3]["call_id"] == call["call_id"] and entries[3]["is_error"] is False
    assert "Kyiv" not in log.read_text()  # content stays out unless include_content


def test_sync_wrapper_runs_tools_and_caller_results(tmp_path: Path) -> None:
    from langswarm_runtime.sync import SyncSessionManager

    lookup = ToolSpec(name="lookup")
    db = str(tmp_path / "s.db")
    with SyncSessionManager(storage=SQLiteSessionStorage(db_path=db)) as manager:
        session = manager.create_session(user_id="u", provider="echo", tools=[weather])
        assert session.send_message('call weather {"city": "Bern"}').content == (
            "tool weather returned Sunny in Bern"
        )
        kinds = [e.type for e in session.stream_events('call weather {"city": "Oslo"}')]
        assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-1] == "done"
        reply = session.send_message("call lookup {}", tools=[lookup])
        [call] = session.open_tool_calls()
        assert call.id == reply.tool_calls[0].id
        final = session.send_tool_results([ToolResult(call_id=call.id, content="1")])
        assert final.content == "tool lookup returned 1"


async def test_unusable_tools_or_response_format_store_nothing(tmp_path: Path) -> None:
    async with _manager(tmp_path / "s.db") as mgr:
        with pytest.raises(InvalidMessage, match="not a tool: int"):
            await mgr.create_session(user_id="u", provider="echo", tools=[42])
        assert await mgr.list_sessions(user_id="u") == []
        session = await mgr.create_session(user_id="u", provider="echo")
        with pytest.raises(InvalidMessage, match="not a tool: int"):
            await session.send_message("x", tools=[42])
        with pytest.raises(InvalidMessage, match="response_format must be"):
            await session.send_message("x", response_format=42)
        with pytest.raises(InvalidMessage, match="empty"):  # tools offered with it too
            await session.send_message("  ", tools=[ToolSpec(name="lookup")])
        assert await session.get_history(include_failed=True) == []
        assert session.tools == []
        again = await mgr.storage.load_session(session.session_id)
        assert again is not None and again.tools == []
