"""Redis session storage for langswarm-runtime.

Installed, it registers the storage type ``redis`` through the ``langswarm_runtime``
entry point: ``storage: {type: redis, url: ${REDIS_URL}}`` in swarm.yaml.
"""

from __future__ import annotations

from typing import Any

from langswarm_runtime.hookspecs import hookimpl
from langswarm_storage_redis.config import RedisStorageConfig
from langswarm_storage_redis.storage import RedisSessionStorage

__all__ = ["RedisSessionStorage", "RedisStorageConfig"]


@hookimpl
def register_storages(register: Any) -> None:
    """Register the ``redis`` storage type."""
    register("redis", RedisSessionStorage, RedisStorageConfig)
