"""Kept translations: what an adapter made of messages it will be asked about again.

A hybrid tool loop sends the same history list on every call of a turn (the session
passes the same list object; neither the list nor its committed messages are ever
changed in place), and chat-style adapters see the same stored messages on every turn.
Their wire forms are kept here, by object, bounded, and shared by the calls that use
them: callers never change a kept value (they copy what they must change).

Nothing holding media bytes is kept: those messages are rebuilt with their bytes on
every call (the session does not cache them either), and keeping them would keep the
bytes alive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import FilePart, ImagePart

__all__ = ["KeptHistories", "KeptMessages", "holds_bytes"]

T = TypeVar("T")


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

    def get(self, history: Sequence[Message], style: str, make: Callable[[], T]) -> T:
        """The kept translation of ``history`` in ``style``, made now if there is none
        (and kept unless the history holds media bytes)."""
        key = (id(history), style)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is history:  # the entry keeps it alive: same id
            return hit[1]
        value = make()
        if any(m.parts and holds_bytes(m) for m in history):
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
