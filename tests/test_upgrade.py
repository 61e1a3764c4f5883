"""A SQLite database written by release 0.1.0 (before content parts) opens with today's
storage, which migrates it, keeps every session and message as 0.1.0 read them, and
goes on: a conversation continues on it, with an image and a tool turn, and it reopens.

The fixture (``tests/data/upgrade/0.1.0``, see ``scripts/make_upgrade_fixtures.py``) is
never regenerated: it stands for data users have. The PostgreSQL and Redis plugins have
the same test on their own fixtures."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import ImagePart, SessionManager, SQLiteSessionStorage, tool
from langswarm_runtime.config import build_config
from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord
from langswarm_runtime.session.storage.base import ISessionStorage

FIXTURES = Path(__file__).parent / "data" / "upgrade" / "0.1.0"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
#: 0.1.0's data set has one hybrid session to continue, provider entry "local" (echo).
HYBRID = "s-hybrid-0001"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def _defaults(model: type[Any], **required: Any) -> dict[str, Any]:
    return dict(model(**required).model_dump(mode="json"))


_RECORD_DEFAULTS = _defaults(SessionRecord, session_id="x", user_id="x", provider="x")
_MESSAGE_DEFAULTS = _defaults(Message, role="user")


def _as_written(got: dict[str, Any], want: dict[str, Any], defaults: dict[str, Any]) -> None:
    """``got`` has ``want``'s fields as they were, and fields added since at defaults."""
    assert {k: got[k] for k in want} == want
    added = {k: got[k] for k in got if k not in want}
    assert added == {k: defaults[k] for k in added}


async def check_as_written(storage: ISessionStorage, *, continued: bool = False) -> None:
    """Every session and message of the fixture reads back as 0.1.0 read it
    (``continued``: the hybrid session has gone on since, its old messages stay)."""
    for sid, want in EXPECTED.items():
        record = await storage.load_session(sid)
        assert record is not None
        if not (continued and sid == HYBRID):
            got = record.model_dump(mode="json", exclude={"updated_at", "version"})
            _as_written(got, want["record"], _RECORD_DEFAULTS)
            assert record.version == 0
        messages = await storage.load_messages(sid)
        old = messages[: len(want["messages"])]
        assert len(old) == len(want["messages"])
        for message, wanted in zip(old, want["messages"], strict=True):
            _as_written(message.model_dump(mode="json"), wanted, _MESSAGE_DEFAULTS)
        if not continued:
            assert len(messages) == len(want["messages"])
    listed = await storage.list_sessions(user_id="alice")
    assert [r.session_id for r in listed][-1:] == ([HYBRID] if not continued else ["s-empty-0003"])
    (native,) = await storage.list_sessions(user_id="bob")
    assert native.provider_state == {"conversation_id": "conv_abc123"}


@tool
def weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


def _manager(storage: ISessionStorage) -> SessionManager:
    config, plugins = build_config(
        {"providers": {"local": {"type": "echo"}}, "defaults": {"provider": "local"}}
    )
    return SessionManager(storage=storage, config=config, plugins=plugins)


async def continue_conversation(storage: ISessionStorage) -> None:
    """The hybrid session goes on where 0.1.0 left it: a text turn, an image, a tool
    turn (its steps pending, then committed together)."""
    async with _manager(storage) as manager:
        session = await manager.get_session(HYBRID, user_id="alice")
        assert session is not None
        history = await session.get_history()
        assert [m.content for m in history if m.role == "user"][-1] == "question 4 — ⚡"
        reply = await session.send_message("question 5")
        assert "question 5" in reply.content
        reply = await session.send_message(
            ["What is this?", ImagePart.from_bytes(PNG, "image/png")]
        )
        assert f"[image/png {len(PNG)} bytes]" in reply.content
        reply = await session.send_message('call weather {"city": "Paris"}', tools=[weather])
        assert "tool weather returned sunny in Paris" in reply.content


async def check_continued(storage: ISessionStorage) -> None:
    """After a reopen: the old data as written, the new turns after it (seqs go on from
    0.1.0's counter), the image's bytes in the blob store, the tool recorded."""
    await check_as_written(storage, continued=True)
    old = len(EXPECTED[HYBRID]["messages"])
    messages = await storage.load_messages(HYBRID)
    new = messages[old:]
    assert all((m.seq or 0) > (messages[old - 1].seq or 0) for m in new)
    assert all(m.status is MessageStatus.COMMITTED for m in new)
    assert [m.role for m in new] == ["user", "assistant"] * 2 + ["user", "assistant", "tool",
                                                                  "assistant"]  # fmt: skip
    (image,) = new[2].parts[1:]
    assert isinstance(image, ImagePart) and image.data is None and image.size == len(PNG)
    assert image.sha256 is not None and await storage.load_blob(image.sha256) == PNG
    assert new[5].tool_calls[0].arguments == {"city": "Paris"}
    assert new[6].tool_results[0].content == "sunny in Paris"
    record = await storage.load_session(HYBRID)
    assert record is not None
    assert [t["name"] for t in record.tools] == ["weather"]
    assert record.usage.input_tokens > 0
    async with _manager(storage) as manager:  # hydrated again, it goes on
        session = await manager.get_session(HYBRID, tools=[weather])
        assert session is not None
        reply = await session.send_message("and now?")
        assert "and now?" in reply.content


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.db"
    shutil.copyfile(FIXTURES / "sessions.db", path)
    return path


def _migrations(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]


async def test_sqlite_database_of_0_1_0_opens_migrates_and_goes_on(db: Path) -> None:
    assert _migrations(db) == ["m001_initial"]  # really the old schema
    storage = SQLiteSessionStorage(db)
    try:
        assert _migrations(db) == ["m001_initial", "m002_parts_and_blobs"]
        await check_as_written(storage)
    finally:
        await storage.close()
    await continue_conversation(SQLiteSessionStorage(db))  # the manager closes it
    storage = SQLiteSessionStorage(db)
    try:
        await check_continued(storage)
    finally:
        await storage.close()
    assert _migrations(db) == ["m001_initial", "m002_parts_and_blobs"]  # applied once
