"""In-process session storage: fast, nothing survives the process. For tests and demos."""

from __future__ import annotations

import bisect
import copy
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from langswarm_runtime.errors import ConcurrencyError, SessionNotFound, StorageError
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.storage.base import ISessionStorage, pending_seqs
from langswarm_runtime.session.storage.blobs import blob_refs, split_media
from langswarm_runtime.session.text import check_record, check_turn

__all__ = ["MemorySessionStorage"]


@dataclass
class _Entry:
    record: SessionRecord
    messages: list[Message] = field(default_factory=list)
    #: Highest seq ever handed out; seqs are never reused, even after a placeholder is
    #: removed, so a stale status update can never hit a newer message.
    last_seq: int = 0


def _copy_message(message: Message, **update: object) -> Message:
    return message.model_copy(update=update or None, deep=True)


class MemorySessionStorage(ISessionStorage):
    """Keeps sessions in a dict. Safe to share between tasks and threads.

    Every value goes in and comes out as a deep copy, so callers can never change stored
    state by mutating what they passed or got back.
    """

    def __init__(self) -> None:
        # A threading lock (not asyncio.Lock): no operation awaits while holding it, and it
        # keeps the store safe when several event loops in several threads share it.
        self._lock = threading.Lock()
        self._sessions: dict[str, _Entry] = {}
        #: Media bytes by sha256, and the sessions that reference each.
        self._blobs: dict[str, bytes] = {}
        self._blob_refs: dict[str, set[str]] = {}
        #: The blobs each session ever referenced (pending steps that a commit later
        #: replaced included), so its deletion releases them all.
        self._session_blobs: dict[str, set[str]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("memory storage is closed")

    async def create_session(self, record: SessionRecord) -> None:
        """Store a new session; ``StorageError`` if the id already exists."""
        # Refuse what the persistent storages cannot hold, so code tested on memory
        # behaves the same on them.
        check_record(record)
        with self._lock:
            self._check_open()
            if record.session_id in self._sessions:
                raise StorageError(f"session already exists: {record.session_id}")
            self._sessions[record.session_id] = _Entry(record.model_copy(deep=True))

    async def load_session(self, session_id: str) -> SessionRecord | None:
        """The record, or None."""
        with self._lock:
            self._check_open()
            entry = self._sessions.get(session_id)
            return entry.record.model_copy(deep=True) if entry else None

    async def save_session(self, record: SessionRecord) -> None:
        """Update a record if its version matches the stored one; bumps ``record.version``."""
        check_record(record)
        with self._lock:
            self._check_open()
            entry = self._sessions.get(record.session_id)
            if entry is None:
                raise SessionNotFound(f"session not found: {record.session_id}")
            if entry.record.version != record.version:
                raise ConcurrencyError(
                    f"session {record.session_id} changed underneath (stored version "
                    f"{entry.record.version}, given {record.version})"
                )
            stored = record.model_copy(deep=True)
            stored.version = record.version + 1
            entry.record = stored
            record.version += 1

    async def delete_session(self, session_id: str) -> bool:
        """Delete record and messages; True if it existed."""
        with self._lock:
            self._check_open()
            entry = self._sessions.pop(session_id, None)
            if entry is None:
                return False
            for sha in self._session_blobs.pop(session_id, set()):
                refs = self._blob_refs.get(sha)
                if refs is not None:
                    refs.discard(session_id)
                    if not refs:  # the last session that referenced it
                        del self._blob_refs[sha]
                        self._blobs.pop(sha, None)
            return True

    async def load_blob(self, sha256: str) -> bytes | None:
        """The bytes of a stored image or file, or None."""
        with self._lock:
            self._check_open()
            return self._blobs.get(sha256)

    def _keep_blobs(
        self, session_id: str, messages: list[Message], blobs: dict[str, bytes]
    ) -> None:
        self._blobs.update(blobs)
        for sha in blob_refs(messages):
            self._blob_refs.setdefault(sha, set()).add(session_id)
            self._session_blobs.setdefault(session_id, set()).add(sha)

    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[SessionRecord]:
        """Sessions, newest-updated first (ties by session id, descending)."""
        if limit < 0:
            raise StorageError(f"limit must be >= 0, got {limit}")
        with self._lock:
            self._check_open()
            records = [
                e.record
                for e in self._sessions.values()
                if user_id is None or e.record.user_id == user_id
            ]
            records.sort(key=lambda r: (r.updated_at, r.session_id), reverse=True)
            if cursor is not None:
                anchor = self._sessions.get(cursor)
                if anchor is None:
                    raise StorageError(f"unknown cursor: {cursor}")
                key = (anchor.record.updated_at, anchor.record.session_id)
                records = [r for r in records if (r.updated_at, r.session_id) < key]
            return [r.model_copy(deep=True) for r in records[:limit]]

    def _append_locked(self, entry: _Entry, messages: Sequence[Message]) -> list[Message]:
        stored: list[Message] = []
        for message in messages:
            entry.last_seq += 1
            stored.append(_copy_message(message, seq=entry.last_seq))
        entry.messages.extend(stored)
        return [m.model_copy(deep=True) for m in stored]

    async def append_messages(
        self, session_id: str, messages: Sequence[Message]
    ) -> list[Message]:
        """Append atomically; return copies with ``seq`` assigned."""
        check_turn(messages)
        stripped, blobs = split_media(messages)
        with self._lock:
            self._check_open()
            entry = self._sessions.get(session_id)
            if entry is None:
                raise SessionNotFound(f"session not found: {session_id}")
            self._keep_blobs(session_id, stripped, blobs)
            return self._append_locked(entry, stripped)

    async def load_messages(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:
        """Messages oldest first; ``last`` walks back from the end, so it costs O(last)
        when no status filter skips many messages."""
        if last is not None and last < 0:
            raise StorageError(f"last must be >= 0, got {last}")
        wanted = None if statuses is None else {MessageStatus(s) for s in statuses}
        with self._lock:
            self._check_open()
            entry = self._sessions.get(session_id)
            if entry is None:
                return []
            picked: list[Message] = []
            for message in reversed(entry.messages):
                if last is not None and len(picked) >= last:
                    break
                assert message.seq is not None
                if after_seq is not None and message.seq <= after_seq:
                    break
                if wanted is None or message.status in wanted:
                    picked.append(message)
            picked.reverse()
            return [m.model_copy(deep=True) for m in picked]

    async def update_message_status(
        self, session_id: str, seqs: Sequence[int], status: MessageStatus
    ) -> None:
        """Set the status of the given messages; unknown seqs or sessions are ignored."""
        status = MessageStatus(status)
        targets = set(seqs)
        with self._lock:
            self._check_open()
            entry = self._sessions.get(session_id)
            if entry is None:
                return
            if targets:  # the messages are in seq order: only the tail from the first
                i = _index_of_seq(entry.messages, min(targets))
                entry.messages[i:] = [
                    _copy_message(m, status=status) if m.seq in targets else m
                    for m in entry.messages[i:]
                ]

    async def commit_turn(
        self,
        session_id: str,
        pending_seq: int | Sequence[int] | None,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        provider_state: dict[str, Any] | None = None,
    ) -> list[Message]:
        """Remove the non-committed placeholders ``pending_seq`` and append ``messages``;
        with ``usage``/``provider_state``, update the record too (one locked step)."""
        check_turn(messages, provider_state)
        placeholders = set(pending_seqs(pending_seq))
        messages, blobs = split_media(messages)
        state = copy.deepcopy(provider_state) if provider_state is not None else None
        with self._lock:
            self._check_open()
            entry = self._sessions.get(session_id)
            if entry is None:
                raise SessionNotFound(f"session not found: {session_id}")
            if placeholders:  # pending messages are at the tail: O(turn), not O(history)
                i = _index_of_seq(entry.messages, min(placeholders))
                entry.messages[i:] = [
                    m
                    for m in entry.messages[i:]
                    if m.seq not in placeholders or m.status == MessageStatus.COMMITTED
                ]
            self._keep_blobs(session_id, messages, blobs)
            stored = self._append_locked(entry, messages)
            if usage is not None or state is not None:
                record = entry.record
                update: dict[str, Any] = {
                    "updated_at": time.time(),
                    "version": record.version + 1,
                }
                if usage is not None:
                    update["usage"] = record.usage + usage
                if state is not None:
                    update["provider_state"] = state
                # Shallow: the stored record is never handed out without a deep copy.
                entry.record = record.model_copy(update=update)
            return stored

    async def close(self) -> None:
        """Drop everything; idempotent."""
        with self._lock:
            self._closed = True
            self._sessions.clear()
            self._blobs.clear()
            self._blob_refs.clear()
            self._session_blobs.clear()


@hookimpl
def register_storages(register: object) -> None:
    """Register the ``memory`` storage type (no options)."""
    register("memory", MemorySessionStorage)  # type: ignore[operator]


def _index_of_seq(messages: list[Message], seq: int) -> int:
    """The index of the first of ``messages`` (in seq order) whose seq is ``seq`` or
    more."""
    return bisect.bisect_left(messages, seq, key=_seq)


def _seq(message: Message) -> int:
    assert message.seq is not None  # stored messages always have one
    return message.seq
