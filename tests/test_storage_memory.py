"""Memory storage specifics (the shared behaviour is in the conformance suite)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from langswarm_runtime.errors import StorageError
from langswarm_runtime.session.models import Message, SessionRecord
from langswarm_runtime.session.storage.memory import MemorySessionStorage, register_storages


def test_registers_without_config_model() -> None:
    seen: list[tuple[Any, ...]] = []
    register_storages(lambda *a: seen.append(a))
    assert seen == [("memory", MemorySessionStorage)]


def test_shared_by_event_loops_in_threads() -> None:
    store = MemorySessionStorage()
    asyncio.run(store.create_session(SessionRecord(session_id="s", user_id="u", provider="e")))

    def worker(n: int) -> None:
        async def run() -> None:
            for i in range(50):
                await store.append_messages("s", [Message(role="user", content=f"{n}.{i}")])

        asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [m.seq for m in asyncio.run(store.load_messages("s"))]
    assert seqs == list(range(1, 201))


async def test_closed_store_raises() -> None:
    store = MemorySessionStorage()
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.load_session("x")
