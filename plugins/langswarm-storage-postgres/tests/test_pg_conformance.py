"""The storage conformance suite from langswarm_runtime.testing, unchanged, against the
real PostgreSQL server (one fresh schema per test, see conftest.py)."""

from __future__ import annotations

import psycopg
from langswarm_storage_postgres import PostgresSessionStorage

from langswarm_runtime.session.storage.base import ISessionStorage
from langswarm_runtime.testing import StorageConformance


class TestPostgresConformance(StorageConformance):
    """Runs every conformance test and the stateful property test; ``storage_factory``
    comes from conftest.py (instances share this test's schema)."""

    async def blob_count(self, storage: ISessionStorage) -> int | None:
        assert isinstance(storage, PostgresSessionStorage)
        await storage.open()  # the schema is migrated on first use
        dsn = storage.config.dsn.get_secret_value()
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            cur = await conn.execute(f'SELECT count(*) FROM "{storage.config.schema_name}".blobs')
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])
