"""The blob store's statements: media bytes kept once per schema, and which sessions
reference them.

Both run inside the caller's transaction. ``t`` binds ``{s}`` to the quoted schema.

A blob whose last referencing session is deleted goes with it, while another session
may be writing the same bytes at that very moment. Row locks on the blob settle it: a
writer takes a share lock on each blob it references before it commits, and a delete
takes an exclusive lock on the blobs it may remove, then looks for references in a
statement of its own (a fresh snapshot under READ COMMITTED). Whoever locks first wins:
the delete then sees the writer's committed reference and keeps the blob, or the writer
sees the blob gone and writes it again. A committed reference always has its blob.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["drop_references", "keep_blobs"]

#: Media bytes, sent in binary (``%b``): the text format would double them on the wire.
_INSERT_BLOB = (
    "INSERT INTO {s}.blobs (sha256, data, size, created_at) VALUES (%s, %b, %s, %s) "
    "ON CONFLICT (sha256) DO NOTHING"
)


async def keep_blobs(
    conn: Any,
    t: Callable[[str], Any],
    session_id: str,
    blobs: dict[str, bytes],
    refs: set[str],
) -> None:
    """Store a write's media bytes (``blobs``, by sha256) and the session's references
    (``refs``: every sha256 its messages point at, ``blobs``' keys among them)."""
    now = time.time()
    insert = t(_INSERT_BLOB)
    rows = [(sha, data, len(data), now) for sha, data in sorted(blobs.items())]
    shas = sorted(refs)
    async with conn.cursor() as c:
        if rows:
            await c.executemany(insert, rows)
        await c.execute(
            t(
                "INSERT INTO {s}.blob_refs (session_id, sha256) "
                "SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING"
            ),
            (session_id, shas),
        )
        # In one order, so writers and deletes sharing blobs never deadlock.
        await c.execute(
            t("SELECT sha256 FROM {s}.blobs WHERE sha256 = ANY(%s) ORDER BY sha256 FOR KEY SHARE"),
            (shas,),
        )
        present = {row[0] for row in await c.fetchall()}
        again = [row for row in rows if row[0] not in present]
        if again:  # a delete of its last session removed it meanwhile: write it anew
            await c.executemany(insert, again)


async def drop_references(conn: Any, t: Callable[[str], Any], session_id: str) -> None:
    """Remove a deleted session's references, and the blobs no other session has.

    Run after the session's record is deleted: that waits for a write of the session
    still running, so its references are all read here."""
    cur = await conn.execute(
        t("DELETE FROM {s}.blob_refs WHERE session_id = %s RETURNING sha256"), (session_id,)
    )
    shas = sorted(row[0] for row in await cur.fetchall())
    if not shas:
        return
    await conn.execute(
        t("SELECT 1 FROM {s}.blobs WHERE sha256 = ANY(%s) ORDER BY sha256 FOR UPDATE"), (shas,)
    )
    await conn.execute(
        t(
            "DELETE FROM {s}.blobs b WHERE b.sha256 = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM {s}.blob_refs r WHERE r.sha256 = b.sha256)"
        ),
        (shas,),
    )
