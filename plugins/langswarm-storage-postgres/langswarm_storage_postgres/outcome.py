"""What became of a write whose answer was lost.

When the connection drops after a write was sent, the client cannot know whether the
server applied it; reporting a failure then is a guess (and a retry stores the turn
twice). The server can tell, two ways:

- a write transaction of several statements learns its own id (``pg_current_xact_id()``)
  in its first statement, and after the loss a fresh connection asks
  ``pg_xact_status(id)``: ``committed`` or ``aborted`` (``resolve``);
- a write of one autocommit statement (the usual append, one round trip) cannot learn
  its id before it commits, so it carries a random ``write_id`` on its first row
  instead, and its connection holds a session-level advisory lock on a random key of
  its own, taken in an earlier round trip. After the loss a fresh connection waits until
  no server process holds that lock (the old one exited, or is ended here): from then
  on the write can no longer run, so its row either is there (applied) or never will be
  (``resolve_write``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from langswarm_runtime.errors import StorageError

__all__ = ["WriteTicket", "resolve", "resolve_write"]

T = TypeVar("T")

#: Status polls (50 ms apart) before ending a backend that still holds the transaction
#: open: the server has not noticed its client is gone, as over a half-open TCP link.
_POLLS_BEFORE_TERMINATE = 20


@dataclass
class WriteTicket:
    """What a write transaction knows about itself while it runs."""

    xid: str | None = None  # the server's transaction id (xid8, as text)
    pid: int | None = None  # the server process running it
    commit_sent: bool = False  # every statement ran; only COMMIT was left


async def _ask(
    connect: Callable[[], Awaitable[Any]],
    budget: float,
    question: Callable[[Any, float], Awaitable[T | None]],
) -> T | None:
    """``question(conn, deadline)`` on a fresh connection, connecting again while the
    server cannot be reached; None when there is no answer within ``budget`` seconds
    (``question`` returns None itself when its deadline passes)."""
    import psycopg

    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    while True:
        try:
            conn = await connect()
            try:
                return await question(conn, deadline)
            finally:
                await conn.close()
        except psycopg.Error:
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.1)


async def resolve(
    connect: Callable[[], Awaitable[Any]],
    ticket: WriteTicket,
    *,
    where: str,
    what: str,
    budget: float,
) -> None:
    """Return if the transaction committed; raise ``StorageError`` saying it was not
    applied if the server rolled it back, or that its outcome is unknown if the server
    cannot be asked within ``budget`` seconds."""
    status = await _ask(connect, budget, lambda conn, deadline: _status(conn, ticket, deadline))
    if status == "committed":
        return
    if status == "aborted":
        raise StorageError(
            f"{where}: {what} failed: the connection was lost during COMMIT and the server "
            "rolled the transaction back, so it was not applied"
        )
    raise StorageError(
        f"{where}: {what}: outcome unknown: the connection was lost after COMMIT was sent "
        f"and the server could not be asked within {budget:g}s whether it was applied"
    )


async def _status(conn: Any, ticket: WriteTicket, deadline: float) -> str | None:
    """``committed``, ``aborted``, or None (unknown, or still in progress at the
    deadline)."""
    loop = asyncio.get_running_loop()
    polls = 0
    while True:
        cur = await conn.execute("SELECT pg_xact_status(%s::xid8)", (ticket.xid,))
        row = await cur.fetchone()
        status = None if row is None else row[0]
        if status != "in progress":
            return str(status) if status is not None else None
        if loop.time() >= deadline:
            return None
        polls += 1
        if polls == _POLLS_BEFORE_TERMINATE:
            # End the backend still holding our transaction, so the server decides it
            # now; matched on its pid *and* transaction id, never another session's.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid = %s AND backend_xid = %s::xid8::xid",
                (ticket.pid, ticket.xid),
            )
        await asyncio.sleep(0.05)


#: The server process holding a connection's identity lock (``pg_advisory_lock(key)``
#: with a bigint key shows as classid = high 32 bits, objid = low 32 bits, objsubid 1).
_HOLDER = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1"
)


async def resolve_write(
    connect: Callable[[], Awaitable[Any]],
    *,
    lock_key: int,
    find: tuple[Any, tuple[Any, ...]],
    where: str,
    what: str,
    budget: float,
) -> Any:
    """The row ``find`` (a query and its parameters) returns once the write can no
    longer run, if it was applied; else ``StorageError`` saying it was not applied, or
    that its outcome is unknown if the server cannot be asked within ``budget`` s."""
    key = (lock_key >> 32, lock_key & 0xFFFFFFFF)

    async def settled(conn: Any, deadline: float) -> Any:
        loop = asyncio.get_running_loop()
        polls = 0
        while True:
            cur = await conn.execute(_HOLDER, key)
            if await cur.fetchone() is None:
                # No process holds the lock, so none is left that could still run the
                # write: what is stored now is final.
                cur = await conn.execute(*find)
                found = await cur.fetchone()
                if found is not None:
                    return found
                raise StorageError(
                    f"{where}: {what} failed: the connection was lost and the write was "
                    "not applied"
                )
            if loop.time() >= deadline:
                return None
            polls += 1
            if polls == _POLLS_BEFORE_TERMINATE:
                # The old process has not noticed its client is gone (a half-open
                # link): end it, matched on the lock only that process holds.
                await conn.execute(f"SELECT pg_terminate_backend(pid) FROM ({_HOLDER}) AS h", key)
            await asyncio.sleep(0.05)

    found = await _ask(connect, budget, settled)
    if found is None:
        raise StorageError(
            f"{where}: {what}: outcome unknown: the connection was lost after the write "
            f"was sent and the server could not be asked within {budget:g}s whether it "
            "was applied"
        )
    return found
