"""Context-window policy for hybrid sessions: which committed history goes with a call.

``select_context`` returns the newest *whole* turns (a user message and its reply, never
split) that fit ``max_messages`` and ``max_tokens``, oldest first. The system prompt is
not returned but always kept: its tokens are taken from ``max_tokens`` first.

Only the tail is read: ``load_messages(last=k)`` with ``k`` doubling until the window's
edge is found, so a 10,000-turn session costs about what its window costs.

``step: N`` (truncate only) makes the window cache-friendly: once the history overflows,
the window's start moves in steps of N sequence numbers (about N/3 turns: a turn takes a
pending record and the committed pair) instead of one turn per turn, so the
prompt's prefix stays byte-identical between steps and providers' prompt caches hit
(see ``_stepped``).

Tokens are counted with the provider's own local counter when it has one
(``count_tokens``), else estimated as ``ceil(chars / 4)``; every message adds
``MESSAGE_OVERHEAD`` tokens for its role and framing.

``strategy: summarize`` keeps turns that fall out of the window as a summary: a message
with role ``summary`` stored in the session (its ``metadata["covers_to_seq"]`` says which
turns it covers), put first in the context and counted against both limits. When the
turns after the summary no longer fit, the older ones are folded into a fresh summary
(previous summary + those turns) and the window restarts from the newest turns that fit
in *half* the limits. Summarising in such steps, rather than on every turn, costs one
extra provider call every few turns instead of every turn, and keeps the prefix of the
prompt byte-stable in between, which is what providers' prompt caches reward.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.providers.base import ContextConfig
from langswarm_runtime.session.models import Message, MessageStatus
from langswarm_runtime.session.parts import FilePart, ImagePart, ReasoningPart, ToolCall, ToolResult
from langswarm_runtime.session.storage.base import ISessionStorage

__all__ = [
    "KEEP_FRACTION",
    "MESSAGE_OVERHEAD",
    "STRATEGIES",
    "SUMMARY_ROLE",
    "estimate_tokens",
    "select_context",
]

log = logging.getLogger(__name__)

#: Tokens added per message for role and framing (OpenAI documents 3-4 per message).
MESSAGE_OVERHEAD = 4
STRATEGIES = ("truncate", "summarize")
SUMMARY_ROLE: Final = "summary"
#: After a summary refresh, the window restarts from turns fitting this share of the limits.
KEEP_FRACTION = 0.5
#: Tail size read first when ``max_messages`` is not set.
_DEFAULT_FIRST_READ = 64
_COMMITTED = (MessageStatus.COMMITTED,)
#: Roles that continue the turn a user message opened: the replies, the tool calls they
#: make and the tool results. A turn is kept or dropped whole, so a tool call never
#: travels without its result, nor a result without its call.
_IN_TURN = frozenset({"assistant", "tool"})
_CHAT = frozenset({"user", "assistant", "tool"})


def estimate_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: about right for English with common BPE tokenizers."""
    return math.ceil(len(text) / 4)


@dataclass(slots=True)
class _Turn:
    messages: list[Message] = field(default_factory=list)
    tokens: int = 0

    @property
    def last_seq(self) -> int:
        seq = self.messages[-1].seq
        return -1 if seq is None else seq


class _Counter:
    """Token counts per message, cached by seq across the reads of one selection."""

    def __init__(
        self,
        count_tokens: Callable[[str], int] | None,
        media_tokens: Callable[[ImagePart | FilePart], int] | None = None,
    ) -> None:
        self._count = count_tokens
        self._media = media_tokens or default_media_tokens
        self._cache: dict[int, int] = {}

    def text(self, text: str) -> int:
        if self._count is not None:
            try:
                n = self._count(text)
                if not inspect.isawaitable(n):
                    return int(n)
                n.close()  # type: ignore[attr-defined]  # coroutine: cannot await here
            except Exception as exc:  # noqa: BLE001 - a counter is an optimisation, never a failure
                log.debug("count_tokens failed (%s); using the estimate", exc)
                self._count = None
        return estimate_tokens(text)

    def message(self, m: Message) -> int:
        if m.seq is not None and m.seq in self._cache:
            return self._cache[m.seq]
        n = self.text(m.content) + MESSAGE_OVERHEAD
        if m.parts:
            n += sum(self.part(p) for p in m.parts)
        if m.seq is not None:
            self._cache[m.seq] = n
        return n


    def part(self, part: object) -> int:
        """Tokens of a non-text part: media by the provider's documented estimate."""
        if isinstance(part, (ImagePart, FilePart)):
            return self._media(part)
        if isinstance(part, ToolCall):
            return self.text(part.name) + self.text(json.dumps(part.arguments)) + 8
        if isinstance(part, ToolResult):
            return self.text(part.content) + 8
        if isinstance(part, ReasoningPart):
            return self.text(part.text)
        return 0


def default_media_tokens(part: ImagePart | FilePart) -> int:
    """Media tokens when the provider is not known (the Anthropic rule)."""
    from langswarm_runtime.providers.media_tokens import media_tokens

    return media_tokens(None, part)


