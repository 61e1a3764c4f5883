"""The issue's acceptance shape: a swarm.yaml chain of pii_filter, validation, audit_log and
the third-party keyword plugin on real sessions (OpenAI SDK -> loopback emulator, SQLite).
PII never reaches the emulator, the database file or the audit log; rejections store
nothing; the chain survives a restart; a 500-turn session sends at most its window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langswarm_runtime import SessionManager
from langswarm_runtime.errors import MessageRejected
from langswarm_runtime.session.models import SessionBackend
from langswarm_runtime.testing.emulator import ProviderEmulator

pytest.importorskip("langswarm_middleware_keywords")  # pip install -e plugins/langswarm-middleware-keywords

CONFIG = """\
version: 1
storage: {{type: sqlite, path: "{db}"}}
providers:
  gpt:
    type: openai
    model: gpt-test
    api_key: sk-test-key-not-real-0000
    base_url: "{url}"
    max_retries: 0
    timeout: 5
    context: {{max_messages: {window}}}
    middleware:
      - {{type: keywords, block: [launch codes], tag: {{refund: billing}}}}
middleware:
  - {{type: pii_filter}}
  - {{type: validation, max_chars: 2000, banned_patterns: ["drop\\\\s+table"]}}
  - {{type: audit_log, path: "{audit}", include_content: true}}
"""

PII = [
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "+44 20 7946 0958",
    "DE89 3704 0044 0532 0130 00",
    "078-05-1120",
    "203.0.113.195",
    "sk-proj-" + "Zq7" * 14,
]


@pytest.fixture
def setup(tmp_path: Path, provider_emulator: ProviderEmulator) -> dict[str, Path]:
    paths = {"yaml": tmp_path / "swarm.yaml", "db": tmp_path / "s.db",
             "audit": tmp_path / "audit.jsonl"}
    paths["yaml"].write_text(CONFIG.format(
        db=paths["db"], audit=paths["audit"], url=provider_emulator.url("openai"), window=6,
    ))
    return paths


def stored_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


async def test_pii_never_reaches_provider_db_or_log(
    setup: dict[str, Path], provider_emulator: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGSWARM_LOAD_PLUGINS", "keywords")
    async with SessionManager.from_config(setup["yaml"]) as manager:
        session = await manager.create_session(user_id="u1", provider="gpt",
                                               backend=SessionBackend.HYBRID)
        sid = session.session_id
        chain = [type(m).__name__ for m in session.middleware]
        assert chain == ["PIIFilterMiddleware", "ValidationMiddleware", "AuditLogMiddleware",
                         "KeywordMiddleware"]
        for value in PII:
            reply = await session.send_message(f"I need a refund, my details: {value}")
            assert value not in reply.content
            assert "[" in reply.content  # the provider saw a placeholder
        streamed = "".join([d async for d in session.stream_message(f"again {PII[0]}")])
        assert PII[0] not in streamed
        history = await session.get_history()
        assert history[0].metadata["tags"] == ["billing"]
        assert history[0].metadata["pii_filtered"] == {"email": 1}

        # Rejections: nothing sent, nothing stored.
        sent = len(provider_emulator.requests)
        before = len(await session.get_history(include_failed=True))
        for bad, why in [("please DROP TABLE users", "validation"),
                         ("what are the launch codes?", "keywords"),
                         ("x" * 2001, "validation")]:
            with pytest.raises(MessageRejected) as info:
                await session.send_message(bad)
            assert info.value.middleware == why
        assert len(provider_emulator.requests) == sent
        assert len(await session.get_history(include_failed=True)) == before

    wire = json.dumps([r.json for r in provider_emulator.requests])
    disk = stored_bytes(setup["db"])
    audit = setup["audit"].read_text()
    for value in PII:
        assert value not in wire
        assert value.encode() not in disk
        assert value not in audit
    assert "[EMAIL]" in wire and b"[CREDIT_CARD]" in disk
    assert b"sk-test-key-not-real" not in disk  # nor the provider key
    # Two lines per turn, plus the attempt that passed audit_log and was then rejected by
    # the keyword middleware after it (audit logs attempts; the DROP TABLE and oversized
    # ones were stopped by validation before reaching it).
    assert sum(1 for _ in audit.splitlines()) == 2 * (len(PII) + 1) + 1

    # Restart: the hydrated session runs the same chain.
    async with SessionManager.from_config(setup["yaml"]) as manager:
        again = await manager.get_session(sid)
        assert again is not None
        assert [type(m).__name__ for m in again.middleware] == chain
        reply = await again.send_message(f"after restart {PII[1]}")
        assert PII[1] not in reply.content and "[CREDIT_CARD]" in reply.content
        with pytest.raises(MessageRejected):
            await again.send_message("the launch codes")
    assert PII[1].encode() not in stored_bytes(setup["db"])


async def test_500_turns_send_at_most_the_window(
    setup: dict[str, Path], provider_emulator: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGSWARM_LOAD_PLUGINS", "keywords")
    window = 6
    async with SessionManager.from_config(setup["yaml"]) as manager:
        session = await manager.create_session(user_id="u1", provider="gpt",
                                               backend=SessionBackend.HYBRID,
                                               system_prompt="Be brief.")
        for i in range(500):
            await session.send_message(f"turn {i}")
    requests = [r.json for r in provider_emulator.requests if r.path.endswith("/responses")]
    assert len(requests) == 500
    for i, body in enumerate(requests):
        items = body["input"]
        history = items[1:-1]  # minus the system prompt and the new message
        assert items[0] == {"role": "system", "content": "Be brief."}
        assert items[-1]["content"] == f"turn {i}"
        assert len(history) == min(window, 2 * i)
        assert len(history) % 2 == 0 and (not history or history[0]["role"] == "user")
