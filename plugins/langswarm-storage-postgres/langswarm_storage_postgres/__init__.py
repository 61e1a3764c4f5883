"""PostgreSQL session storage for langswarm-runtime.

Installed, it registers the storage type ``postgres`` through the ``langswarm_runtime``
entry point: ``storage: {type: postgres, dsn: ${DATABASE_URL}}`` in swarm.yaml.
"""

from __future__ import annotations

from typing import Any

from langswarm_runtime.hookspecs import hookimpl
from langswarm_storage_postgres.config import PostgresStorageConfig
from langswarm_storage_postgres.storage import PostgresSessionStorage

__all__ = ["PostgresSessionStorage", "PostgresStorageConfig"]


@hookimpl
def register_storages(register: Any) -> None:
    """Register the ``postgres`` storage type."""
    register("postgres", PostgresSessionStorage, PostgresStorageConfig)
