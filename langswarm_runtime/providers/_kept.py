"""Kept translations: what an adapter made of messages it will be asked about again.

A hybrid tool loop sends the same history list on every call of a turn (the session
passes the same list object; neither the list nor its committed messages are ever
changed in place), and every turn sends mostly the same stored messages as the one
before: the window moves by whole turns. Their wire forms are kept here, by object,
bounded, and shared by the calls that use them: callers never change a kept value (they
copy what they must change).

Nothing holding media bytes is kept: those messages are rebuilt with their bytes on
every call (the session does not cache them either), and keeping them would keep the
bytes alive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import is_
from typing import Generic, TypeVar

from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import FilePart, ImagePart

__all__ = ["KeptForms", "KeptHistories", "KeptMessages", "KeptTurns", "holds_bytes"]

T = TypeVar("T")
K = TypeVar("K")
W = TypeVar("W")
S = TypeVar("S")


def holds_bytes(message: Message) -> bool:
    """Whether ``message`` carries an image's or file's bytes."""
    return any(isinstance(p, (ImagePart, FilePart)) and p.data is not None for p in message.parts)


class KeptHistories(Generic[T]):
    """Translations of recent history lists, by list object and a style key."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._entries: dict[tuple[int, str], tuple[Sequence[Message], T]] = {}

    def prefix(self, messages: Sequence[Message], history: Sequence[Message] | None) -> int:
        """``len(history)`` when ``messages`` starts with ``history`` and its translation
        may be kept; 0 otherwise (translate everything)."""
        if not history:
            return 0
        n = len(history)
        if n > len(messages) or messages[0] is not history[0] or messages[n - 1] is not history[-1]:
            return 0
        return n

    def get(
        self,
        history: Sequence[Message],
        style: str,
        make: Callable[[], T],
        keep: Callable[[T], bool] | None = None,
    ) -> T:
        """The kept translation of ``history`` in ``style``, made now if there is none
        (and kept unless the history holds media bytes; ``keep``, when given, tells
        that from the made value instead of a look at every message)."""
        key = (id(history), style)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is history:  # the entry keeps it alive: same id
            return hit[1]
        value = make()
        if keep is not None:
            if not keep(value):
                return value
        elif any(m.parts and holds_bytes(m) for m in history):
            return value
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = (history, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)


class KeptMessages(Generic[T]):
    """Wire forms of stored messages with parts, by message object and a style key."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: dict[tuple[int, str], tuple[Message, T]] = {}

    def get(self, message: Message, style: str, make: Callable[[Message], T]) -> T:
        if not message.parts or message.seq is None or holds_bytes(message):
            return make(message)
        key = (id(message), style)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is message:
            return hit[1]
        value = make(message)
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = (message, value)
        return value


class KeptTurns(Generic[W, S]):
    """Wire forms of a history's whole turns, by their message objects and a style key.

    A history is cut before each ``user`` message (a turn's first), and each piece is
    translated on its own: for the translators that use this, that gives exactly the
    translation of the whole list (nothing carries across a user message but the state
    ``make`` returns, which only the messages after the history read). A new turn's
    history shares all its turns but the newest with the one before, so its translation
    is mostly kept pieces."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._entries: dict[
            tuple[int, int, str], tuple[tuple[Message, ...], tuple[list[W], S]]
        ] = {}

    def translate(
        self,
        history: Sequence[Message],
        style: str,
        make: Callable[[Sequence[Message]], tuple[list[W], S]],
        empty: S,
    ) -> tuple[list[W], S, bool]:
        """``(wire, state, keepable)`` of ``history``: the pieces' wire forms in order,
        the last piece's state (``empty`` for an empty history), and whether no piece
        holds media bytes (then the whole may be kept too)."""
        out: list[W] = []
        state = empty
        keepable = True
        for wire, state, kept in self.pieces(history, style, make):
            out += wire
            keepable = keepable and kept
        return out, state, keepable

    def pieces(
        self,
        history: Sequence[Message],
        style: str,
        make: Callable[[Sequence[Message]], tuple[list[W], S]],
    ) -> list[tuple[list[W], S, bool]]:
        """Each whole turn's ``(wire, state, kept)``, oldest first, for translators
        whose pieces are joined by a rule of their own (the Anthropic adapter merges
        neighbours of one role across a cut)."""
        out: list[tuple[list[W], S, bool]] = []
        start = 0
        end = len(history)
        for i in range(1, end + 1):
            if i == end or history[i].role == "user":
                out.append(self._piece(history[start:i], style, make))
                start = i
        return out

    def _piece(
        self,
        piece: Sequence[Message],
        style: str,
        make: Callable[[Sequence[Message]], tuple[list[W], S]],
    ) -> tuple[list[W], S, bool]:
        key = (id(piece[0]), len(piece), style)
        hit = self._entries.get(key)
        # The entry keeps its messages alive, so equal ids are the same objects.
        if hit is not None and all(map(is_, hit[0], piece)):
            return (*hit[1], True)
        wire, state = make(piece)
        if any(m.parts and holds_bytes(m) for m in piece):
            return wire, state, False
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = (tuple(piece), (wire, state))
        return wire, state, True

    def __len__(self) -> int:
        return len(self._entries)


class KeptForms(Generic[K, T]):
    """Another form of wire objects the translators keep (the SDK's own message models,
    the REST API's JSON), by object: a kept wire object is sent again, the same object,
    by every later call and turn, and never changed, so its other form is made once."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: dict[int, tuple[K, T]] = {}

    def get(self, wire: K, make: Callable[[K], T], keep: Callable[[K], bool]) -> T:
        """``make(wire)``, kept for ``wire`` when ``keep(wire)`` (not for media bytes)."""
        hit = self._entries.get(id(wire))
        if hit is not None and hit[0] is wire:  # the entry keeps it alive: same id
            return hit[1]
        value = make(wire)
        if keep(wire):
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[id(wire)] = (wire, value)
        return value

    def __contains__(self, wire: object) -> bool:
        hit = self._entries.get(id(wire))
        return hit is not None and hit[0] is wire

