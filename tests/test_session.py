"""The turn pipeline, hydration and failure semantics, end to end on real storages."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from langswarm_runtime import (
    InvalidMessage,
    ISessionMiddleware,
    MemorySessionStorage,
    Message,
    MessageRejected,
    MessageTooLarge,
    MiddlewareError,
    ProviderError,
    SessionBackend,
    SessionManager,
    SessionNotFound,
    SQLiteSessionStorage,
)
from langswarm_runtime.session.models import MessageStatus


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(body, encoding="utf-8")
    return path


FAILING = """
version: 1
storage: {{type: sqlite, path: "{db}"}}
defaults: {{provider: local}}
providers:
  local: {{type: echo}}
  broken: {{type: echo, fail: true}}
  slow: {{type: echo, delay: 0.05}}
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


async def test_send_and_history(db: Path) -> None:
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        session = await manager.create_session(user_id="u1", provider="echo")
        reply = await session.send_message("hi")
        assert reply.role == "assistant"
        assert reply.content == "echo: hi [earlier messages: 0]"
        assert reply.usage is not None and reply.usage.output_tokens > 0
        second = await session.send_message("again")
        assert second.content == "echo: again [earlier messages: 2]"
        history = await session.get_history()
        assert [(m.role, m.content) for m in history] == [
            ("user", "hi"),
            ("assistant", "echo: hi [earlier messages: 0]"),
            ("user", "again"),
            ("assistant", "echo: again [earlier messages: 2]"),
        ]
        seqs = [m.seq for m in history]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        assert second.seq == history[-1].seq
        assert session.usage.output_tokens == reply.usage.output_tokens + second.usage.output_tokens


async def test_restart_hydrates_and_continues(db: Path) -> None:
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        session = await manager.create_session(user_id="u1", provider="echo", metadata={"k": 1})
        await session.send_message("one")
        await session.send_message("two")
        sid = session.session_id
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        same = await manager.get_session(sid)
        assert same is not None
        assert (same.user_id, same.provider, same.metadata) == ("u1", "echo", {"k": 1})
        reply = await same.send_message("three")
        assert reply.content == "echo: three [earlier messages: 4]"
        assert len(await same.get_history()) == 6
        assert same.usage.output_tokens > 0


async def test_native_backend_keeps_provider_state_across_restart(db: Path) -> None:
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        session = await manager.create_session(
            user_id="u", provider="echo", backend=SessionBackend.NATIVE
        )
        assert session.backend is SessionBackend.NATIVE
        await session.send_message("a")
        sid = session.session_id
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        same = await manager.get_session(sid)
        assert same is not None and same.record.provider_state == {"conversation_length": 2}
        assert (await same.send_message("b")).content == "echo: b [earlier messages: 2]"


async def test_auto_backend_picks_native_where_supported() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        s = await manager.create_session(user_id="u", provider="echo", backend="auto")
        assert s.backend is SessionBackend.NATIVE
        h = await manager.create_session(user_id="u", provider="echo", backend="hybrid")
        assert h.backend is SessionBackend.HYBRID


async def test_sessions_belong_to_their_user() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        session = await manager.create_session(user_id="alice", provider="echo")
        sid = session.session_id
        assert "alice" not in sid and len(sid) >= 20
        assert await manager.get_session(sid, user_id="bob") is None
        assert await manager.get_session("ses_nope") is None
        assert (await manager.get_session(sid, user_id="alice")) is session
        with pytest.raises(SessionNotFound):
            await manager.delete_session(sid, user_id="bob")
        assert [r.session_id for r in await manager.list_sessions("alice")] == [sid]
        assert await manager.list_sessions("bob") == []
        await manager.delete_session(sid, user_id="alice")
        assert await manager.get_session(sid) is None
        with pytest.raises(SessionNotFound):
            await manager.delete_session(sid)


async def test_session_ids_are_unique() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        ids = {(await manager.create_session(user_id="u", provider="echo")).session_id
               for _ in range(50)}
        assert len(ids) == 50


@pytest.mark.parametrize(
    ("text", "error"),
    [("", InvalidMessage), ("   \n", InvalidMessage), (None, InvalidMessage),
     (42, InvalidMessage), ("x" * (1024 * 1024 + 1), MessageTooLarge)],
)
async def test_bad_input_is_typed_and_stores_nothing(db: Path, text: object, error: type) -> None:
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        with pytest.raises(error):
            await session.send_message(text)  # type: ignore[arg-type]
        assert await session.get_history(include_failed=True) == []
        # the session stays usable
        assert (await session.send_message("ok")).content.startswith("echo: ok")


