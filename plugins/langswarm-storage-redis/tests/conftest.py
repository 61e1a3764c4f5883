"""Fixtures for the Redis storage tests: the real server, one key prefix per test.

The server comes from ``LANGSWARM_TEST_REDIS_URL`` (default: the local server).
Unreachable: the tests skip with the reason, or FAIL when ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

URL = os.environ.get("LANGSWARM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:8]
_counter = iter(range(1_000_000))


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this plugin (and the built-ins) load in these tests, whatever else is
    installed. Pinned per test, not at import: pytest may collect several plugin suites
    in one process, and each wants its own allow-list."""
    monkeypatch.setenv("LANGSWARM_LOAD_PLUGINS", "redis")


def _delete_keys(pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(URL, socket_timeout=5)
    try:
        batch = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a reachable server; keys of this run are deleted at the end."""
    import redis

    try:
        client = redis.Redis.from_url(URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        reason = f"Redis not reachable for the storage tests: {type(exc).__name__}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield URL
    _delete_keys(f"lst:{RUN_ID}:*")


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix for one test; its keys are deleted afterwards."""
    prefix = f"lst:{RUN_ID}:{next(_counter)}:"
    yield prefix
    _delete_keys(prefix + "*")


@pytest.fixture
async def storage_factory(
    redis_url: str, key_prefix: str
) -> AsyncIterator[Callable[..., Any]]:
    """Builds storages on this test's prefix (like separate processes would); all are
    closed at the end."""
    from langswarm_storage_redis import RedisSessionStorage

    made: list[RedisSessionStorage] = []

    def make(**options: Any) -> RedisSessionStorage:
        options.setdefault("url", redis_url)
        options.setdefault("key_prefix", key_prefix)
        store = RedisSessionStorage(**options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def storage(storage_factory: Callable[..., Any]) -> Any:
    """A storage on a fresh key prefix."""
    return storage_factory()
