"""The storage conformance suite: every storage, built-in or plugin, passes it unchanged.

A plugin author subclasses :class:`StorageConformance` in a test module and provides one
fixture, ``storage_factory``: a callable that returns a new storage instance (or an
awaitable of one) on the same backing store, e.g. the same database file, schema or key
prefix. Your fixture owns what it makes and closes it at teardown::

    from langswarm_runtime.testing import StorageConformance

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        def storage_factory(self, tmp_path):
            return lambda: MyStorage(path=tmp_path / "db")

Set ``shared_backing = False`` on the class when two instances do not share data (like
``MemorySessionStorage``); the cross-instance tests are then skipped. Rich turns (content
parts, tool specs, tool turns' pending steps, media kept once in the blob store) are
checked too; override ``blob_count`` so the suite can count your storage's blobs. The class includes a
hypothesis stateful test (:class:`StorageStateMachine`) that runs random operation
sequences against the storage and a plain in-memory model and checks they agree.
Tests use fresh random session and user ids, so leftovers of other tests don't matter.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from langswarm_runtime.errors import ConcurrencyError, InvalidText, SessionNotFound, StorageError
from langswarm_runtime.session.models import (
    Message,
    MessageStatus,
    SessionBackend,
    SessionRecord,
    Usage,
)
from langswarm_runtime.session.parts import ImagePart, TextPart
from langswarm_runtime.session.storage.base import ISessionStorage, pending_seqs
from langswarm_runtime.testing._storage_rich import RichTurnChecks, has_blob_store, media_bytes

__all__ = ["StorageConformance", "StorageStateMachine", "make_storage_state_machine"]

P, C, F, I = (MessageStatus.PENDING, MessageStatus.COMMITTED, MessageStatus.FAILED,
              MessageStatus.INTERRUPTED)  # fmt: skip


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def make_record(user_id: str | None = None, **fields: Any) -> SessionRecord:
    """A record with a fresh id (and user id unless given)."""
    return SessionRecord(
        session_id=fields.pop("session_id", _uid("s")),
        user_id=user_id or _uid("u"),
        provider=fields.pop("provider", "echo"),
        **fields,
    )


def _turn(text: str, status: MessageStatus = C) -> list[Message]:
    return [
        Message(role="user", content=f"q {text}", status=status),
        Message(role="assistant", content=f"a {text}", status=status),
    ]


def _key(m: Message) -> tuple[Any, ...]:
    """What must survive a round trip (timestamps compared separately, to a microsecond;
    media bytes go to the blob store, see ``_storage_rich``)."""
    return (m.seq, m.role, m.content, MessageStatus(m.status), m.usage,
            m.provider_message_id, m.metadata, m.parts)  # fmt: skip


def assert_records_equal(got: SessionRecord | None, want: SessionRecord) -> None:
    """Equal in every field; timestamps to a microsecond (some stores keep no more)."""
    assert got is not None
    skip = {"created_at", "updated_at"}
    assert got.model_dump(exclude=skip) == want.model_dump(exclude=skip)
    assert got.created_at == pytest.approx(want.created_at, abs=1e-6)
    assert got.updated_at == pytest.approx(want.updated_at, abs=1e-6)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class StorageConformance(RichTurnChecks):
    """Base class of the conformance tests; see the module docstring."""

    #: False when two instances from ``storage_factory`` do not share data.
    shared_backing: ClassVar[bool] = True
    #: Examples for the stateful test (each runs up to ``stateful_steps`` operations).
    stateful_examples: ClassVar[int] = 25
    stateful_steps: ClassVar[int] = 25
    #: Examples for the text round trip (each one write and one read).
    text_examples: ClassVar[int] = 60

    @pytest_asyncio.fixture
    async def storage(self, storage_factory: Callable[[], Any]) -> ISessionStorage:
        store: ISessionStorage = await _maybe_await(storage_factory())
        return store

    @pytest_asyncio.fixture
    async def other(self, storage_factory: Callable[[], Any]) -> ISessionStorage:
        """A second instance on the same backing store."""
        if not self.shared_backing:
            pytest.skip("this storage has no shared backing store")
        store: ISessionStorage = await _maybe_await(storage_factory())
        return store

    # -- session records ---------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_record_round_trip(self, storage: ISessionStorage) -> None:
        rec = make_record(
            model="m-1", backend=SessionBackend.NATIVE, system_prompt="Be brief. ✓",
            provider_state={"conversation_id": "conv_1", "nested": {"n": [1, 2.5, None]}},
            metadata={"tags": ["a", "ü"], "flag": True},
            middleware=[{"type": "pii_filter", "entities": ["email"]}],
            usage=Usage(input_tokens=5, output_tokens=7, cached_tokens=1),
            created_at=1700000000.123456, updated_at=1700000001.654321,
        )  # fmt: skip
        await storage.create_session(rec)
        assert_records_equal(await storage.load_session(rec.session_id), rec)

    @pytest.mark.asyncio
    async def test_load_unknown_session_is_none(self, storage: ISessionStorage) -> None:
        assert await storage.load_session(_uid("nope")) is None

    @pytest.mark.asyncio
    async def test_create_duplicate_raises(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)
        with pytest.raises(StorageError):
            await storage.create_session(make_record(session_id=rec.session_id, model="x"))
        assert_records_equal(await storage.load_session(rec.session_id), rec)

    @pytest.mark.asyncio
    async def test_save_is_version_checked(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)
        first = await storage.load_session(rec.session_id)
        second = await storage.load_session(rec.session_id)
        assert first is not None and second is not None
        first.metadata = {"k": "v"}
        first.usage = Usage(input_tokens=3)
        first.provider_state = {"conversation_id": "c"}
        await storage.save_session(first)
        assert first.version == rec.version + 1
        assert_records_equal(await storage.load_session(rec.session_id), first)
        second.metadata = {"k": "stale"}
        with pytest.raises(ConcurrencyError):
            await storage.save_session(second)
        assert_records_equal(await storage.load_session(rec.session_id), first)
        await storage.save_session(first)  # the holder of the current version goes on
        assert first.version == rec.version + 2

    @pytest.mark.asyncio
    async def test_save_unknown_session_raises(self, storage: ISessionStorage) -> None:
        with pytest.raises(SessionNotFound):
            await storage.save_session(make_record())

    @pytest.mark.asyncio
    async def test_delete_removes_record_and_messages(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)
        await storage.append_messages(rec.session_id, _turn("1"))
        assert await storage.delete_session(rec.session_id) is True
        assert await storage.load_session(rec.session_id) is None
        assert await storage.load_messages(rec.session_id) == []
        assert await storage.delete_session(rec.session_id) is False
        await storage.create_session(make_record(session_id=rec.session_id))
        assert await storage.load_messages(rec.session_id) == []  # nothing came back

    @pytest.mark.asyncio
    async def test_list_filters_by_user_newest_first(self, storage: ISessionStorage) -> None:
        alice, bob = _uid("alice"), _uid("bob")
        mine = [make_record(alice, updated_at=1000.0 + i) for i in range(4)]
        for rec in [*mine, make_record(bob, updated_at=5000.0)]:
            await storage.create_session(rec)
        got = await storage.list_sessions(user_id=alice)
        assert [r.session_id for r in got] == [r.session_id for r in reversed(mine)]
        assert_records_equal(got[0], mine[-1])
        assert await storage.list_sessions(user_id=_uid("nobody")) == []
        everyone = [r.session_id for r in await storage.list_sessions(limit=10_000)]
        assert {r.session_id for r in mine} <= set(everyone)

    @pytest.mark.asyncio
    async def test_list_pages_with_cursor(self, storage: ISessionStorage) -> None:
        user = _uid("u")
        # Ties on updated_at on purpose: paging must still see each record exactly once.
        recs = [make_record(user, updated_at=2000.0 + i // 3) for i in range(8)]
        for rec in recs:
            await storage.create_session(rec)
        seen: list[str] = []
        cursor = None
        while True:
            page = await storage.list_sessions(user_id=user, limit=3, cursor=cursor)
            assert len(page) <= 3
            if not page:
                break
            seen += [r.session_id for r in page]
            cursor = page[-1].session_id
        assert sorted(seen) == sorted(r.session_id for r in recs)
        assert len(seen) == len(set(seen))
        by_id = {r.session_id: r.updated_at for r in recs}
        stamps = [by_id[s] for s in seen]
        assert stamps == sorted(stamps, reverse=True)
        assert len(await storage.list_sessions(user_id=user, limit=2)) == 2

    # -- messages --------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_append_assigns_increasing_seqs(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)
        given = _turn("1")
        first = await storage.append_messages(rec.session_id, given)
        second = await storage.append_messages(rec.session_id, _turn("2") + _turn("3"))
        seqs = [m.seq or 0 for m in first + second]
        assert all(isinstance(m.seq, int) for m in first + second)
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert [m.content for m in first] == ["q 1", "a 1"]
        assert all(m.seq is None for m in given)  # the caller's objects are untouched
        loaded = await storage.load_messages(rec.session_id)
        assert [_key(m) for m in loaded] == [_key(m) for m in first + second]
        for got, sent in zip(loaded, first + second, strict=True):
            assert got.created_at == pytest.approx(sent.created_at, abs=1e-6)
            assert isinstance(got.status, MessageStatus)

    @pytest.mark.asyncio
    async def test_unknown_session_messages(self, storage: ISessionStorage) -> None:
        sid = _uid("nope")
        with pytest.raises(SessionNotFound):
            await storage.append_messages(sid, _turn("x"))
        with pytest.raises(SessionNotFound):
            await storage.commit_turn(sid, None, _turn("x"))
        assert await storage.load_messages(sid) == []
        assert await storage.load_messages(sid, last=5) == []

    @pytest.mark.asyncio
    async def test_load_last_and_after_seq(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)
        stored: list[Message] = []
        for i in range(6):
            stored += await storage.append_messages(rec.session_id, _turn(str(i)))
        keys = [_key(m) for m in stored]

        async def load(**kw: Any) -> list[tuple[Any, ...]]:
            return [_key(m) for m in await storage.load_messages(rec.session_id, **kw)]

        assert await load(last=3) == keys[-3:]
        assert await load(last=100) == keys
        assert await load(last=0) == []
        assert await load(after_seq=stored[7].seq) == keys[8:]
        assert await load(after_seq=stored[3].seq, last=2) == keys[-2:]
        assert await load(after_seq=stored[-1].seq) == []

    @pytest.mark.asyncio
    async def test_statuses_filter(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)
        sid = rec.session_id
        a = await storage.append_messages(sid, _turn("1"))
        failed = await storage.append_messages(sid, [Message(role="user", content="f")])
        b = await storage.append_messages(sid, _turn("2"))
        pending = await storage.append_messages(sid, [Message(role="user", content="p", status=P)])
        await storage.update_message_status(sid, [failed[0].seq or 0], F)

        async def load(**kw: Any) -> list[int | None]:
            return [m.seq for m in await storage.load_messages(sid, **kw)]

        assert await load(statuses=[C]) == [m.seq for m in a + b]
        assert await load(statuses=[C], last=3) == [a[1].seq, b[0].seq, b[1].seq]
        assert await load(statuses=[P]) == [pending[0].seq]
        assert await load(statuses=[F, P]) == [failed[0].seq, pending[0].seq]
        assert await load(statuses=[I]) == []
        assert len(await load()) == 6
        got = await storage.load_messages(sid, statuses=[F])
        assert got[0].status == F and got[0].content == "f"

    @pytest.mark.asyncio
    async def test_commit_turn_replaces_placeholder(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)
        sid = rec.session_id
        before = await storage.append_messages(sid, _turn("0"))
        for mark in (None, I, F):  # still pending, or marked meanwhile: always removed
            placeholder = await storage.append_messages(
                sid, [Message(role="user", content="q", status=P)]
            )
            pseq = placeholder[0].seq
            assert pseq is not None
            if mark is not None:
                await storage.update_message_status(sid, [pseq], mark)
            turn = await storage.commit_turn(sid, pseq, _turn("1"))
            assert [m.content for m in turn] == ["q 1", "a 1"]
            everything = await storage.load_messages(sid)
            assert pseq not in [m.seq for m in everything]
            assert all(m.status == C for m in everything)
            assert (turn[0].seq or 0) > pseq and (turn[1].seq or 0) > (turn[0].seq or 0)
            assert [_key(m) for m in everything[-2:]] == [_key(m) for m in turn]
        assert (await storage.load_messages(sid))[:2] == before
        assert await storage.commit_turn(sid, None, _turn("2")) != []
        assert len(await storage.load_messages(sid)) == 10

    @pytest.mark.asyncio
    async def test_commit_turn_updates_record(self, storage: ISessionStorage) -> None:
        rec = make_record(provider_state={"old": 1}, usage=Usage(input_tokens=1),
                          metadata={"keep": [1, "ü"]}, updated_at=1000.0)  # fmt: skip
        await storage.create_session(rec)
        sid = rec.session_id
        await storage.commit_turn(sid, None, _turn("0"))  # no record fields: untouched
        assert_records_equal(await storage.load_session(sid), rec)
        before = time.time()
        for i in range(1, 4):
            pending = await storage.append_messages(
                sid, [Message(role="user", content="q", status=P)]
            )
            turn = await storage.commit_turn(
                sid, pending[0].seq, _turn(str(i)),
                usage=Usage(input_tokens=10 * i, output_tokens=i, cached_tokens=2),
                provider_state={"conversation_id": f"c{i}", "nested": {"n": [i, 0.5]}}
                if i < 3 else None,
            )  # fmt: skip
            assert [m.content for m in turn] == [f"q {i}", f"a {i}"]
        got = await storage.load_session(sid)
        assert got is not None
        assert got.usage == Usage(input_tokens=61, output_tokens=6, cached_tokens=6)
        # Replaced by turn 2's state; turn 3 passed none, so it stayed.
        assert got.provider_state == {"conversation_id": "c2", "nested": {"n": [2, 0.5]}}
        assert got.version == rec.version + 3
        assert got.updated_at >= before - 1
        assert (got.metadata, got.provider, got.user_id) == (rec.metadata, "echo", rec.user_id)
        stale = rec.model_copy(deep=True)  # saw the record before the commits
        with pytest.raises(ConcurrencyError):
            await storage.save_session(stale)
        await storage.save_session(got)  # the fresh copy saves
        _check_turns(await storage.load_messages(sid, statuses=[C]), 4)
        listed = await storage.list_sessions(user_id=rec.user_id)
        assert [r.session_id for r in listed] == [sid]
        assert listed[0].usage == got.usage

    @pytest.mark.asyncio
    async def test_commit_turn_record_update_unknown_session(
        self, storage: ISessionStorage
    ) -> None:
        with pytest.raises(SessionNotFound):
            await storage.commit_turn(_uid("none"), None, _turn("x"), usage=Usage(input_tokens=1))
        with pytest.raises(SessionNotFound):
            await storage.commit_turn(_uid("none"), None, [], provider_state={"a": 1})
        rec = make_record()
        await storage.create_session(rec)
        # An empty turn with a record update is still a record update.
        assert await storage.commit_turn(rec.session_id, None, [], usage=Usage(
            output_tokens=3)) == []  # fmt: skip
        got = await storage.load_session(rec.session_id)
        assert got is not None and got.usage == Usage(output_tokens=3)
        assert got.version == rec.version + 1
        assert await storage.load_messages(rec.session_id) == []

    @pytest.mark.asyncio
    async def test_concurrent_commits_add_up(
        self, storage: ISessionStorage, other: ISessionStorage
    ) -> None:
        rec = make_record(usage=Usage(input_tokens=5))
        await storage.create_session(rec)
        sid = rec.session_id

        async def writer(store: ISessionStorage, w: int) -> None:
            for i in range(15):
                (pending,) = await store.append_messages(
                    sid, [Message(role="user", content="q", status=P)]
                )
                await store.commit_turn(
                    sid, pending.seq, _turn(f"{w}.{i}"),
                    usage=Usage(input_tokens=1, output_tokens=w + 1, cached_tokens=i),
                    provider_state={"writer": w, "turn": i},
                )  # fmt: skip

        await asyncio.gather(writer(storage, 0), writer(other, 1), writer(storage, 2),
                             writer(other, 3))  # fmt: skip
        for store in (storage, other):
            got = await store.load_session(sid)
            assert got is not None
            assert got.usage == Usage(
                input_tokens=5 + 60, output_tokens=15 * (1 + 2 + 3 + 4),
                cached_tokens=4 * sum(range(15)),
            )  # fmt: skip
            assert got.version == rec.version + 60
            assert got.provider_state["writer"] in (0, 1, 2, 3)
        _check_turns(await other.load_messages(sid), 60)

    @pytest.mark.asyncio
    async def test_concurrent_appends_in_tasks(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)

        async def writer(w: int) -> None:
            for i in range(5):
                await storage.append_messages(rec.session_id, _turn(f"{w}.{i}"))

        await asyncio.gather(*(writer(w) for w in range(20)))
        _check_turns(await storage.load_messages(rec.session_id), 100)

    @pytest.mark.asyncio
    async def test_two_instances_share_and_conflict(
        self, storage: ISessionStorage, other: ISessionStorage
    ) -> None:
        rec = make_record()
        await storage.create_session(rec)
        mine = await storage.load_session(rec.session_id)
        theirs = await other.load_session(rec.session_id)
        assert mine is not None and theirs is not None
        await other.save_session(theirs)
        with pytest.raises(ConcurrencyError):
            await storage.save_session(mine)
        await asyncio.gather(
            *(s.append_messages(rec.session_id, _turn(f"{n}.{i}"))
              for i in range(25) for n, s in enumerate((storage, other)))
        )  # fmt: skip
        _check_turns(await other.load_messages(rec.session_id), 50)
        assert await storage.delete_session(rec.session_id)
        assert await other.load_session(rec.session_id) is None

    @pytest.mark.asyncio
    async def test_unicode_large_and_usage_round_trip(self, storage: ISessionStorage) -> None:
        rec = make_record()
        await storage.create_session(rec)
        big = "é漢🙂" * 100_000 + "end"
        sent = [
            Message(role="user", content="Grüße, мир, عالم, 🙂 \n\t 'quotes' \"dq\" \\ %s ?"),
            Message(role="assistant", content=big, usage=Usage(input_tokens=10,
                    output_tokens=20, cached_tokens=3), provider_message_id="msg_01",
                    metadata={"finish": "stop", "scores": [0.5, 1e-9], "x": None}),
            Message(role="summary", content=""),
        ]  # fmt: skip
        stored = await storage.append_messages(rec.session_id, sent)
        loaded = await storage.load_messages(rec.session_id)
        assert [_key(m) for m in loaded] == [_key(m) for m in stored]
        assert loaded[1].content == big and loaded[1].usage == sent[1].usage

    def test_text_round_trip(self, storage_factory: Callable[[], Any]) -> None:
        """Arbitrary Unicode (control characters, noncharacters, astral planes, NUL and
        lone surrogates included): what a write accepts comes back byte-identical from
        another instance; NUL and lone surrogates are refused with ``InvalidText``
        (naming the character) and leave nothing written, the turn's placeholder
        included."""
        loop = asyncio.new_event_loop()
        made: list[ISessionStorage] = []

        def run(coro: Any) -> Any:
            return loop.run_until_complete(coro)

        def new_store() -> ISessionStorage:
            store: ISessionStorage = run(_maybe_await(storage_factory()))
            made.append(store)
            return store

        try:
            store = new_store()
            reader = new_store() if self.shared_backing else store
            rec = make_record()
            run(store.create_session(rec))
            sid = rec.session_id

            @settings(max_examples=self.text_examples, deadline=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(content=_ANY_TEXT, key=_ANY_TEXT, pmid=st.none() | _ANY_TEXT,
                   commit=st.booleans())  # fmt: skip
            def check(content: str, key: str, pmid: str | None, commit: bool) -> None:
                run(_text_case(store, reader, sid, content, key, pmid, commit))

            check()

            @settings(max_examples=max(1, self.text_examples // 2), deadline=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(user=_STORABLE_TEXT.filter(bool), prompt=_STORABLE_TEXT,
                   key=_STORABLE_TEXT)  # fmt: skip
            def check_record(user: str, prompt: str, key: str) -> None:
                made_rec = make_record(
                    user, system_prompt=prompt, model=prompt or None,
                    metadata={key: [prompt, {key: user}]}, provider_state={key: prompt},
                )  # fmt: skip
                run(store.create_session(made_rec))
                assert_records_equal(run(reader.load_session(made_rec.session_id)), made_rec)
                listed = run(reader.list_sessions(user_id=user, limit=1000))
                assert made_rec.session_id in [r.session_id for r in listed]

            check_record()
        finally:
            try:
                for store in made:
                    run(store.close())
            finally:
                loop.close()

    @pytest.mark.asyncio
    async def test_results_are_copies(self, storage: ISessionStorage) -> None:
        rec = make_record(metadata={"a": [1]})
        await storage.create_session(rec)
        rec.metadata["a"].append(2)  # after create: must not reach the store
        loaded = await storage.load_session(rec.session_id)
        assert loaded is not None and loaded.metadata == {"a": [1]}
        loaded.metadata["a"].append(3)
        msg = Message(role="user", content="x", metadata={"k": [1]})
        (stored,) = await storage.append_messages(rec.session_id, [msg])
        msg.metadata["k"].append(2)
        stored.metadata["k"].append(3)
        (got,) = await storage.load_messages(rec.session_id)
        got.metadata["k"].append(4)
        again = await storage.load_session(rec.session_id)
        assert again is not None and again.metadata == {"a": [1]}
        assert (await storage.load_messages(rec.session_id))[0].metadata == {"k": [1]}

    @pytest.mark.asyncio
    async def test_close_is_idempotent(self, storage_factory: Callable[[], Any]) -> None:
        """close() twice raises nothing, used or not; after it every operation is a
        StorageError (a closed storage never reconnects behind the caller's back); what
        was written before it stays stored."""
        unused: ISessionStorage = await _maybe_await(storage_factory())
        await unused.close()
        await unused.close()
        store: ISessionStorage = await _maybe_await(storage_factory())
        rec = make_record()
        await store.create_session(rec)
        await store.append_messages(rec.session_id, _turn("kept"))
        await store.close()
        await store.close()
        sid = rec.session_id
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("create_session", (make_record(),)), ("load_session", (sid,)),
            ("list_sessions", ()), ("append_messages", (sid, _turn("late"))),
            ("commit_turn", (sid, None, _turn("late"))), ("load_messages", (sid,)),
        ]  # fmt: skip
        for closed in (unused, store):
            for name, args in calls:
                with pytest.raises(StorageError):
                    await getattr(closed, name)(*args)
        if self.shared_backing:
            reader: ISessionStorage = await _maybe_await(storage_factory())
            got = await reader.load_messages(sid)
            assert [m.content for m in got] == ["q kept", "a kept"]

    def test_stateful_against_model(self, storage_factory: Callable[[], Any]) -> None:
        machine = make_storage_state_machine(storage_factory)
        # Typed in newer hypothesis releases, untyped in older ones: call through Any so
        # mypy is clean with both.
        run: Any = run_state_machine_as_test
        run(
            machine,
            settings=settings(
                max_examples=self.stateful_examples,
                stateful_step_count=self.stateful_steps,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )


#: Any code point: hypothesis leaves out surrogates unless told otherwise. The special
#: characters come up often, not once in a thousand examples.
_SPECIAL = "\x00\x01\x1f\x7f\x85\r\u2028\ufeff\ufffe\uffff\U0010ffff\ud800\udc80\udfff🙂é"
_FINE = "\x01\x1f\x7f\x85\r\u2028\ufeff\ufffe\uffff\U0010ffff🙂é"
_ANY_TEXT = st.text(st.characters(exclude_categories=[]) | st.sampled_from(_SPECIAL), max_size=12)
_STORABLE_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
    | st.sampled_from(_FINE),
    max_size=12,
)


def _bad_char(text: str) -> int | None:
    """Index of the first character no storage can hold (NUL, a lone surrogate)."""
    for i, c in enumerate(text):
        if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF:
            return i
    return None


async def _text_case(
    store: ISessionStorage, reader: ISessionStorage, sid: str,
    content: str, key: str, pmid: str | None, commit: bool,
) -> None:  # fmt: skip
    """One example of ``test_text_round_trip``."""
    message = Message(role="assistant", content=content, provider_message_id=pmid,
                      metadata={key: [content, {"k": key}]})  # fmt: skip
    before = await reader.load_messages(sid)
    texts = [content, key] if pmid is None else [content, key, pmid]
    bad = [i for i in map(_bad_char, texts) if i is not None]
    pseq: int | None = None
    if commit:
        (placeholder,) = await store.append_messages(sid, [Message(role="user", content="p",
                                                                   status=P)])  # fmt: skip
        pseq = placeholder.seq
        before = await reader.load_messages(sid)
    if bad:
        with pytest.raises(InvalidText) as caught:
            if commit:
                await store.commit_turn(sid, pseq, [Message(role="user", content="q"),
                                                    message], provider_state={"s": key})
            else:
                await store.append_messages(sid, [message])
        err = caught.value
        assert _bad_char(err.char) == 0 and f"U+{ord(err.char):04X}" in str(err)
        assert [_key(m) for m in await reader.load_messages(sid)] == [_key(m) for m in before]
        if commit:  # the turn's placeholder is still there: nothing was half-written
            await store.update_message_status(sid, [pseq or 0], F)
        return
    if commit:
        stored = await store.commit_turn(sid, pseq, [Message(role="user", content="q"),
                                                     message], provider_state={"s": key})
        stored = stored[1:]
    else:
        stored = await store.append_messages(sid, [message])
    (got,) = await reader.load_messages(sid, last=1)
    assert got.content == content and got.content.encode() == content.encode()
    assert got.metadata == {key: [content, {"k": key}]}
    assert got.provider_message_id == pmid
    assert _key(got) == _key(stored[0])
    if commit:
        record = await reader.load_session(sid)
        assert record is not None and record.provider_state == {"s": key}


def _check_turns(messages: list[Message], turns: int) -> None:
    """No loss, no duplicate, unique ordered seqs, each turn's two messages adjacent."""
    assert all(isinstance(m.seq, int) for m in messages)
    seqs = [m.seq or 0 for m in messages]
    assert len(messages) == 2 * turns
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for q, a in zip(messages[::2], messages[1::2], strict=True):
        assert q.content.startswith("q ") and a.content == "a " + q.content[2:]


class StorageStateMachine(RuleBasedStateMachine):
    """Random operations against a storage and a dict model; they must agree.

    Use :func:`make_storage_state_machine` to bind it to a storage factory. Each example
    runs on its own event loop with a fresh storage instance and its own user id.
    """

    factory: ClassVar[Callable[[], Any]]
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store: ISessionStorage = self.run(_maybe_await(type(self).factory()))
        self.user = _uid("prop")
        self.records: dict[str, SessionRecord] = {}
        self.messages: dict[str, list[Message]] = {}
        self.max_seq: dict[str, int] = {}
        self.clock = 1000.0
        #: Media of this example (fresh bytes: the backing store may be shared), and the
        #: sessions each was written to. A blob is kept while one of them lives.
        self.images = [ImagePart.from_bytes(media_bytes(str(i)), "image/png") for i in range(3)]
        self.blob_sessions: dict[str, set[str]] = {p.sha256 or "": set() for p in self.images}
        self.blobs = has_blob_store(self.store)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            for sid in list(self.records):
                self.run(self.store.delete_session(sid))
            self.run(self.store.close())
        finally:
            self.loop.close()

    def _appended(self, sid: str, stored: list[Message], sent: list[Message]) -> None:
        assert [m.content for m in stored] == [m.content for m in sent]
        for m in stored:
            assert m.seq is not None and m.seq > self.max_seq[sid]
            self.max_seq[sid] = m.seq
        self.messages[sid] += stored

    @rule(target=sessions)
    def create(self) -> str:
        self.clock += 1
        rec = make_record(self.user, updated_at=self.clock, metadata={"n": self.clock})
        self.run(self.store.create_session(rec))
        self.records[rec.session_id] = rec
        self.messages[rec.session_id] = []
        self.max_seq[rec.session_id] = 0
        return rec.session_id

    @rule(sid=consumes(sessions))
    def delete(self, sid: str) -> None:
        assert self.run(self.store.delete_session(sid)) is True
        del self.records[sid], self.messages[sid]
        for holders in self.blob_sessions.values():
            holders.discard(sid)

    @rule(sid=sessions, which=st.lists(st.integers(0, 2), min_size=1, max_size=3),
          status=st.sampled_from([C, P]))  # fmt: skip
    def append_media(self, sid: str, which: list[int], status: MessageStatus) -> None:
        # Pending too: a commit may later replace the step, and its media must still go
        # when the session is deleted.
        parts = [self.images[i] for i in which]
        sent = [Message(role="user", parts=[*parts, TextPart(text="img")], status=status)]
        stored = self.run(self.store.append_messages(sid, sent))
        for part in parts:
            self.blob_sessions[part.sha256 or ""].add(sid)
        if self.blobs:
            assert all(p.data is None for p in stored[0].parts if isinstance(p, ImagePart))
        self._appended(sid, stored, sent)

    @rule(sid=sessions, n=st.integers(1, 3), status=st.sampled_from([C, P]))
    def append(self, sid: str, n: int, status: MessageStatus) -> None:
        sent = [Message(role="user", content=f"m{i}", status=status) for i in range(n)]
        self._appended(sid, self.run(self.store.append_messages(sid, sent)), sent)

    @rule(sid=sessions, data=st.data(), status=st.sampled_from([F, I, P]))
    def update_status(self, sid: str, data: st.DataObject, status: MessageStatus) -> None:
        open_ = [m for m in self.messages[sid] if m.status != C]
        if not open_:
            return
        target = data.draw(st.sampled_from(open_))
        self.run(self.store.update_message_status(sid, [target.seq or 0], status))
        self.messages[sid] = [m.model_copy(update={"status": status}) if m.seq == target.seq
                              else m for m in self.messages[sid]]  # fmt: skip

    @rule(sid=sessions, data=st.data(),
          usage=st.none() | st.builds(Usage, input_tokens=st.integers(0, 99),
                                      output_tokens=st.integers(0, 99)),
          state=st.none() | st.dictionaries(st.sampled_from("ab"), st.integers(0, 9)))
    def commit(self, sid: str, data: st.DataObject, usage: Usage | None,
               state: dict[str, int] | None) -> None:  # fmt: skip
        # None, one seq, or several (a tool turn's pending steps); a committed seq named
        # among them is never removed.
        seqs = [m.seq for m in self.messages[sid]]
        pseq: Any = data.draw(st.none() | st.sampled_from(seqs or [0])
                              | st.lists(st.sampled_from(seqs or [0]), max_size=4))  # fmt: skip
        sent = _turn("t")
        stored = self.run(self.store.commit_turn(sid, pseq, sent, usage=usage,
                                                 provider_state=state))  # fmt: skip
        gone = set(pending_seqs(pseq))
        self.messages[sid] = [m for m in self.messages[sid]
                              if m.seq not in gone or m.status == C]  # fmt: skip
        self._appended(sid, stored, sent)
        if usage is None and state is None:
            return
        rec = self.records[sid].model_copy(deep=True)
        rec.usage = rec.usage + (usage or Usage())
        if state is not None:
            rec.provider_state = state
        rec.version += 1
        got = self.run(self.store.load_session(sid))
        assert got is not None and got.updated_at > rec.updated_at
        rec.updated_at = got.updated_at  # "now" is the store's; the rest must match
        self.records[sid] = rec

    @rule(sid=sessions, stale=st.booleans())
    def save(self, sid: str, stale: bool) -> None:
        rec = self.records[sid].model_copy(deep=True)
        self.clock += 1
        rec.updated_at, rec.metadata = self.clock, {"n": self.clock}
        if stale:
            rec.version -= 1
            with pytest.raises(ConcurrencyError):
                self.run(self.store.save_session(rec))
            return
        self.run(self.store.save_session(rec))
        self.records[sid] = rec

    @rule(sid=sessions, last=st.none() | st.integers(0, 6), after=st.none() | st.integers(0, 12),
          statuses=st.none() | st.sets(st.sampled_from([C, P, F, I])))  # fmt: skip
    def load(self, sid: str, last: int | None, after: int | None,
             statuses: set[MessageStatus] | None) -> None:  # fmt: skip
        want = [m for m in self.messages[sid]
                if (after is None or (m.seq or 0) > after)
                and (statuses is None or m.status in statuses)]  # fmt: skip
        if last is not None:
            want = want[-last:] if last else []
        got = self.run(self.store.load_messages(sid, last=last, after_seq=after,
                                                statuses=statuses))  # fmt: skip
        assert [_key(m) for m in got] == [_key(m) for m in want]

    @invariant()
    def records_and_listing_agree(self) -> None:
        listed = self.run(self.store.list_sessions(user_id=self.user, limit=1000))
        want = sorted(self.records.values(), key=lambda r: r.updated_at, reverse=True)
        assert [r.session_id for r in listed] == [r.session_id for r in want]
        for got, rec in zip(listed, want, strict=True):
            assert_records_equal(got, rec)

    @invariant()
    def blobs_live_with_their_sessions(self) -> None:
        if not self.blobs:
            return
        for sha, holders in self.blob_sessions.items():
            data = self.run(self.store.load_blob(sha))
            if holders:
                assert data is not None and hashlib.sha256(data).hexdigest() == sha
            else:  # never written, or every session that had it is deleted
                assert data is None

    @invariant()
    def histories_agree(self) -> None:
        for sid, model in self.messages.items():
            full = self.run(self.store.load_messages(sid))
            assert [_key(m) for m in full] == [_key(m) for m in model]
            tail = self.run(self.store.load_messages(sid, last=2))
            assert [_key(m) for m in tail] == [_key(m) for m in model[-2:]]


def make_storage_state_machine(factory: Callable[[], Any]) -> type[StorageStateMachine]:
    """A :class:`StorageStateMachine` bound to ``factory`` (a callable returning a storage
    or an awaitable of one). ``make_storage_state_machine(f).TestCase`` is a unittest
    case, or pass the class to ``hypothesis.stateful.run_state_machine_as_test``."""
    return type("BoundStorageStateMachine", (StorageStateMachine,), {"factory": staticmethod(factory)})