async def test_provider_failure_marks_turn_failed_and_keeps_it_out_of_context(
    tmp_path: Path, db: Path
) -> None:
    cfg = write_config(tmp_path, FAILING.format(db=db))
    async with SessionManager.from_config(cfg) as manager:
        session = await manager.create_session(user_id="u", provider="local")
        await session.send_message("first")
        await session.switch_provider("broken")
        with pytest.raises(ProviderError) as info:
            await session.send_message("lost")
        assert info.value.exit_code == 3
        await session.switch_provider("local", backend="hybrid")
        reply = await session.send_message("second")
        # the failed turn is not in the context: 2 earlier messages, not 3
        assert reply.content == "echo: second [earlier messages: 2]"
        committed = await session.get_history()
        assert [m.content for m in committed if m.role == "user"] == ["first", "second"]
        everything = await session.get_history(include_failed=True)
        failed = [m for m in everything if m.status == MessageStatus.FAILED]
        assert [m.content for m in failed] == ["lost"]


async def test_crash_mid_turn_leaves_interrupted_turn(db: Path) -> None:
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("done")
        sid = session.session_id
        # what a process that died after step 3 leaves behind
        await manager.storage.append_messages(
            sid, [Message(role="user", content="cut off", status=MessageStatus.PENDING)]
        )
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        same = await manager.get_session(sid)
        assert same is not None
        statuses = {m.content: m.status for m in await same.get_history(include_failed=True)}
        assert statuses["cut off"] == MessageStatus.INTERRUPTED
        reply = await same.send_message("next")
        assert reply.content == "echo: next [earlier messages: 2]"


async def test_concurrent_sends_on_one_session_are_serialised() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        session = await manager.create_session(user_id="u", provider="echo", backend="hybrid")
        replies = await asyncio.gather(*(session.send_message(f"m{i}") for i in range(10)))
        earlier = sorted(int(r.content.rsplit(": ", 1)[1].rstrip("]")) for r in replies)
        assert earlier == list(range(0, 20, 2))
        history = await session.get_history()
        roles = [m.role for m in history]
        assert roles == ["user", "assistant"] * 10
        for user, answer in zip(history[::2], history[1::2], strict=True):
            assert answer.content.startswith(f"echo: {user.content} ")


async def test_stream_message_commits_whole_reply(db: Path) -> None:
    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        deltas = [d async for d in session.stream_message("streamed hello")]
        assert len(deltas) > 1
        text = "".join(deltas)
        assert text == "echo: streamed hello [earlier messages: 0]"
        history = await session.get_history()
        assert [m.content for m in history] == ["streamed hello", text]


async def test_abandoned_stream_leaves_failed_turn_not_partial_message() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        stream = session.stream_message("half")
        first = await stream.__anext__()
        assert first
        await stream.aclose()
        assert await session.get_history() == []
        everything = await session.get_history(include_failed=True)
        assert [(m.content, m.status) for m in everything] == [("half", MessageStatus.FAILED)]


class Upper(ISessionMiddleware):
    def process_outgoing_message(self, session, message):  # type: ignore[no-untyped-def]
        return message.model_copy(update={"content": message.content.upper()})


class Refuse(ISessionMiddleware):
    name = "refuse"

    async def process_outgoing_message(self, session, message):  # type: ignore[no-untyped-def]
        if "secret" in message.content:
            raise MessageRejected("no secrets")
        return message


class Buggy(ISessionMiddleware):
    def process_incoming_message(self, session, message):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


async def test_middleware_output_is_what_is_stored_and_sent() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        session.add_middleware(Upper())
        reply = await session.send_message("quiet")
        assert reply.content == "echo: QUIET [earlier messages: 0]"
        assert (await session.get_history())[0].content == "QUIET"


async def test_rejected_message_is_neither_sent_nor_stored() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        session.add_middleware(Refuse())
        with pytest.raises(MessageRejected, match="refuse: no secrets"):
            await session.send_message("my secret")
        assert await session.get_history(include_failed=True) == []


async def test_buggy_middleware_fails_turn_without_commit() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        session.add_middleware(Buggy())
        with pytest.raises(MiddlewareError, match="Buggy"):
            await session.send_message("hello")
        assert await session.get_history() == []
        with pytest.raises(TypeError):
            session.add_middleware(object())


async def test_switch_provider_is_persisted(tmp_path: Path, db: Path) -> None:
    cfg = write_config(tmp_path, FAILING.format(db=db))
    async with SessionManager.from_config(cfg) as manager:
        session = await manager.create_session(user_id="u", provider="local", backend="native")
        await session.send_message("x")
        await session.switch_provider("slow", backend="hybrid")
        sid = session.session_id
    async with SessionManager.from_config(cfg) as manager:
        same = await manager.get_session(sid)
        assert same is not None
        assert (same.provider, same.backend) == ("slow", SessionBackend.HYBRID)
        assert same.record.provider_state == {}
        assert (await same.send_message("y")).content == "echo: y [earlier messages: 2]"


async def test_session_cache_is_bounded(tmp_path: Path, db: Path) -> None:
    cfg = write_config(
        tmp_path,
        f'version: 1\nstorage: {{type: sqlite, path: "{db}"}}\n'
        "defaults: {provider: echo, session_cache_size: 3}\n",
    )
    async with SessionManager.from_config(cfg) as manager:
        ids = [(await manager.create_session(user_id="u")).session_id for _ in range(10)]
        assert len(manager._cache) == 3
        for sid in ids:  # evicted sessions hydrate from storage
            assert (await manager.get_session(sid)) is not None


async def test_nothing_written_for_unknown_provider(db: Path) -> None:
    from langswarm_runtime import ConfigError

    async with SessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        with pytest.raises(ConfigError, match="unknown provider 'nope'"):
            await manager.create_session(user_id="u", provider="nope")
        assert await manager.list_sessions() == []
    rows = sqlite3.connect(db).execute("select count(*) from sessions").fetchone()
    assert rows == (0,)


def test_sync_facade(db: Path) -> None:
    from langswarm_runtime.sync import SyncSessionManager

    with SyncSessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        session = manager.create_session(user_id="u", provider="echo")
        assert session.send_message("hi").content == "echo: hi [earlier messages: 0]"
        assert "".join(session.stream_message("yo")).startswith("echo: yo")
        assert len(session.get_history()) == 4
        sid = session.session_id
    with SyncSessionManager(storage=SQLiteSessionStorage(db_path=str(db))) as manager:
        again = manager.get_session(sid)
        assert again is not None and len(again.get_history()) == 4


async def test_manager_runs_startup_and_shutdown_hooks() -> None:
    from langswarm_runtime import hookimpl

    events: list[str] = []

    class Lifecycle:
        @hookimpl
        def startup(self, runtime):  # type: ignore[no-untyped-def]
            events.append("startup")

        @hookimpl
        async def shutdown(self, runtime):  # type: ignore[no-untyped-def]
            events.append("shutdown")

    manager = SessionManager(storage=MemorySessionStorage())
    manager.runtime.plugins.register(Lifecycle(), "lifecycle")
    session = await manager.create_session(user_id="u", provider="echo")
    await session.send_message("x")
    assert events == ["startup"]
    await manager.close()
    await manager.close()
    assert events == ["startup", "shutdown"]


async def test_failed_native_turn_drops_remote_state_and_reseeds_from_mirror() -> None:
    async with SessionManager(storage=MemorySessionStorage()) as manager:
        session = await manager.create_session(user_id="u", provider="echo", backend="native")
        await session.send_message("kept")
        assert session.record.provider_state == {"conversation_length": 2}
        stream = session.stream_message("broken off")
        await stream.__anext__()
        await stream.aclose()
        # the provider may hold part of the failed turn: forget the remote conversation
        assert session.record.provider_state == {}
        reply = await session.send_message("next")
        assert reply.content == "echo: next [earlier messages: 2]"
        assert session.record.provider_state == {"conversation_length": 4}


async def test_configured_middleware_is_built_once_and_closed(tmp_path: Path, db: Path) -> None:
    log = tmp_path / "audit.jsonl"
    cfg = write_config(
        tmp_path,
        f'version: 1\nstorage: {{type: sqlite, path: "{db}"}}\n'
        f'defaults: {{provider: echo}}\nmiddleware:\n  - {{type: audit_log, path: "{log}"}}\n',
    )
    manager = SessionManager.from_config(cfg)
    sessions = [await manager.create_session(user_id="u") for _ in range(3)]
    chains = {id(s.middleware[0]) for s in sessions}
    assert len(chains) == 1  # one audit writer shared, not one open file per session
    await sessions[0].send_message("x")
    audit = sessions[0].middleware[0]
    await manager.close()
    assert getattr(audit, "_fd", None) is None
    assert len(log.read_text().splitlines()) == 2
