"""The per-session tail cache: hybrid turns read only new rows, and still see what other
processes committed to the same session."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from langswarm_runtime import SessionManager, SQLiteSessionStorage
from langswarm_runtime.session.models import Message, MessageStatus
from langswarm_runtime.session.tailcache import TailCache


class CountingStorage(SQLiteSessionStorage):
    """Counts the message rows handed out by load_messages."""

    rows = 0

    async def load_messages(  # type: ignore[override]
        self, session_id: str, *, last: int | None = None, after_seq: int | None = None,
        statuses: Collection[MessageStatus] | None = None,
    ) -> list[Message]:
        out = await super().load_messages(
            session_id, last=last, after_seq=after_seq, statuses=statuses)
        CountingStorage.rows += len(out)
        return out


async def test_turns_read_only_new_rows(tmp_path: Path) -> None:
    storage = CountingStorage(db_path=str(tmp_path / "a.db"))
    async with SessionManager(storage=storage) as manager:
        session = await manager.create_session(user_id="u", provider="echo", backend="hybrid")
        for i in range(30):
            await session.send_message(f"m{i}")
        CountingStorage.rows = 0
        reply = await session.send_message("last")
        assert reply.content == "echo: last [earlier messages: 60]"
        # the previous turn's two messages, not the 60-message window
        assert CountingStorage.rows <= 4


async def test_cache_sees_turns_committed_by_another_process(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    async with SessionManager(storage=SQLiteSessionStorage(db_path=db)) as here, \
            SessionManager(storage=SQLiteSessionStorage(db_path=db)) as there:
        mine = await here.create_session(user_id="u", provider="echo", backend="hybrid")
        await mine.send_message("a")
        theirs = await there.get_session(mine.session_id)
        assert theirs is not None
        await theirs.send_message("b")
        await theirs.send_message("c")
        reply = await mine.send_message("d")
        assert reply.content == "echo: d [earlier messages: 6]"
        history = [m.content for m in await mine.get_history() if m.role == "user"]
        assert history == ["a", "b", "c", "d"]


async def test_cache_serves_window_reads_and_respects_the_window(tmp_path: Path) -> None:
    storage = SQLiteSessionStorage(db_path=str(tmp_path / "w.db"))
    async with SessionManager(storage=storage) as manager:
        session = await manager.create_session(user_id="u", provider="echo", backend="hybrid")
        for i in range(12):
            await session.send_message(f"m{i}")
        sid = session.session_id
    cache = TailCache(SQLiteSessionStorage(db_path=str(tmp_path / "w.db")), sid)
    committed = [MessageStatus.COMMITTED]
    first = await cache.load_messages(sid, last=6, statuses=committed)
    again = await cache.load_messages(sid, last=4, statuses=committed)
    assert [m.seq for m in again] == [m.seq for m in first][-4:]
    tail = await cache.load_messages(sid, after_seq=first[1].seq, statuses=committed)
    assert [m.seq for m in tail] == [m.seq for m in first][2:]
    # anything else goes to the storage
    everything = await cache.load_messages(sid)
    assert len(everything) == 24