def _group_turns(
    messages: Sequence[Message], at_start: bool, counter: _Counter | None
) -> list[_Turn]:
    """User/assistant messages grouped into turns, oldest first. A group cut off by the
    read (the slice starts with a reply) is dropped unless this is the history's start.
    ``counter`` None: no token limit, so tokens are not counted (they stay 0)."""
    turns: list[_Turn] = []
    count = counter.message if counter is not None else None
    turn = _Turn()  # placeholder, never returned
    for m in messages:
        role = m.role
        if role == "user" or (role in _IN_TURN and not turns):
            turn = _Turn([m], count(m) if count is not None else 0)
            turns.append(turn)
        elif role in _IN_TURN:
            turn.messages.append(m)
            if count is not None:
                turn.tokens += count(m)
    if turns and not at_start and turns[0].messages[0].role != "user":
        turns.pop(0)
    return turns


def _fit(turns: Sequence[_Turn], max_messages: float, max_tokens: float) -> int:
    """How many of the newest turns fit, taken newest first and stopping at the first
    that does not (an older turn never jumps over a newer one)."""
    used_m = used_t = 0
    n = 0
    for turn in reversed(turns):
        used_m += len(turn.messages)
        used_t += turn.tokens
        if used_m > max_messages or used_t > max_tokens:
            break
        n += 1
    return n


async def _tail(
    storage: ISessionStorage, session_id: str, k: int | None
) -> tuple[list[Message], bool]:
    """The newest ``k`` committed messages and whether they reach the history's start."""
    loaded = await storage.load_messages(session_id, last=k, statuses=_COMMITTED)
    return loaded, k is None or len(loaded) < k


async def select_context(
    storage: ISessionStorage,
    session_id: str,
    policy: ContextConfig,
    *,
    system_prompt: str | None = None,
    count_tokens: Callable[[str], int] | None = None,
    summarize: Callable[[list[Message]], Awaitable[str]] | None = None,
    media_tokens: Callable[[ImagePart | FilePart], int] | None = None,
) -> list[Message]:
    """The committed history to send with the next message, oldest first (see the module
    docstring). Neither the new user message nor the system prompt is included.

    ``count_tokens``: the provider's cheap local counter, if any. ``summarize``: turns a
    list of messages (the previous summary first, if any) into summary text; required
    for ``strategy: summarize``. ``media_tokens``: tokens of an image or file part
    (default: ``providers.media_tokens`` without a provider).
    """
    if policy.strategy not in STRATEGIES:
        raise ConfigError(
            f"unknown context strategy {policy.strategy!r} (use one of: {', '.join(STRATEGIES)})",
            key_path="context.strategy",
        )
    if policy.strategy == "summarize" and summarize is None:
        raise ConfigError("context strategy 'summarize' needs a summarize function",
                          key_path="context.strategy")
    counter = _Counter(count_tokens, media_tokens)
    max_messages: float = policy.max_messages if policy.max_messages is not None else math.inf
    max_tokens: float = policy.max_tokens if policy.max_tokens is not None else math.inf
    if system_prompt:
        max_tokens -= counter.text(system_prompt) + MESSAGE_OVERHEAD
    if max_tokens <= 0:
        return []
    if policy.strategy == "truncate":
        # Without a token limit, counting tokens (most of a selection's CPU) is skipped.
        needed = counter if max_tokens != math.inf else None
        return await _truncate(storage, session_id, needed, max_messages, max_tokens, policy.step)
    assert summarize is not None
    return await _summarized(storage, session_id, counter, max_messages, max_tokens, summarize)


def _first_read(max_messages: float) -> int | None:
    if max_messages == math.inf:
        return _DEFAULT_FIRST_READ
    # +1 for a reply whose user message is cut off, +2 to see the turn that overflows.
    return int(max_messages) + 3


async def _truncate(
    storage: ISessionStorage,
    session_id: str,
    counter: _Counter | None,
    max_messages: float,
    max_tokens: float,
    step: int | None = None,
) -> list[Message]:
    k = _first_read(max_messages)
    if counter is None and (step is None or step <= 1):
        # The common case (a message limit only): the same selection without turn objects.
        while True:
            loaded, at_start = await _tail(storage, session_id, k)
            kept_messages, all_fit = _newest_turns(loaded, at_start, max_messages)
            if at_start or not all_fit:
                return kept_messages
            assert k is not None
            k *= 2
    while True:
        loaded, at_start = await _tail(storage, session_id, k)
        turns = _group_turns(loaded, at_start, counter)
        n = _fit(turns, max_messages, max_tokens)
        if at_start or n < len(turns):
            break
        assert k is not None
        k *= 2  # every loaded turn fits: older ones might too
    kept = turns[len(turns) - n :]
    if step is not None and step > 1 and 0 < n < len(turns):
        kept = _stepped(kept, turns[len(turns) - n - 1], step)
    return [m for turn in kept for m in turn.messages]


