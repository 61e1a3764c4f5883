"""What became of a write transaction whose answer to ``COMMIT`` was lost.

When the connection drops after ``COMMIT`` was sent, the client cannot know whether the
server applied it; reporting a failure then is a guess (and a retry stores the turn
twice). PostgreSQL can tell: each write transaction learns its own id
(``pg_current_xact_id()``) in its first statement, and after the loss a fresh connection
asks ``pg_xact_status(id)``: ``committed`` or ``aborted``, decided by the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langswarm_runtime.errors import StorageError

__all__ = ["WriteTicket", "resolve"]

#: Status polls (50 ms apart) before ending a backend that still holds the transaction
#: open: the server has not noticed its client is gone, as over a half-open TCP link.
_POLLS_BEFORE_TERMINATE = 20


@dataclass
class WriteTicket:
    """What a write transaction knows about itself while it runs."""

    xid: str | None = None  # the server's transaction id (xid8, as text)
    pid: int | None = None  # the server process running it
    commit_sent: bool = False  # every statement ran; only COMMIT was left


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
    import psycopg

    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    status: str | None = "in progress"
    while True:
        try:
            conn = await connect()
            try:
                status = await _status(conn, ticket, deadline)
            finally:
                await conn.close()
            break
        except psycopg.Error:
            if loop.time() >= deadline:
                status = "in progress"
                break
            await asyncio.sleep(0.1)
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
    """``committed``, ``aborted``, ``in progress`` (deadline reached) or None (unknown)."""
    loop = asyncio.get_running_loop()
    polls = 0
    while True:
        cur = await conn.execute("SELECT pg_xact_status(%s::xid8)", (ticket.xid,))
        row = await cur.fetchone()
        status = None if row is None else row[0]
        if status != "in progress" or loop.time() >= deadline:
            return str(status) if status is not None else None
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
