"""The context-window policy against the real memory and SQLite storages."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.providers.base import ContextConfig
from langswarm_runtime.session.context import (
    MESSAGE_OVERHEAD,
    SUMMARY_ROLE,
    estimate_tokens,
    select_context,
)
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord
from langswarm_runtime.session.storage.base import ISessionStorage
from langswarm_runtime.session.storage.memory import MemorySessionStorage
from langswarm_runtime.session.storage.sqlite import SQLiteSessionStorage

SID = "ctx-session"


class CountingMemory(MemorySessionStorage):
    """Counts load_messages calls and rows returned, to prove reads stay O(window)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.rows = 0
        self.unbounded_calls = 0

    async def load_messages(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:
        out = await super().load_messages(
            session_id, last=last, after_seq=after_seq, statuses=statuses
        )
        self.calls += 1
        self.rows += len(out)
        if last is None and after_seq is None:
            self.unbounded_calls += 1
        return out

    def reset(self) -> None:
        self.calls = self.rows = self.unbounded_calls = 0


class CountingSQLite(SQLiteSessionStorage):
    def __init__(self, path: Path) -> None:
        super().__init__(db_path=str(path))
        self.rows = 0

    async def load_messages(self, session_id: str, **kw: object) -> list[Message]:  # type: ignore[override]
        out = await super().load_messages(session_id, **kw)  # type: ignore[arg-type]
        self.rows += len(out)
        return out


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ISessionStorage]:
    store: ISessionStorage
    if request.param == "memory":
        store = CountingMemory()
    else:
        store = CountingSQLite(tmp_path / "ctx.db")
    await store.create_session(SessionRecord(session_id=SID, user_id="u1", provider="echo"))
    yield store
    await store.close()


async def add_turns(store: ISessionStorage, n: int, start: int = 0, size: int = 10) -> None:
    for i in range(start, start + n):
        await store.append_messages(SID, [
            Message(role="user", content=f"u{i:04d}".ljust(size, ".")),
            Message(role="assistant", content=f"a{i:04d}".ljust(size, ".")),
        ])


def turn_ids(messages: list[Message]) -> list[int]:
    return [int(m.content[1:5]) for m in messages if m.role == "user"]