def _newest_turns(
    messages: Sequence[Message], at_start: bool, max_messages: float
) -> tuple[list[Message], bool]:
    """``_group_turns`` + ``_fit`` by message count alone, walking back from the newest
    message: the newest whole turns that fit, and whether every turn in ``messages`` did
    (a reply group cut off by the read is no turn unless the read reached the start)."""
    used = 0
    in_turn = 0  # user/assistant messages of the turn being walked back through
    start = len(messages)  # where the kept turns begin
    for i in range(len(messages) - 1, -1, -1):
        role = messages[i].role
        if role in _IN_TURN:
            in_turn += 1
        elif role == "user":
            if used + in_turn + 1 > max_messages:
                return _chat_only(messages[start:]), False
            used += in_turn + 1
            in_turn = 0
            start = i
    if in_turn and at_start:  # replies before the first user message form a turn
        if used + in_turn > max_messages:
            return _chat_only(messages[start:]), False
        start = 0
    return _chat_only(messages[start:]), True


def _chat_only(messages: Sequence[Message]) -> list[Message]:
    return [m for m in messages if m.role in _CHAT]


def _stepped(fitting: list[_Turn], overflow: _Turn, step: int) -> list[_Turn]:
    """The cache-friendly window (``context.step``): of the turns that fit, those
    starting at or after the first multiple of ``step`` (a sequence number) above the
    newest turn that does not fit. That boundary depends only on where the overflow is,
    rounded to ``step``, so it stays put while the sequence numbers grow by ``step``
    (about ``step / 3`` turns), and so does the prompt prefix. Sequence numbers, not a
    count of messages, because they are permanent: the boundary needs no state and no
    read beyond the window."""
    first = overflow.messages[0].seq
    if first is None:
        return fitting
    boundary = (first // step + 1) * step
    kept = [t for t in fitting if (t.messages[0].seq or 0) >= boundary]
    # A window of huge turns (token limit) can leave nothing past the boundary: keep the
    # newest turn rather than send no history at all.
    return kept or fitting[-1:]


async def _summarized(
    storage: ISessionStorage,
    session_id: str,
    counter: _Counter,
    max_messages: float,
    max_tokens: float,
    summarize: Callable[[list[Message]], Awaitable[str]],
) -> list[Message]:
    # 1. Find the newest summary (in steady state it sits within about one window of
    #    the end, because a refresh happens whenever the turns after it overflow).
    k = _first_read(max_messages)
    while True:
        loaded, at_start = await _tail(storage, session_id, k)
        summaries = [m for m in loaded if m.role == SUMMARY_ROLE]
        if summaries or at_start:
            break
        assert k is not None
        k *= 2
    summary = summaries[-1] if summaries else None
    covered = _covered_seq(summary)

    # 2. Every committed turn after what the summary covers.
    if at_start or (loaded and loaded[0].seq is not None and loaded[0].seq <= covered):
        since = [m for m in loaded if m.seq is not None and m.seq > covered]
    else:
        since = await storage.load_messages(session_id, after_seq=covered, statuses=_COMMITTED)
    # A summary covers whole turns, so what follows it starts on a turn boundary.
    turns = _group_turns(since, True, counter)

    # 3. They fit beside the summary: nothing to do.
    def room(s: Message | None, share: float = 1.0) -> tuple[float, float]:
        used_m, used_t = (1, counter.message(s)) if s is not None else (0, 0)
        return max_messages * share - used_m, max_tokens * share - used_t

    if _fit(turns, *room(summary)) == len(turns):
        return ([summary] if summary else []) + [m for t in turns for m in t.messages]

    # 4. Refresh: fold the older turns into a new summary; keep the newest that fit in
    #    a share of the limits. Repeat if the new summary leaves too little room.
    # Never less than the newest turn when it fits: with a small window, half the limits
    # minus the summary could hold nothing, and the model would lose the last exchange.
    keep = max(_fit(turns, *room(summary, KEEP_FRACTION)), min(1, _fit(turns, *room(summary))))
    while True:
        dropped = turns[: len(turns) - keep]
        if dropped:
            material = ([summary] if summary else []) + [m for t in dropped for m in t.messages]
            text = await summarize(material)
            summary = Message(
                role=SUMMARY_ROLE,
                content=text,
                status=MessageStatus.COMMITTED,
                metadata={"covers_to_seq": dropped[-1].last_seq, "summarized_turns":
                          len(dropped) + _summarized_turns(summary)},
            )
            turns = turns[len(turns) - keep :]
        fits = _fit(turns, *room(summary))
        if fits == len(turns) or not dropped:
            keep = fits
            turns = turns[len(turns) - keep :]
            break
        keep = fits
    if summary is not None and summary.seq is None:
        (summary,) = await storage.append_messages(session_id, [summary])
    return ([summary] if summary else []) + [m for t in turns for m in t.messages]


def _covered_seq(summary: Message | None) -> int:
    if summary is None:
        return -1
    value = summary.metadata.get("covers_to_seq")
    if isinstance(value, int):
        return value
    # A summary without the marker (written by hand or an older version) covers what
    # came before it.
    return (summary.seq or 0) - 1


def _summarized_turns(summary: Message | None) -> int:
    if summary is None:
        return 0
    value = summary.metadata.get("summarized_turns", 0)
    return value if isinstance(value, int) else 0
