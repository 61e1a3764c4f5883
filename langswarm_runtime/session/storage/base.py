"""The storage contract. Every storage, built-in or plugin, passes the same conformance suite
(``langswarm_runtime.testing.storage_suite``)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import Any, Self

from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.storage.blobs import dump_parts

__all__ = [
    "ISessionStorage",
    "build_message",
    "dump_json",
    "message_row",
    "pending_seqs",
    "with_seqs",
]


def pending_seqs(pending_seq: int | Sequence[int] | None) -> list[int]:
    """``commit_turn``'s ``pending_seq`` as a list: None, one seq, or several (the
    pending steps of a tool turn)."""
    if pending_seq is None:
        return []
    if isinstance(pending_seq, int):
        return [pending_seq]
    return [int(s) for s in pending_seq]


_MESSAGE_FIELDS = frozenset(Message.model_fields)


def dump_json(value: Any) -> str:
    """Compact JSON text, as the storages keep JSON columns."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def message_row(m: Message) -> tuple[Any, ...]:
    """A message's stored values but its session and seq: ``(role, content, status,
    usage JSON or None, provider_message_id, created_at, metadata JSON or None, parts
    JSON or None)``. Computed before a write takes its lock."""
    return (
        m.role,
        m.content,
        MessageStatus(m.status).value,
        m.usage.model_dump_json() if m.usage is not None else None,
        m.provider_message_id,
        m.created_at,
        dump_json(m.metadata) if m.metadata else None,
        dump_parts(m.parts),
    )


def _construct(values: dict[str, Any], fields_set: set[str]) -> Message:
    message = object.__new__(Message)
    object.__setattr__(message, "__dict__", values)
    object.__setattr__(message, "__pydantic_fields_set__", fields_set)
    object.__setattr__(message, "__pydantic_extra__", None)
    object.__setattr__(message, "__pydantic_private__", None)
    return message


def build_message(values: dict[str, Any]) -> Message:
    """A Message from already-valid values (every field, e.g. a stored row's), without
    re-validating them: what a storage does for each message it reads. The same result
    as ``Message.model_construct`` at a quarter of its cost, which is most of what a
    long read costs in Python (tests/test_storage_sqlite.py checks it still matches a
    validated Message after a pydantic upgrade)."""
    return _construct(values, set(_MESSAGE_FIELDS))


def with_seqs(messages: Sequence[Message], first: int) -> list[Message]:
    """Copies of ``messages`` numbered ``first``, ``first + 1``, ...: what a write
    returns. Built without re-validating (the messages were valid already), at a fraction
    of ``model_copy``'s cost."""
    return [
        _construct({**m.__dict__, "seq": first + i}, {*m.__pydantic_fields_set__, "seq"})
        for i, m in enumerate(messages)
    ]


class ISessionStorage(ABC):
    """Async session store.

    Semantics every implementation keeps:

    - ``append_messages`` writes all its messages in one atomic step, assigns each a
      ``seq`` (unique per session, increasing in append order, gaps allowed) and returns
      copies with ``seq`` set. It never rewrites earlier messages. Safe with concurrent
      writers in other threads, processes and hosts.
    - ``load_messages`` returns messages oldest first. ``last=N`` returns the newest N
      (after the status filter) and costs O(N), not O(history). ``after_seq`` returns
      only messages with a larger seq. ``statuses`` filters by status (None = all).
    - ``save_session`` is version-checked: it raises ``ConcurrencyError`` unless the
      stored version equals ``record.version``; on success it stores and sets
      ``record.version += 1``.
    - ``commit_turn`` with ``usage`` and/or ``provider_state`` also updates the session
      record in the same atomic write, without a version check: ``usage`` is added to
      the record's usage totals (so concurrent commits from any number of writers add
      up exactly), ``provider_state`` (when not None) replaces the record's,
      ``updated_at`` is set to now and the stored ``version`` is bumped by one (a reader
      holding an older copy then gets ``ConcurrencyError`` on ``save_session``). Without
      either, the record is left alone. This saves the turn a separate record write.
    - ``delete_session`` removes the record and its messages; returns whether it existed.
    - ``list_sessions`` returns newest-updated first; ``cursor`` is the ``session_id`` of
      the last record of the previous page.
    - Operations on an unknown session: ``append_messages``/``commit_turn`` raise
      ``SessionNotFound``; ``load_messages`` returns ``[]``.
    - Failures of the underlying store raise ``StorageError`` (never a driver exception).
      A write that may not have reached durable storage is never reported as success.
    - Messages keep their ``parts`` (JSON round-trip). The bytes of image and file parts
      are kept once per storage in a content-addressed blob store (``load_blob``):
      messages are stored and returned with ``data`` dropped (``sha256`` and ``size``
      kept); the same bytes in many messages or sessions are stored once, and deleting
      the last session that references them removes them. A storage without a blob
      store keeps them inline (the base class's ``load_blob`` then finds nothing).
    - Text is stored byte-identical. Writes refuse what not every storage can hold (a NUL
      or a lone surrogate in any string: content, ids, metadata, provider state) with
      ``InvalidText`` before anything is written; ``langswarm_runtime.session.text``
      has the checks (``check_record`` for records, ``check_turn`` for messages).
    """

    @abstractmethod
    async def create_session(self, record: SessionRecord) -> None:
        """Store a new session; ``StorageError`` if the id already exists."""

    @abstractmethod
    async def load_session(self, session_id: str) -> SessionRecord | None:
        """The record, or None."""

    @abstractmethod
    async def save_session(self, record: SessionRecord) -> None:
        """Update a record (version-checked, see class docstring)."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> bool:
        """Delete record and messages; True if it existed."""

    @abstractmethod
    async def list_sessions(
        self,
        *,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> list[SessionRecord]:
        """Sessions, newest-updated first, optionally only one user's."""

    @abstractmethod
    async def append_messages(
        self, session_id: str, messages: Sequence[Message]
    ) -> list[Message]:
        """Append atomically; return the messages with ``seq`` assigned."""

    @abstractmethod
    async def load_messages(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:
        """Messages oldest first (see class docstring)."""

    @abstractmethod
    async def update_message_status(
        self, session_id: str, seqs: Sequence[int], status: MessageStatus
    ) -> None:
        """Set the status of the given messages (pending -> failed/interrupted)."""

    @abstractmethod
    async def commit_turn(
        self,
        session_id: str,
        pending_seq: int | Sequence[int] | None,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        provider_state: dict[str, Any] | None = None,
    ) -> list[Message]:
        """Atomically remove the turn's non-committed placeholders ``pending_seq`` (one
        seq, or several for the pending steps of a tool turn; whatever their status
        now; absent is fine) and append ``messages`` (the turn's messages, so they get
        adjacent seqs); with ``usage``/``provider_state``, update the session record in
        the same write (see the class docstring). Returns the appended messages with
        seqs. ``pending_seqs(pending_seq)`` gives the list."""

    async def load_blob(self, sha256: str) -> bytes | None:
        """The bytes of a stored image or file by their sha256, or None."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
