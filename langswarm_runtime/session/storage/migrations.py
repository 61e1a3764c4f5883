"""SQLite schema migrations: append-only, named, recorded in ``schema_migrations``.

Never edit or reorder a released migration; add ``m00N_...`` at the end instead. Each
runs once per database file, inside the same ``BEGIN IMMEDIATE`` transaction that records
it, so two processes opening a fresh file at once cannot both apply it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

__all__ = ["MIGRATIONS", "NewerSchema", "applied_migrations", "migrate", "newer_schema"]

Migration = Callable[[sqlite3.Connection], None]


def m001_initial(conn: sqlite3.Connection) -> None:
    """Sessions and messages."""
    conn.execute(
        """
        CREATE TABLE sessions (
            session_id     TEXT PRIMARY KEY,
            user_id        TEXT NOT NULL,
            provider       TEXT NOT NULL,
            model          TEXT,
            backend        TEXT NOT NULL,
            system_prompt  TEXT,
            provider_state TEXT NOT NULL,  -- JSON object
            metadata       TEXT NOT NULL,  -- JSON object
            middleware     TEXT NOT NULL,  -- JSON list
            usage          TEXT NOT NULL,  -- JSON object
            created_at     REAL NOT NULL,
            updated_at     REAL NOT NULL,
            version        INTEGER NOT NULL
        )
        """
    )
    # Listing: newest-updated first, session_id breaks ties so cursors are total.
    conn.execute("CREATE INDEX sessions_by_updated ON sessions (updated_at, session_id)")
    conn.execute(
        "CREATE INDEX sessions_by_user ON sessions (user_id, updated_at, session_id)"
    )
    # Rows are appended at the end of the rowid b-tree (cheapest insert); the unique
    # (session_id, seq) index serves seq allocation (MAX is its last entry) and
    # load_messages(last=N), which reads N index entries backwards: O(N).
    conn.execute(
        """
        CREATE TABLE messages (
            id                  INTEGER PRIMARY KEY,
            session_id          TEXT NOT NULL
                                REFERENCES sessions (session_id) ON DELETE CASCADE,
            seq                 INTEGER NOT NULL,
            role                TEXT NOT NULL,
            content             TEXT NOT NULL,
            status              TEXT NOT NULL,
            usage               TEXT,           -- JSON object or NULL
            provider_message_id TEXT,
            created_at          REAL NOT NULL,
            metadata            TEXT            -- JSON object, NULL when empty
        )
        """
    )
    conn.execute("CREATE UNIQUE INDEX messages_by_seq ON messages (session_id, seq)")
    # Partial index: pending/failed/interrupted messages are few, so finding a session's
    # non-committed turns never scans its committed history.
    conn.execute(
        "CREATE INDEX messages_not_committed ON messages (session_id, seq) "
        "WHERE status != 'committed'"
    )


def m002_parts_and_blobs(conn: sqlite3.Connection) -> None:
    """Content parts, tool specs, and the content-addressed blob store for media."""
    # NULL for a text-only message (most of them): such rows cost nothing extra.
    conn.execute("ALTER TABLE messages ADD COLUMN parts TEXT")  # JSON list or NULL
    conn.execute("ALTER TABLE sessions ADD COLUMN tools TEXT")  # JSON list or NULL
    conn.execute(
        """
        CREATE TABLE blobs (
            sha256     TEXT PRIMARY KEY,
            data       BLOB NOT NULL,
            size       INTEGER NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID
        """
    )
    # Which sessions reference a blob: deleting the last one deletes the blob.
    conn.execute(
        """
        CREATE TABLE blob_refs (
            session_id TEXT NOT NULL,
            sha256     TEXT NOT NULL,
            PRIMARY KEY (session_id, sha256)
        ) WITHOUT ROWID
        """
    )
    conn.execute("CREATE INDEX blob_refs_by_blob ON blob_refs (sha256)")


#: In order. Append only.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("m001_initial", m001_initial),
    ("m002_parts_and_blobs", m002_parts_and_blobs),
]


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in this database, in the order applied."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return []
    return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]


class NewerSchema(Exception):
    """The database records migrations this release does not know (the storage turns
    it into StorageError)."""


def schema_state(conn: sqlite3.Connection) -> tuple[int, list[str]]:
    """``(user_version, names of the recorded migrations)``, in one statement when the
    migrations table exists (what every open of a current database finds)."""
    try:
        version, names = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT "
            "group_concat(name, char(10)) FROM (SELECT name FROM schema_migrations "
            "ORDER BY rowid))"
        ).fetchone()
    except sqlite3.OperationalError:  # no migrations table yet: a new database
        return conn.execute("PRAGMA user_version").fetchone()[0], applied_migrations(conn)
    return version, names.split("\n") if names else []


def newer_schema(
    conn: sqlite3.Connection, state: tuple[int, list[str]] | None = None
) -> str | None:
    """Why this database is too new for this release (naming both schema versions), or
    None. A database is too new when its ``user_version`` is above the number of known
    migrations or it records a migration whose name this release does not know. Reads
    only: nothing is written. ``state``: ``schema_state(conn)``, if already read."""
    version, applied = state if state is not None else schema_state(conn)
    known = {name for name, _ in MIGRATIONS}
    unknown = [name for name in applied if name not in known]
    if version <= len(MIGRATIONS) and not unknown:
        return None
    theirs = max(version, len(applied))
    listed = f": unknown migrations {', '.join(unknown)}" if unknown else ""
    return (
        f"it was written by a newer release of langswarm-runtime (schema version "
        f"{theirs}{listed}); this release knows schema version {len(MIGRATIONS)} (up to "
        f"{MIGRATIONS[-1][0]}). Upgrade langswarm-runtime to use it; nothing was written"
    )


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; return the names applied now. ``conn`` is autocommit.

    ``PRAGMA user_version`` mirrors the number of applied migrations: reading it costs
    no table access, which keeps opening a current database cheap.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
        return []  # fast path: no write lock taken when the schema is current
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        # Re-read under the write lock: another process may have migrated meanwhile,
        # perhaps a newer release.
        newer = newer_schema(conn)
        if newer is not None:
            raise NewerSchema(newer)
        done = set(applied_migrations(conn))
        applied: list[str] = []
        for name, migration in MIGRATIONS:
            if name in done:
                continue
            migration(conn)
            conn.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                (name, time.time()),
            )
            applied.append(name)
        conn.execute(f"PRAGMA user_version = {len(done) + len(applied)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied
