"""The adapters keep the translation of a tool loop's history (the same list on every
call of a turn): what they send must be exactly what a fresh translation gives, and
nothing a later step does to a request (prompt-cache marks) may leak into the kept
translation."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from langswarm_runtime.providers import (
    _anthropic_parts,
    _gemini_parts,
    _openai_parts,
    _openai_style,
)
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import ReasoningPart, TextPart, ToolCall, ToolResult


def _history(turns: int, *, end: str = "answer") -> list[Message]:
    out: list[Message] = []
    seq = 0

    def add(**fields: Any) -> None:
        nonlocal seq
        seq += 1
        out.append(Message(seq=seq, **fields))

    for i in range(turns):
        add(role="user", content=f"question {i}")
        add(role="assistant", parts=[
            ToolCall(id=f"c{i}b", name="step", arguments={"n": 2}),
            ToolCall(id=f"c{i}a", name="step", arguments={"n": 1}),
        ])  # fmt: skip
        # The results come back in another order than the calls: the wire reorders.
        add(role="tool", parts=[ToolResult(call_id=f"c{i}a", content="one"),
                                ToolResult(call_id=f"c{i}b", content="two")])  # fmt: skip
        # Thinking kept with its signature: the answer's wire content is a block list.
        add(role="assistant", parts=[
            ReasoningPart(text="hm", provider="anthropic", data={"signature": f"s{i}"}),
            TextPart(text=f"answer {i}"),
        ])  # fmt: skip
    if end in ("calls", "results"):  # a turn paused for the caller's tools
        add(role="user", content="go on")
        add(role="assistant", parts=[ToolCall(id="cy", name="step", arguments={"n": 8}),
                                     ToolCall(id="cx", name="step", arguments={"n": 9})])
        if end == "results":
            add(role="tool", parts=[ToolResult(call_id="cx", content="partial")])
    return out


def _steps(history: list[Message], round_: int) -> list[Message]:
    """A turn's messages after ``round_`` tool rounds (not stored yet: no seq); after
    a history that ends with calls, the turn resumes with the caller's results."""
    if history[-1].role == "assistant" and history[-1].tool_calls:
        steps = [Message(role="tool", parts=[ToolResult(call_id="cx", content="9"),
                                             ToolResult(call_id="cy", content="8")])]
    else:
        steps = [Message(role="user", content="next")]
    for r in range(round_):
        steps.append(Message(role="assistant",
                             parts=[ToolCall(id=f"t{r}", name="step", arguments={"n": r})]))
        steps.append(Message(role="tool", parts=[ToolResult(call_id=f"t{r}", content="ok")]))
    return steps


#: Each adapter's translation: (messages, history or None) -> what it sends.
TRANSLATIONS: dict[str, Callable[[list[Message], list[Message] | None], Any]] = {
    "cohere": lambda m, h: _openai_style.to_messages(m, _openai_style.COHERE, history=h),
    "mistral": lambda m, h: _openai_style.to_messages(m, _openai_style.MISTRAL, history=h),
    "chat_completions": lambda m, h: _openai_style.to_messages(
        m, _openai_style.CHAT_COMPLETIONS, history=h
    ),
    "anthropic": lambda m, h: _anthropic_parts.to_messages(m, history=h),
    "gemini": lambda m, h: _gemini_parts.to_contents(m, history=h),
    # What the Gemini adapter sends: the same contents in the REST API's own JSON.
    "gemini_rest": lambda m, h: _gemini_parts.to_contents(m, history=h, rest=True),
    "openai_responses": lambda m, h: _openai_parts.input_items(
        m, system_role="developer", history=h
    ),
}


@pytest.mark.parametrize("end", ["answer", "calls", "results"])
@pytest.mark.parametrize("adapter", list(TRANSLATIONS))
def test_kept_history_sends_what_a_fresh_translation_does(adapter: str, end: str) -> None:
    translate = TRANSLATIONS[adapter]
    history = _history(5, end=end)
    for round_ in range(4):  # the calls of one tool turn, history object unchanged
        conversation = [*history, *_steps(history, round_)]
        kept = translate(conversation, history)
        fresh = translate(list(conversation), None)
        assert json.dumps(kept) == json.dumps(fresh)
    # What is kept is shared with every later call, never changed by one.
    first = json.dumps(translate([*history, *_steps(history, 0)], history))
    translate([*history, *_steps(history, 3)], history)
    assert json.dumps(translate([*history, *_steps(history, 0)], history)) == first
    if adapter == "openai_responses":
        assert len(_openai_parts._HISTORIES) >= 1  # the kept path was taken


