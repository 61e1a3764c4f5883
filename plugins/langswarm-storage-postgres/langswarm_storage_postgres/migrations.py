"""Versioned, append-only schema migrations.

Each migration runs once per schema and is recorded in ``langswarm_migrations``. Never
edit a released migration: add a new one. All of them run in one transaction under a
transaction-level advisory lock keyed on the schema name, so two processes starting at
once do not race: the second waits, then finds everything applied. A schema that records
a migration this version does not know was written by a newer version: it is refused,
before anything is written, rather than used by code that does not know its shape.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

from langswarm_runtime.errors import StorageError

__all__ = ["KNOWN_VERSIONS", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

#: (version, name, statements). ``{s}`` is replaced by the quoted schema name.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial",
        [
            # The record is stored whole as JSON so new SessionRecord fields need no
            # migration; the columns beside it are the ones queries filter or sort on.
            # ``next_seq`` is the per-session counter: appends take it with
            # UPDATE ... RETURNING, whose row lock orders concurrent writers on any host.
            """CREATE TABLE {s}.sessions (
                session_id text PRIMARY KEY,
                user_id text NOT NULL,
                updated_at double precision NOT NULL,
                version bigint NOT NULL DEFAULT 0,
                next_seq bigint NOT NULL DEFAULT 1,
                record jsonb NOT NULL
            )""",
            (
                "CREATE INDEX sessions_by_user ON {s}.sessions "
                "(user_id, updated_at DESC, session_id DESC)"
            ),
            (
                "CREATE INDEX sessions_by_updated ON {s}.sessions "
                "(updated_at DESC, session_id DESC)"
            ),
            # The primary key (session_id, seq) serves tail reads: ORDER BY seq DESC
            # LIMIT N walks N index entries backwards, whatever the history length.
            """CREATE TABLE {s}.messages (
                session_id text NOT NULL
                    REFERENCES {s}.sessions (session_id) ON DELETE CASCADE,
                seq bigint NOT NULL,
                role text NOT NULL,
                content text NOT NULL,
                status text NOT NULL,
                usage jsonb,
                provider_message_id text,
                created_at double precision NOT NULL,
                metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                PRIMARY KEY (session_id, seq)
            )""",
        ],
    ),
    (
        2,
        "parts_and_blobs",
        [
            # JSON text as written (key order kept: tool arguments and schemas go back to
            # the provider as they came); NULL for a text-only message, most of them, so
            # those rows cost nothing extra.
            "ALTER TABLE {s}.messages ADD COLUMN parts text",
            # The session's tool specs, out of the jsonb record for the same reason.
            "ALTER TABLE {s}.sessions ADD COLUMN tools text",
            # Media bytes, once per schema under their sha256.
            """CREATE TABLE {s}.blobs (
                sha256 text PRIMARY KEY,
                data bytea NOT NULL,
                size bigint NOT NULL,
                created_at double precision NOT NULL
            )""",
            # Images and PDFs are compressed already: store them out of line as they are.
            "ALTER TABLE {s}.blobs ALTER COLUMN data SET STORAGE EXTERNAL",
            # Which sessions reference a blob: deleting the last one deletes the blob. No
            # foreign key on purpose: delete_session reads a session's references after
            # its record is gone (see the storage), which a cascade would have removed.
            """CREATE TABLE {s}.blob_refs (
                session_id text NOT NULL,
                sha256 text NOT NULL,
                PRIMARY KEY (session_id, sha256)
            )""",
            "CREATE INDEX blob_refs_by_blob ON {s}.blob_refs (sha256)",
        ],
    ),
    (
        3,
        "write_ids",
        [
            # A random id on the first row of each one-statement write, by which a write
            # whose answer was lost is looked up (outcome.resolve_write). NULL elsewhere:
            # no default, so adding it rewrites nothing, and no index (looking one up is
            # rare and reads one session's rows).
            "ALTER TABLE {s}.messages ADD COLUMN write_id bigint",
        ],
    ),
]


#: The schema version this package writes: its newest migration.
SCHEMA_VERSION = max(version for version, _, _ in MIGRATIONS)


#: The versions a schema records when it is exactly this package's.
KNOWN_VERSIONS = frozenset(version for version, _, _ in MIGRATIONS)


async def _applied(conn: AsyncConnection[Any], s: sql.Identifier) -> frozenset[int] | None:
    """The versions the schema records, or None when it has no migrations table yet."""
    import psycopg

    try:
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}.langswarm_migrations").format(s)
        )
        return frozenset(row[0] for row in await cur.fetchall())
    except psycopg.errors.UndefinedTable:
        return None
    except psycopg.errors.InvalidSchemaName:
        return None


async def migrate(conn: AsyncConnection[Any], schema: str) -> list[int]:
    """Bring ``schema`` up to date; return the versions applied now (empty if none).

    ``StorageError`` naming both versions if the schema is newer than this package.

    A schema that records exactly this package's migrations is current: one plain read
    says so, with no transaction and no lock (what most opens find). Anything else, a
    fresh, older or newer schema, takes the locked path below."""
    s = sql.Identifier(schema)
    if await _applied(conn, s) == KNOWN_VERSIONS:
        return []
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"langswarm-migrate:{schema}",)
        )
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.langswarm_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(s)
        )
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}.langswarm_migrations").format(s)
        )
        done = {row[0] for row in await cur.fetchall()}
        unknown = done - {version for version, _, _ in MIGRATIONS}
        if unknown:  # raised inside the transaction: whatever ran above is rolled back
            raise StorageError(
                f"PostgreSQL schema {schema!r} is at schema version {max(done)}, newer than "
                f"this langswarm-storage-postgres (schema version {SCHEMA_VERSION}; unknown "
                f"migrations {sorted(unknown)}): upgrade langswarm-storage-postgres to use "
                "it; it was not opened"
            )
        for version, name, statements in MIGRATIONS:
            if version in done:
                continue
            for statement in statements:
                await conn.execute(sql.SQL(statement).format(s=s))
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {}.langswarm_migrations (version, name) VALUES (%s, %s)"
                ).format(s),
                (version, name),
            )
            applied_now.append(version)
    return applied_now
