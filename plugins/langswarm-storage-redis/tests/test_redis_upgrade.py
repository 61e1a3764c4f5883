"""Redis keys written by release 0.1.0 (before content parts) open with today's storage,
which reads them as they are (the layout only gained fields and keys) and records the
layout version; every session and message reads back as 0.1.0 read it, and the data
goes on: a conversation continues on it, with an image and a tool turn, and it reopens.

The fixture is the repository's ``tests/data/upgrade/0.1.0/redis.json`` (0.1.0's keys,
never regenerated), restored under a fresh key prefix; the checks are the ones the
SQLite upgrade test (``tests/test_upgrade.py``) makes."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio as aioredis

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "data" / "upgrade" / "0.1.0" / "redis.json"


def _checks() -> ModuleType:
    """The shared upgrade checks of the repository's tests/test_upgrade.py."""
    path = REPO / "tests" / "test_upgrade.py"
    if not path.exists() or not FIXTURE.exists():
        pytest.skip("the upgrade fixtures are in the langswarm-runtime repository")
    spec = importlib.util.spec_from_file_location("langswarm_upgrade_checks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _restore(client: Any, prefix: str) -> None:
    """0.1.0's keys under ``prefix``, with their types and values as dumped."""
    keys: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for name, entry in keys.items():
        key = name.replace("__PREFIX__", prefix, 1)
        kind, value = entry["type"], entry["value"]
        if kind == "string":
            await client.set(key, value, ex=3600 if ":write:" in key else None)
        elif kind == "hash":
            await client.hset(key, mapping=value)
        elif kind == "zset":
            await client.zadd(key, {member: score for member, score in value})
        else:
            raise AssertionError(f"the fixture has a {kind} key; restore it here")


async def test_keys_of_0_1_0_open_and_go_on(
    storage_factory: Callable[..., Any], redis_url: str, key_prefix: str
) -> None:
    checks = _checks()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await _restore(client, key_prefix)
        assert await client.get(f"{key_prefix}schema") is None  # really 0.1.0's keys

        storage = storage_factory()
        await storage.open()
        assert await client.get(f"{key_prefix}schema") == "2"
        await checks.check_as_written(storage)
        await storage.close()
        await checks.continue_conversation(storage_factory())  # the manager closes it
        storage = storage_factory()
        await checks.check_continued(storage)
        (blob,) = await client.keys(f"{key_prefix}blob:*")  # the image's bytes, once
        assert await client.strlen(blob) == len(checks.PNG)
    finally:
        await client.aclose()