def test_anthropic_cache_marks_never_reach_the_kept_history() -> None:
    """Each call marks the message before the new one with ``cache_control``; on the
    next call of the loop that message is further back and must carry no mark."""
    history = _history(3)
    marker = {"type": "ephemeral"}
    sent = []
    for round_ in range(3):
        _, wire = _anthropic_parts.to_messages([*history, *_steps(history, round_)],
                                               history=history)  # fmt: skip
        wire[-2] = dict(wire[-2])  # what the adapter does before marking
        _anthropic_parts.mark_cache(wire[-2], marker)
        sent.append(json.dumps(wire))
    for text in sent:
        assert text.count("cache_control") == 1
    _, again = _anthropic_parts.to_messages([*history, *_steps(history, 0)], history=history)
    assert "cache_control" not in json.dumps(again)


def test_nothing_holding_media_bytes_is_kept() -> None:
    """Messages with an image's bytes are rebuilt (with their bytes) on every call:
    keeping their translation would keep the bytes alive, up to the cache's size."""
    from langswarm_runtime.providers._kept import KeptHistories, KeptMessages
    from langswarm_runtime.session.parts import ImagePart

    image = ImagePart.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
    history = [Message(role="user", parts=[TextPart(text="look"), image], seq=1),
               Message(role="assistant", content="a cat", seq=2)]  # fmt: skip
    histories: KeptHistories[int] = KeptHistories()
    calls = []
    for _ in range(2):
        histories.get(history, "s", lambda: calls.append(1) or 1)
    assert len(calls) == 2 and len(histories) == 0  # made every time, never kept
    messages: KeptMessages[int] = KeptMessages()
    made = []
    for _ in range(2):
        messages.get(history[0], "s", lambda m: made.append(m) or 1)
    assert len(made) == 2  # made every time, never kept
    without = [history[0].model_copy(update={"parts": [TextPart(text="look"),
                                                       image.without_data()]}), history[1]]
    histories.get(without, "s", lambda: 1)
    assert len(histories) == 1  # the same history without the bytes is kept


def _windows(full: list[Message], size: int) -> list[list[Message]]:
    """The histories of consecutive turns: the same stored messages, a new list each
    time, the window moving by one whole turn (4 messages) per turn."""
    return [list(full[start:start + size]) for start in range(0, len(full) - size + 1, 4)]


@pytest.mark.parametrize("adapter", list(TRANSLATIONS))
def test_a_moving_window_sends_what_a_fresh_translation_does(adapter: str) -> None:
    translate = TRANSLATIONS[adapter]
    full = _history(12)
    summary = Message(role="summary", content="earlier: twelve questions", seq=0)
    for window in [*_windows(full, 20), [summary, *full[8:28]]]:
        for round_ in (0, 2):
            conversation = [*window, *_steps(window, round_)]
            assert json.dumps(translate(conversation, window)) == json.dumps(
                translate(list(conversation), None)
            )


KEPT_BY_TURN = ["cohere", "mistral", "chat_completions", "openai_responses"]


@pytest.mark.parametrize("adapter", KEPT_BY_TURN)
def test_a_new_turns_history_reuses_the_kept_turns(adapter: str) -> None:
    """The next turn's window shares all its turns but the newest with the one before:
    their wire forms are the very objects sent before (kept, not made again)."""
    translate = TRANSLATIONS[adapter]
    full = _history(8)
    before, after = _windows(full, 20)[:2]  # after = before minus its first turn + one
    sent_before = translate([*before, *_steps(before, 0)], before)
    sent_after = translate([*after, *_steps(after, 0)], after)
    # The wire forms of the 4 shared turns: in `before` they follow its first turn.
    first_turn = len(translate(before[:4], None))
    shared = len(translate(before[4:], None))
    if adapter != "openai_responses":  # the system/summary-free chat lists: same layout
        assert shared == len(translate(after[:16], None))
    reused = [a is b for a, b in zip(sent_after[:shared],
                                     sent_before[first_turn:first_turn + shared])]  # fmt: skip
    assert reused and all(reused)
    assert json.dumps(sent_after) == json.dumps(translate([*after, *_steps(after, 0)], None))


def test_turns_holding_media_bytes_are_not_kept() -> None:
    from langswarm_runtime.providers._kept import KeptTurns
    from langswarm_runtime.session.parts import ImagePart

    image = ImagePart.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
    history = [Message(role="user", parts=[TextPart(text="look"), image], seq=1),
               Message(role="assistant", content="a cat", seq=2),
               Message(role="user", content="and now?", seq=3),
               Message(role="assistant", content="a dog", seq=4)]  # fmt: skip
    turns: KeptTurns[str, None] = KeptTurns()
    made: list[int] = []

    def make(piece: Any) -> tuple[list[str], None]:
        made.append(len(piece))
        return [m.content for m in piece], None

    for _ in range(2):
        wire, _state, keepable = turns.translate(history, "s", make, None)
        assert not keepable
        assert wire == ["look", "a cat", "and now?", "a dog"]
    assert made == [2, 2, 2] and len(turns) == 1  # the media turn made each time
    # Through an adapter: neither the history nor its media turn is kept.
    before = len(_openai_style._TURNS)
    _openai_style.to_messages([*history, Message(role="user", content="more")],
                              _openai_style.COHERE, history=history)  # fmt: skip
    assert (id(history), "cohere") not in _openai_style._HISTORIES._entries
    assert len(_openai_style._TURNS) == before + 1  # only the turn without bytes