def assert_whole_turns(messages: list[Message]) -> None:
    body = [m for m in messages if m.role != SUMMARY_ROLE]
    assert [m.role for m in body] == ["user", "assistant"] * (len(body) // 2)
    for u, a in zip(body[::2], body[1::2], strict=True):
        assert u.content[1:5] == a.content[1:5]


async def test_newest_whole_turns_within_max_messages(storage: ISessionStorage) -> None:
    await add_turns(storage, 10)
    got = await select_context(storage, SID, ContextConfig(max_messages=5))
    # 5 messages cannot hold 3 whole turns: 2 turns, never half of the third.
    assert turn_ids(got) == [8, 9]
    assert_whole_turns(got)
    got = await select_context(storage, SID, ContextConfig(max_messages=6))
    assert turn_ids(got) == [7, 8, 9]


async def test_short_history_is_sent_whole(storage: ISessionStorage) -> None:
    await add_turns(storage, 3)
    got = await select_context(storage, SID, ContextConfig(max_messages=200))
    assert turn_ids(got) == [0, 1, 2]
    assert await select_context(storage, "no-such-session", ContextConfig()) == []


async def test_max_tokens_counts_system_prompt_and_overhead(storage: ISessionStorage) -> None:
    await add_turns(storage, 10, size=40)  # each message: 10 tokens + overhead
    per_turn = 2 * (estimate_tokens("x" * 40) + MESSAGE_OVERHEAD)
    policy = ContextConfig(max_messages=None, max_tokens=per_turn * 3)
    assert turn_ids(await select_context(storage, SID, policy)) == [7, 8, 9]
    # A system prompt of one turn's worth pushes one turn out; it is never dropped itself.
    prompt = "s" * (per_turn * 4 - MESSAGE_OVERHEAD * 4)
    got = await select_context(storage, SID, policy, system_prompt=prompt)
    assert turn_ids(got) == [8, 9]
    # A prompt filling the whole budget leaves no history at all.
    assert await select_context(storage, SID, policy, system_prompt="s" * 10_000) == []


async def test_a_turn_too_big_stops_the_window(storage: ISessionStorage) -> None:
    await add_turns(storage, 3)
    await storage.append_messages(SID, [Message(role="user", content="u0003" + "!" * 4000),
                                        Message(role="assistant", content="a0003")])
    await add_turns(storage, 1, start=4)
    got = await select_context(storage, SID, ContextConfig(max_messages=None, max_tokens=200))
    # Turn 3 does not fit, so older turns do not jump over it.
    assert turn_ids(got) == [4]


async def test_provider_counter_is_used(storage: ISessionStorage) -> None:
    await add_turns(storage, 10)
    seen: list[str] = []

    def count(text: str) -> int:
        seen.append(text)
        return 100

    per_turn = 2 * (100 + MESSAGE_OVERHEAD)
    got = await select_context(storage, SID, ContextConfig(max_messages=None,
                                                           max_tokens=per_turn * 2),
                               count_tokens=count)
    assert turn_ids(got) == [8, 9]
    assert seen


async def test_failed_and_pending_messages_never_enter(storage: ISessionStorage) -> None:
    await add_turns(storage, 2)
    (pending,) = await storage.append_messages(
        SID, [Message(role="user", content="u0099 secret draft", status=MessageStatus.PENDING)]
    )
    assert pending.seq is not None
    await storage.update_message_status(SID, [pending.seq], MessageStatus.FAILED)
    await storage.append_messages(SID, [Message(role="user", content="u0098 pending",
                                                status=MessageStatus.PENDING)])
    got = await select_context(storage, SID, ContextConfig(max_messages=10))
    assert turn_ids(got) == [0, 1]


async def test_unknown_strategy_and_missing_summarizer() -> None:
    store = MemorySessionStorage()
    with pytest.raises(ConfigError, match="unknown context strategy 'newest'"):
        await select_context(store, SID, ContextConfig(strategy="newest"))
    with pytest.raises(ConfigError, match="needs a summarize function"):
        await select_context(store, SID, ContextConfig(strategy="summarize"))


async def test_500_turn_session_reads_only_the_window(storage: ISessionStorage) -> None:
    window = 20
    policy = ContextConfig(max_messages=window)
    worst_rows = 0
    for i in range(500):
        storage.rows = 0  # type: ignore[attr-defined]
        got = await select_context(storage, SID, policy)
        worst_rows = max(worst_rows, storage.rows)  # type: ignore[attr-defined]
        assert len(got) <= window
        assert turn_ids(got) == list(range(max(0, i - window // 2), i))
        await add_turns(storage, 1, start=i)
    # First read is window + 3 rows; never the 1000-message history.
    assert worst_rows <= window + 3
    if isinstance(storage, CountingMemory):
        assert storage.unbounded_calls == 0


class Summarizer:
    """Stands in for the provider: a deterministic summary naming the turns it saw."""

    def __init__(self) -> None:
        self.calls: list[list[Message]] = []

    async def __call__(self, messages: list[Message]) -> str:
        self.calls.append(messages)
        prior = [m.content for m in messages if m.role == SUMMARY_ROLE]
        ids = turn_ids(messages)
        base = prior[0] if prior else "S:"
        return f"{base}{ids[0]}-{ids[-1]};"


async def test_summarize_folds_dropped_turns_and_refreshes(storage: ISessionStorage) -> None:
    summarize = Summarizer()
    policy = ContextConfig(max_messages=9, strategy="summarize")
    await add_turns(storage, 4)
    got = await select_context(storage, SID, policy, summarize=summarize)
    assert turn_ids(got) == [0, 1, 2, 3] and not summarize.calls  # fits: no summary yet

    await add_turns(storage, 1, start=4)  # 10 messages > 9: the window moves
    got = await select_context(storage, SID, policy, summarize=summarize)
    assert got[0].role == SUMMARY_ROLE and got[0].content == "S:0-2;"
    # Half the limit minus the summary's slot (4.5 - 1) holds one whole turn.
    assert turn_ids(got[1:]) == [3, 4]
    assert len(got) <= 9
    assert_whole_turns(got)
    stored = [m for m in await storage.load_messages(SID) if m.role == SUMMARY_ROLE]
    assert len(stored) == 1 and stored[0].status is MessageStatus.COMMITTED
    assert stored[0].metadata["covers_to_seq"] < (got[1].seq or 0)

    # The next turns reuse the stored summary until the window overflows again.
    for i in range(5, 40):
        before = len(summarize.calls)
        got = await select_context(storage, SID, policy, summarize=summarize)
        assert len(got) <= 9 and got[0].role == SUMMARY_ROLE
        assert_whole_turns(got)
        # Summary + window cover every turn so far, with no gap and no overlap.
        covered = got[0].content.rstrip(";").split(";")[-1].split("-")[-1]
        assert turn_ids(got[1:])[0] == int(covered) + 1
        assert turn_ids(got[1:])[-1] == i - 1
        if len(summarize.calls) > before:
            # Re-summarised from the previous summary plus only the newly dropped turns.
            material = summarize.calls[-1]
            assert material[0].role == SUMMARY_ROLE
        await add_turns(storage, 1, start=i)
    # Summaries come in steps, not on every turn.
    assert 4 <= len(summarize.calls) <= 35 // 2
    assert got[0].content.startswith("S:0-2;")


async def test_summarize_respects_max_tokens_with_the_summary(storage: ISessionStorage) -> None:
    async def wordy(messages: list[Message]) -> str:
        return "summary " * 40  # 320 chars = 80 tokens

    await add_turns(storage, 30, size=40)
    policy = ContextConfig(max_messages=None, max_tokens=200, strategy="summarize")
    got = await select_context(storage, SID, policy, summarize=wordy)
    total = sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD for m in got)
    assert got[0].role == SUMMARY_ROLE
    assert total <= 200
    assert_whole_turns(got)
    assert turn_ids(got[1:])[-1] == 29


async def test_summarize_500_turns_reads_o_window(storage: ISessionStorage) -> None:
    summarize = Summarizer()
    window = 20
    policy = ContextConfig(max_messages=window, strategy="summarize")
    worst = 0
    for i in range(500):
        storage.rows = 0  # type: ignore[attr-defined]
        got = await select_context(storage, SID, policy, summarize=summarize)
        worst = max(worst, storage.rows)  # type: ignore[attr-defined]
        assert len(got) <= window
        if i:
            assert turn_ids(got[1:] if got[0].role == SUMMARY_ROLE else got)[-1] == i - 1
        await add_turns(storage, 1, start=i)
    assert worst <= 3 * window
    assert len(summarize.calls) <= math.ceil(500 / (window // 4))


async def test_summarize_on_a_real_session(tmp_path: Path) -> None:
    """Through Session: the summary comes from the session's own provider, is stored with
    role summary, stays out of get_history() and goes first in later requests."""
    from langswarm_runtime import SessionManager

    config = tmp_path / "swarm.yaml"
    config.write_text(
        "version: 1\n"
        f'storage: {{type: sqlite, path: "{tmp_path / "s.db"}"}}\n'
        "providers:\n"
        "  local: {type: echo, context: {max_messages: 5, strategy: summarize}}\n"
    )
    async with SessionManager.from_config(config) as manager:
        session = await manager.create_session(user_id="u1", provider="local",
                                               backend="hybrid")
        for i in range(6):
            reply = await session.send_message(f"turn {i}")
        history = await session.get_history()
        assert [m.role for m in history] == ["user", "assistant"] * 6
        stored = await manager.storage.load_messages(session.session_id)
        summaries = [m for m in stored if m.role == SUMMARY_ROLE]
        assert summaries and summaries[-1].content.startswith("echo: Summarise")
        # max_messages 5 = summary + 2 turns; the refresh at turn 5 kept the newest turn.
        assert reply.content == "echo: turn 5 [earlier messages: 3]"
