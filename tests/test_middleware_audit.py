"""audit_log: one JSON line per message, to a 0600 file or a logger, no content by default."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.middleware.audit import AuditLogMiddleware
from langswarm_runtime.middleware.pii import PIIFilterMiddleware
from langswarm_runtime.session.middleware import run_incoming, run_outgoing
from langswarm_runtime.session.models import Message

S = SimpleNamespace(session_id="sess-42", user_id="alice")


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_file_lines_hold_metadata_and_hash_not_content(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    mw = AuditLogMiddleware(path=str(path))
    text = "héllo, my card is 4111 1111 1111 1111"
    await run_outgoing([mw], S, Message(role="user", content=text))
    await run_incoming([mw], S, Message(role="assistant", content="ok", seq=7))
    out = lines(path)
    assert len(out) == 2
    first, second = out
    assert first["session_id"] == "sess-42" and first["user_id"] == "alice"
    assert first["direction"] == "outgoing" and first["role"] == "user"
    assert first["seq"] is None and second["seq"] == 7
    assert first["chars"] == len(text) and first["bytes"] == len(text.encode())
    assert first["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert "content" not in first
    assert "4111" not in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert isinstance(first["ts"], str) and first["ts"].endswith("+00:00")


async def test_appends_and_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"old": true}\n')
    os.chmod(path, 0o644)
    mw = AuditLogMiddleware(path=str(path))
    await run_outgoing([mw], S, Message(role="user", content="hi"))
    assert len(lines(path)) == 2 and lines(path)[0] == {"old": True}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    mw.close()
    mw.close()  # idempotent
    await run_outgoing([mw], S, Message(role="user", content="again"))  # reopens
    assert len(lines(path)) == 3


async def test_include_content_still_hides_api_keys(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    mw = AuditLogMiddleware(path=str(path), include_content=True)
    key = "sk-proj-" + "Ab3" * 14
    await run_outgoing([mw], S, Message(role="user", content=f"use {key} please"))
    (entry,) = lines(path)
    assert entry["content"] == "use [API_KEY] please"
    assert key not in path.read_text()


async def test_logger_sink_and_directions(caplog: pytest.LogCaptureFixture) -> None:
    mw = AuditLogMiddleware(logger="myapp.audit", directions=["incoming"])
    with caplog.at_level(logging.INFO, logger="myapp.audit"):
        await run_outgoing([mw], S, Message(role="user", content="not logged"))
        await run_incoming([mw], S, Message(role="assistant", content="logged"))
    records = [r for r in caplog.records if r.name == "myapp.audit"]
    assert len(records) == 1
    entry = json.loads(records[0].getMessage())
    assert entry["direction"] == "incoming" and entry["chars"] == 6


async def test_default_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="langswarm_runtime.audit"):
        await run_outgoing([AuditLogMiddleware()], S, Message(role="user", content="x"))
    assert any(r.name == "langswarm_runtime.audit" for r in caplog.records)


async def test_after_pii_filter_logs_what_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    chain = [PIIFilterMiddleware(), AuditLogMiddleware(path=str(path), include_content=True)]
    out = await run_outgoing(chain, S, Message(role="user", content="mail bob@example.com"))
    assert out.content == "mail [EMAIL]"
    (entry,) = lines(path)
    assert entry["content"] == "mail [EMAIL]"
    assert entry["sha256"] == hashlib.sha256(b"mail [EMAIL]").hexdigest()


def test_bad_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="either path or logger"):
        AuditLogMiddleware(path=str(tmp_path / "a"), logger="x")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot open audit log"):
        AuditLogMiddleware(path=str(blocker / "sub" / "audit.jsonl"))
