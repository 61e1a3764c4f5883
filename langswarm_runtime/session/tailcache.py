"""A per-session read-through cache of the newest committed messages.

Building the hybrid context re-reads the window's tail on every turn; for a 50-message
window that is most of the runtime's per-turn cost. The cache keeps the tail in memory
and, at the start of each turn, asks the storage only for committed messages after the
newest one it holds: normally the two messages of the previous turn, or more when other
processes wrote to the same session meanwhile. That is correct because storages assign
seqs in increasing order of commit, so nothing can later appear below a seq already seen.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from langswarm_runtime.session.models import Message, MessageStatus
from langswarm_runtime.session.storage.base import ISessionStorage

__all__ = ["TailCache"]

_COMMITTED = (MessageStatus.COMMITTED,)
#: Upper bound on cached messages per session; older ones are dropped (and re-read from
#: storage if a context policy ever asks for more).
MAX_CACHED = 1024


def _committed_only(statuses: Collection[MessageStatus] | None) -> bool:
    return statuses is not None and set(statuses) == {MessageStatus.COMMITTED}


class TailCache:
    """Looks like the storage to ``select_context``; serves committed tail reads of one
    session from memory when it can and forwards everything else."""

    def __init__(self, storage: ISessionStorage, session_id: str) -> None:
        self._storage = storage
        self._session_id = session_id
        self._messages: list[Message] = []
        #: True when ``_messages`` is the whole committed history.
        self._complete = False
        #: Highest committed seq known; None when the cache is empty or invalid.
        self._last_seq: int | None = None

    def invalidate(self) -> None:
        self._messages, self._complete, self._last_seq = [], False, None

    async def refresh(self, pending_seq: int | None = None) -> None:
        """Fetch what was committed since the newest cached message (O(new rows)).

        ``pending_seq``: the seq our own turn's pending record just got. When it directly
        follows the newest cached seq, nothing was appended in between by anyone (seqs
        are unique and increase in append order), so there is nothing to read."""
        if self._last_seq is None:
            return
        if pending_seq is not None and pending_seq == self._last_seq + 1:
            return
        new = await self._storage.load_messages(
            self._session_id, after_seq=self._last_seq, statuses=_COMMITTED
        )
        if new:
            self._messages.extend(new)
            self._last_seq = new[-1].seq
            if len(self._messages) > MAX_CACHED:
                del self._messages[: len(self._messages) - MAX_CACHED]
                self._complete = False

    def add_own_turn(self, pending: int | Sequence[int], stored: Sequence[Message]) -> None:
        """Our own turn was committed as ``stored``. When the seqs prove that nobody else
        appended since the cache was current (the turn's pending records took the seqs
        after the newest cached one, and the turn the seqs right after those), keep the
        turn here, so the next turn reads nothing; otherwise leave it to the next
        ``refresh``."""
        last = self._last_seq
        seqs = [pending] if isinstance(pending, int) else list(pending)
        if last is None or not stored or seqs != list(range(last + 1, last + 1 + len(seqs))):
            return
        first = last + 1 + len(seqs)
        for i, m in enumerate(stored):
            if m.seq != first + i or m.status != MessageStatus.COMMITTED:
                return
        self._messages.extend(stored)
        self._last_seq = stored[-1].seq
        if len(self._messages) > MAX_CACHED:
            del self._messages[: len(self._messages) - MAX_CACHED]
            self._complete = False

    def _fill(self, messages: list[Message], *, complete: bool) -> None:
        self._messages = list(messages[-MAX_CACHED:])
        self._complete = complete and len(messages) <= MAX_CACHED
        self._last_seq = messages[-1].seq if messages else -1

    async def load_messages(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:
        if session_id != self._session_id or not _committed_only(statuses):
            return await self._storage.load_messages(
                session_id, last=last, after_seq=after_seq, statuses=statuses
            )
        cached = self._last_seq is not None
        if after_seq is None and last is not None:
            if cached and (self._complete or len(self._messages) >= last):
                return self._messages[-last:] if last else []
            loaded = await self._storage.load_messages(session_id, last=last, statuses=statuses)
            self._fill(loaded, complete=len(loaded) < last)
            return list(loaded)
        if after_seq is not None and last is None and cached:
            first = self._messages[0].seq if self._messages else None
            if self._complete or (first is not None and first <= after_seq + 1):
                return [m for m in self._messages if m.seq is not None and m.seq > after_seq]
        return await self._storage.load_messages(
            session_id, last=last, after_seq=after_seq, statuses=statuses
        )

    async def append_messages(self, session_id: str, messages: Sequence[Message]) -> list[Message]:
        # Rare (context summaries): simplest to re-read afterwards.
        self.invalidate()
        return await self._storage.append_messages(session_id, messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)
