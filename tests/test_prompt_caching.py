"""Prompt caching in hybrid mode, through the real SDKs against the emulator.

- Anthropic: ``cache_control`` breakpoints on the system prompt and the last history
  message; the emulator reads the longest previously written prefix from cache.
- OpenAI, Gemini, Mistral, Cohere (automatic prefix caching): each turn's prompt starts
  with the previous turn's prompt byte for byte, also across a restart and once the
  context window is full (``context.step``), so the emulator reports cache hits.
- ``session.usage.cached_tokens`` totals the replies' cached tokens and is persisted.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from langswarm_runtime import SessionManager
from langswarm_runtime.providers.base import ContextConfig
from langswarm_runtime.session.context import select_context
from langswarm_runtime.session.models import Message, MessageStatus, SessionBackend
from langswarm_runtime.session.storage.memory import MemorySessionStorage
from langswarm_runtime.session.storage.sqlite import SQLiteSessionStorage
from langswarm_runtime.testing.emulator import ProviderEmulator, count_words

SYSTEM = "You are a careful assistant who answers briefly."
#: entry name -> (type, path suffix of its hybrid call, extra YAML options)
ENTRIES: dict[str, tuple[str, str, str]] = {
    "claude": ("anthropic", "/v1/messages", ""),
    "gpt": ("openai", "/v1/responses", ""),
    "gpt-chat": ("openai", "/v1/chat/completions", "api: chat_completions"),
    "gemini": ("gemini", "enerateContent", ""),  # plain and streamed
    "mistral": ("mistral", "/v1/chat/completions", ""),
    "cohere": ("cohere", "/v2/chat", ""),
}
AUTOMATIC = [name for name in ENTRIES if name != "claude"]


def _yaml(tmp_path: Path, emu: ProviderEmulator, context: str, extra: str = "") -> Path:
    lines = ["version: 1", f'storage: {{type: sqlite, path: "{tmp_path / "s.db"}"}}', "providers:"]
    for name, (kind, _, options) in ENTRIES.items():
        lines += [
            f"  {name}:",
            f"    type: {kind}",
            f"    model: {kind}-test",
            "    api_key: emulator-key-0123456789",
            f'    base_url: "{emu.url(kind)}"',
            "    max_retries: 0",
            "    timeout: 10",
            f"    context: {context}",
        ]
        lines += [f"    {o}" for o in (options, extra if kind == "anthropic" else "") if o]
    path = tmp_path / "swarm.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _calls(emu: ProviderEmulator, name: str) -> list[dict[str, Any]]:
    kind, suffix, _ = ENTRIES[name]
    return [
        r.json for r in emu.requests if r.provider == kind and r.path.endswith(suffix) and r.json
    ]


def _prompt(name: str, body: dict[str, Any]) -> list[str]:
    """The request's prompt as the JSON text of each item, in order (system first), as
    the SDK serialised it (key order kept: equal strings mean equal bytes)."""
    kind = ENTRIES[name][0]
    if kind == "gemini":
        items = [body.get("systemInstruction"), *body["contents"]]
    elif kind == "openai" and "input" in body:
        # the adapter sends the system prompt as the first input item, not instructions
        items = ([body["instructions"]] if body.get("instructions") else []) + body["input"]
    elif kind == "anthropic":
        items = [body.get("system"), *body["messages"]]
    else:
        items = list(body["messages"])
    return [json.dumps(item, ensure_ascii=False) for item in items]


async def _talk(session: Any, turns: int, start: int = 0, streamed: bool = False) -> list[Any]:
    replies = []
    for i in range(start, start + turns):
        text = f"question number {i} about topic {i % 7} please"
        if streamed:
            async for _ in session.stream_message(text):
                pass
            replies.append((await session.get_history(last=1))[0])
        else:
            replies.append(await session.send_message(text))
    return replies


# ----------------------------------------------------------------------- Anthropic


def _marks(body: dict[str, Any]) -> list[str]:
    """Where the request carries cache_control: "system" or "messages[i]"."""
    found = []
    for block in body.get("system") if isinstance(body.get("system"), list) else []:
        if block.get("cache_control"):
            found.append("system")
    for i, m in enumerate(body["messages"]):
        content = m["content"]
        if isinstance(content, list) and any(b.get("cache_control") for b in content):
            found.append(f"messages[{i}]")
    return found


@pytest.mark.parametrize("streamed", [False, True])
async def test_anthropic_breakpoints_and_cache_reads(
    tmp_path: Path, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    path = _yaml(tmp_path, provider_emulator, "{max_messages: null}")
    async with SessionManager.from_config(path) as manager:
        session = await manager.create_session(
            user_id="u", provider="claude", backend="hybrid", system_prompt=SYSTEM
        )
        replies = await _talk(session, 5, streamed=streamed)
        sid = session.session_id
        total = session.usage
    calls = _calls(provider_emulator, "claude")
    assert len(calls) == 5
    # Turn 1 has no history: only the system prompt is marked. Later turns: the system
    # prompt and the message just before the new one, nothing else.
    assert _marks(calls[0]) == ["system"]
    for body in calls[1:]:
        assert _marks(body) == ["system", f"messages[{len(body['messages']) - 2}]"]
        assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert isinstance(body["messages"][-1]["content"], str)  # the new message: unmarked
    # Turn 1 writes the system prompt; turn 2 reads it and writes the first exchange;
    # from turn 3 on, everything but the newest exchange and the new message is read.
    words = [count_words(SYSTEM)]
    assert replies[0].usage.cached_tokens == 0
    assert replies[1].usage.cached_tokens == words[0]
    for n, reply in enumerate(replies[2:], start=2):
        prompt = calls[n]["messages"]
        unread = prompt[-3:]  # the exchange the previous turn wrote is read; these are not
        expected = reply.usage.input_tokens - sum(
            count_words(m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
            for m in unread
        )
        assert reply.usage.cached_tokens == expected > words[0]
    assert total.cached_tokens == sum(r.usage.cached_tokens for r in replies)
    async with SessionManager.from_config(path) as manager:  # persisted with the session
        again = await manager.get_session(sid, user_id="u")
        assert again is not None and again.usage.cached_tokens == total.cached_tokens


async def test_anthropic_prompt_caching_off(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    path = _yaml(tmp_path, provider_emulator, "{max_messages: null}", "prompt_caching: false")
    async with SessionManager.from_config(path) as manager:
        session = await manager.create_session(
            user_id="u", provider="claude", backend="hybrid", system_prompt=SYSTEM
        )
        replies = await _talk(session, 3)
        assert session.usage.cached_tokens == 0
    calls = _calls(provider_emulator, "claude")
    assert all(_marks(body) == [] for body in calls)
    assert calls[-1]["system"] == SYSTEM  # the plain form
    assert all(r.usage.cached_tokens == 0 for r in replies)


async def test_anthropic_cache_ttl_option(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    path = _yaml(tmp_path, provider_emulator, "{max_messages: null}", "prompt_cache_ttl: 1h")
    async with SessionManager.from_config(path) as manager:
        session = await manager.create_session(
            user_id="u", provider="claude", backend="hybrid", system_prompt=SYSTEM
        )
        await _talk(session, 2)
    body = _calls(provider_emulator, "claude")[-1]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["messages"][-2]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


# ----------------------------------------------------------------------- automatic caching


def _assert_prefix_stable(name: str, calls: list[dict[str, Any]]) -> None:
    for before, after in pairwise(calls):
        old, new = _prompt(name, before), _prompt(name, after)
        assert new[: len(old)] == old, f"{name}: the prompt prefix changed between turns"
        assert len(new) == len(old) + 2  # the previous reply and the new message


@pytest.mark.parametrize("name", AUTOMATIC)
async def test_prefix_byte_stable_and_cached(
    name: str, tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    path = _yaml(tmp_path, provider_emulator, "{max_messages: null}")
    async with SessionManager.from_config(path) as manager:
        session = await manager.create_session(
            user_id="u", provider=name, backend="hybrid", system_prompt=SYSTEM
        )
        sid = session.session_id
        replies = await _talk(session, 4)
    async with SessionManager.from_config(path) as manager:  # a restart keeps the prefix
        session = await manager.get_session(sid, user_id="u")
        assert session is not None
        replies += await _talk(session, 2, start=4, streamed=True)
        total = session.usage
    calls = _calls(provider_emulator, name)
    assert len(calls) == 6
    _assert_prefix_stable(name, calls)
    assert replies[0].usage.cached_tokens == 0
    for n, reply in enumerate(replies[1:], start=1):
        # everything but the previous reply and the new message was in the previous prompt
        fresh = count_words(replies[n - 1].content) + count_words(
            f"question number {n} about topic {n % 7} please"
        )
        assert reply.usage.cached_tokens == reply.usage.input_tokens - fresh > 0
    assert total.cached_tokens == sum(r.usage.cached_tokens for r in replies) > 0


@pytest.mark.parametrize("name", ["gpt", "gemini", "claude"])
async def test_stepped_window_keeps_the_prefix_once_full(
    name: str, tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    # each turn takes 3 sequence numbers (pending record + committed pair): step 9 moves
    # the window's start every 3 turns
    path = _yaml(tmp_path, provider_emulator, "{max_messages: 10, step: 9}")
    async with SessionManager.from_config(path) as manager:
        session = await manager.create_session(
            user_id="u", provider=name, backend="hybrid", system_prompt=SYSTEM
        )
        replies = await _talk(session, 16)
    calls = _calls(provider_emulator, name)
    prompts = [_prompt(name, body) for body in calls]
    # never more than the window (+ system prompt + new message)
    assert max(len(p) for p in prompts) == 1 + 10 + 1
    assert min(len(p) for p in prompts[6:]) >= 1 + 4 + 1  # at most 9 seqs = 6 messages less
    # once full, the first history item changes only every few turns, not every turn
    firsts = [p[1] for p in prompts[6:]]  # from the first turn that overflowed
    runs = [len(run) for run in _runs(firsts)]
    assert len(runs) >= 3 and all(r == 3 for r in runs[:-1]), runs
    changes = len(runs) - 1
    # between changes the previous prompt is a byte-identical prefix of the next
    stable = [(old, new) for old, new in pairwise(prompts[6:]) if old[1] == new[1]]
    assert len(stable) >= 2 * changes
    for old, new in stable:
        if name != "claude":  # Anthropic's marker moves; its tests compare content
            assert new[: len(old)] == old
    hits = [r.usage.cached_tokens > count_words(SYSTEM) for r in replies[7:]]
    assert sum(hits) >= len(stable)


async def test_one_turn_slide_defeats_the_cache(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    """The contrast: without ``step`` a full window changes its first message every turn,
    and only the system prompt is ever read from cache."""
    path = _yaml(tmp_path, provider_emulator, "{max_messages: 8}")
    async with SessionManager.from_config(path) as manager:
        session = await manager.create_session(
            user_id="u", provider="gpt", backend="hybrid", system_prompt=SYSTEM
        )
        replies = await _talk(session, 12)
    prompts = [_prompt("gpt", body) for body in _calls(provider_emulator, "gpt")]
    firsts = [p[1] for p in prompts[5:]]
    assert all(a != b for a, b in pairwise(firsts))
    system_words = count_words(SYSTEM)
    assert all(r.usage.cached_tokens == system_words for r in replies[5:])


async def test_same_history_gives_identical_requests(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    """Request building is deterministic: two sessions with the same history send the
    same bytes (no timestamps, ids or set ordering in the prompt)."""
    path = _yaml(tmp_path, provider_emulator, "{max_messages: null}")
    async with SessionManager.from_config(path) as manager:
        for name in ENTRIES:
            for _ in range(2):
                session = await manager.create_session(
                    user_id="u", provider=name, backend="hybrid", system_prompt=SYSTEM
                )
                await _talk(session, 3)
    for name in ENTRIES:
        calls = _calls(provider_emulator, name)
        assert len(calls) == 6
        for a, b in zip(calls[:3], calls[3:], strict=True):
            assert _prompt(name, a) == _prompt(name, b)
            # apart from OpenAI's per-session prompt_cache_key, the bodies are identical
            a.pop("prompt_cache_key", None), b.pop("prompt_cache_key", None)
            assert json.dumps(a) == json.dumps(b)


# ----------------------------------------------------------------------- the window itself


async def _fill(storage: Any, sid: str, turns: int, start: int = 0) -> None:
    for i in range(start, start + turns):
        await storage.append_messages(
            sid,
            [
                Message(role="user", content=f"q{i}", status=MessageStatus.COMMITTED),
                Message(role="assistant", content=f"a{i}", status=MessageStatus.COMMITTED),
            ],
        )


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_step_window_bounds_and_stability(store: str, tmp_path: Path) -> None:
    from langswarm_runtime.session.models import SessionRecord

    storage: Any = (
        MemorySessionStorage() if store == "memory" else SQLiteSessionStorage(tmp_path / "w.db")
    )
    await storage.create_session(
        SessionRecord(session_id="s", user_id="u", provider="p", backend=SessionBackend.HYBRID)
    )
    policy = ContextConfig(max_messages=10, step=6)
    starts = []
    for turn in range(40):
        await _fill(storage, "s", 1, start=turn)
        window = await select_context(storage, "s", policy)
        assert len(window) <= 10
        assert window and window[0].role == "user" and window[-1].content == f"a{turn}"
        assert [m.role for m in window] == ["user", "assistant"] * (len(window) // 2)
        starts.append(window[0].content)
    full = starts[5:]
    # the start moves every 3 turns (6 messages), and the window never drops below 10 - 6
    runs = [len(list(g)) for g in _runs(full)]
    assert all(r == 3 for r in runs[1:-1]) and len(runs) >= 10
    unstepped = [(await select_context(storage, "s", ContextConfig(max_messages=10)))[0].content]
    assert unstepped == ["q35"]  # without step: the newest 5 turns
    await storage.close()


def _runs(items: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1].append(item)
        else:
            out.append([item])
    return out


async def test_step_with_token_limit_keeps_newest_turn() -> None:
    from langswarm_runtime.session.models import SessionRecord

    storage = MemorySessionStorage()
    await storage.create_session(
        SessionRecord(session_id="s", user_id="u", provider="p", backend=SessionBackend.HYBRID)
    )
    await _fill(storage, "s", 6)
    big = "word " * 400
    await storage.append_messages(
        "s",
        [
            Message(role="user", content=big, status=MessageStatus.COMMITTED),
            Message(role="assistant", content="ok", status=MessageStatus.COMMITTED),
        ],
    )
    policy = ContextConfig(max_messages=None, max_tokens=520, step=50)
    window = await select_context(storage, "s", policy)
    assert [m.content for m in window] == [big, "ok"]  # never an empty window


def test_step_must_be_below_the_window() -> None:
    with pytest.raises(ValidationError, match="context.step"):
        ContextConfig(max_messages=10, step=10)
    assert ContextConfig(max_messages=None, step=1000).step == 1000


def test_step_in_swarm_yaml_is_validated(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    from langswarm_runtime.config import load_config
    from langswarm_runtime.errors import ConfigError

    path = _yaml(tmp_path, provider_emulator, "{max_messages: 4, step: 9}")
    with pytest.raises(ConfigError, match="step"):
        load_config(path)


async def test_openai_prompt_cache_key_per_session(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    path = _yaml(tmp_path, provider_emulator, "{max_messages: null}")
    async with SessionManager.from_config(path) as manager:
        one = await manager.create_session(user_id="u", provider="gpt", backend="hybrid")
        two = await manager.create_session(user_id="u", provider="gpt", backend="hybrid")
        await _talk(one, 2)
        await _talk(two, 1)
        await _talk(one, 1, start=2, streamed=True)
        chat = await manager.create_session(user_id="u", provider="gpt-chat", backend="hybrid")
        await _talk(chat, 1)
    keys = [body.get("prompt_cache_key") for body in _calls(provider_emulator, "gpt")]
    assert keys[0] == keys[1] == keys[3] != keys[2]  # stable per session, streamed too
    assert all(k and k.startswith("ls-") for k in keys)
    assert one.session_id not in json.dumps(keys)  # a hash, never the session id
    # chat completions servers (Ollama, vLLM...) may not know the parameter
    assert "prompt_cache_key" not in _calls(provider_emulator, "gpt-chat")[0]
