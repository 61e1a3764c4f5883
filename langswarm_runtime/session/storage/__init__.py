"""Session storages: the contract and the built-in memory and SQLite stores."""

from langswarm_runtime.session.storage.base import ISessionStorage
from langswarm_runtime.session.storage.memory import MemorySessionStorage
from langswarm_runtime.session.storage.sqlite import SQLiteSessionStorage

__all__ = ["ISessionStorage", "MemorySessionStorage", "SQLiteSessionStorage"]