def _awkward_history(seed: int, turns: int) -> list[Message]:
    """Turns whose wire forms merge across the cut before a user message: a user
    message with no reply (the next user message joins it), a user message with
    nothing to send (its turn's first wire message is the assistant's, joining the
    answer before), notes between turns, a paused turn resumed by a new user message
    that carries results, and results out of the calls' order at the join."""
    import random

    rng = random.Random(seed)
    out: list[Message] = []

    def add(**fields: Any) -> None:
        out.append(Message(seq=len(out) + 1, **fields))

    kinds = ["plain", "unanswered", "empty", "note", "paused", "resumed", "bare"]
    bare: list[str] = []  # calls left open by the turn before
    for i in range(turns):
        kind = rng.choice(kinds)
        if kind == "note":
            add(role=rng.choice(["system", "summary"]), content=f"note {i}")
        if kind == "empty":
            add(role="user", content="")
            if bare:  # its calls merge into the open ones; all results in one message
                add(role="assistant", parts=[ToolCall(id=f"e{i}", name="step", arguments={})])
                add(role="tool", parts=[ToolResult(call_id=c, content=c)
                                        for c in [f"e{i}", *reversed(bare)]])  # fmt: skip
                bare = []
                continue
        else:
            add(role="user", content=f"question {i}")
        bare = []
        if kind == "bare":  # calls whose results never came
            bare = [f"b{i}x", f"b{i}y"]
            add(role="assistant", parts=[ToolCall(id=c, name="step", arguments={}) for c in bare])
            continue
        if kind == "unanswered":
            continue  # the turn failed before any reply was stored
        if kind in ("paused", "resumed"):
            add(role="assistant", parts=[ToolCall(id=f"p{i}b", name="step", arguments={}),
                                         ToolCall(id=f"p{i}a", name="step", arguments={})])
            if kind == "resumed":  # the results come with the next user message
                add(role="user", parts=[TextPart(text="here"),
                                        ToolResult(call_id=f"p{i}a", content="a"),
                                        ToolResult(call_id=f"p{i}b", content="b")])
            else:  # the results start the next piece, out of order
                add(role="tool", parts=[ToolResult(call_id=f"p{i}a", content="a")])
            continue
        add(role="assistant", content=f"answer {i}")
    return out


def _kept_turns(adapter: str) -> dict[Any, str]:
    module = {"anthropic": _anthropic_parts, "gemini": _gemini_parts}[adapter]
    return {k: json.dumps(v[1]) for k, v in module._TURNS._entries.items()}


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("adapter", ["anthropic", "gemini"])
def test_kept_turns_join_as_a_fresh_translation(adapter: str, seed: int) -> None:
    """The Anthropic and Gemini adapters keep whole turns too; at each cut they merge
    neighbours of one role (Anthropic also orders the results at the join): moving
    windows over turns that merge must send exactly what the whole list gives, and
    never change a kept turn."""
    translate = TRANSLATIONS[adapter]
    full = _awkward_history(seed, 30)
    starts = [i for i, m in enumerate(full) if m.role == "user"]
    sent = []
    for k, start in enumerate(starts[:-8]):
        window = list(full[start:starts[k + 8]])
        for round_ in (0, 1):
            conversation = [*window, *_steps(window, round_)]
            kept = translate(conversation, window)
            assert json.dumps(kept) == json.dumps(translate(conversation, None))
        before = _kept_turns(adapter)
        sent.append(translate([*window, *_steps(window, 0)], list(window))[1])
        after = _kept_turns(adapter)
        assert before and all(after[k] == v for k, v in before.items())  # never changed
    if adapter == "anthropic":  # (Gemini translates a window at once when a turn in it
        # reads the turns before, as these do: see the next test)
        assert any(a is b for one, two in itertools.pairwise(sent) for a in two for b in one)


@pytest.mark.parametrize("adapter", ["anthropic", "gemini", "gemini_rest"])
def test_a_new_turns_history_reuses_the_kept_turns_across_merges(adapter: str) -> None:
    """As the chat-style adapters do: of the 4 turns a new window shares with the one
    before, the wire forms sent are the very objects made before (all but the newest
    kept message, which Anthropic copies as the turn's first message may merge in)."""
    translate = TRANSLATIONS[adapter]
    before, after = _windows(_history(8), 20)[:2]
    sent_before = translate([*before, *_steps(before, 0)], before)[1]
    sent_after = translate([*after, *_steps(after, 0)], after)[1]
    shared = len(translate(before[4:], None)[1])
    reused = [any(a is b for b in sent_before) for a in sent_after[:shared]]
    assert shared >= 8 and sum(reused) >= shared - 1
    assert json.dumps(sent_after) == json.dumps(translate([*after, *_steps(after, 0)], None)[1])
