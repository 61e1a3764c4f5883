"""The conformance suite from langswarm_runtime.testing, run against the built-in storages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from langswarm_runtime.session.storage.memory import MemorySessionStorage
from langswarm_runtime.session.storage.sqlite import SQLiteSessionStorage
from langswarm_runtime.testing import StorageConformance


class TestMemoryConformance(StorageConformance):
    shared_backing = False

    @pytest.fixture
    def storage_factory(self) -> Callable[[], MemorySessionStorage]:
        return MemorySessionStorage


class TestSQLiteConformance(StorageConformance):
    """All instances on one file, so the cross-instance tests really share it."""

    @pytest.fixture
    async def storage_factory(
        self, tmp_path: Path
    ) -> AsyncIterator[Callable[[], SQLiteSessionStorage]]:
        made: list[SQLiteSessionStorage] = []

        def make() -> SQLiteSessionStorage:
            store = SQLiteSessionStorage(tmp_path / "shared.db")
            made.append(store)
            return store

        yield make
        for store in made:
            await store.close()
