"""The storage conformance suite from langswarm_runtime.testing, unchanged, against the
real Redis server (one fresh key prefix per test, see conftest.py)."""

from __future__ import annotations

import redis.asyncio as aioredis
from langswarm_storage_redis import RedisSessionStorage

from langswarm_runtime.session.storage.base import ISessionStorage
from langswarm_runtime.testing import StorageConformance


class TestRedisConformance(StorageConformance):
    """Runs every conformance test and the stateful property test; ``storage_factory``
    comes from conftest.py (instances share this test's key prefix)."""

    async def blob_count(self, storage: ISessionStorage) -> int | None:
        assert isinstance(storage, RedisSessionStorage)
        client = aioredis.Redis.from_url(storage.config.url.get_secret_value())
        try:
            return len(await client.keys(f"{storage.config.key_prefix}blob:*"))
        finally:
            await client.aclose()
