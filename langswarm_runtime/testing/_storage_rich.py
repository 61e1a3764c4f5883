"""The storage conformance checks of rich turns: content parts, tool specs, the pending
steps of a tool turn, and media bytes kept once in the blob store.

Mixed into :class:`~langswarm_runtime.testing.storage_suite.StorageConformance`; see
that module for how a storage runs the suite. A storage whose backing store can count
its blobs says how by overriding ``blob_count`` (the built-in storages are counted
here), so the suite can check that the same bytes are stored once.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
import uuid
from typing import Any, ClassVar

import pytest

from langswarm_runtime.session.models import Message, MessageStatus, SessionRecord, Usage
from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.session.storage.base import ISessionStorage

__all__ = ["RichTurnChecks", "media_bytes", "rich_turn"]

P, C, F, I = (MessageStatus.PENDING, MessageStatus.COMMITTED, MessageStatus.FAILED,
              MessageStatus.INTERRUPTED)  # fmt: skip

#: Tool arguments as a model sends them: nested objects and lists, nulls at every level,
#: empty containers, unicode, numbers of each kind. Key order is part of what must come
#: back (arguments and tool schemas are replayed to the provider as they were).
ARGUMENTS: dict[str, Any] = {
    "zeta": "Paris ✓ 🙂",
    "alpha": None,
    "opts": {"units": None, "days": [1, 2, None], "deep": {"b": {"c": None}, "a": []}},
    "empty": {},
    "flag": False,
    "ratio": 0.25,
    "big": 2**53,
    "list": [{"k": None}, "x", 1.5e-9, True],
}

#: A tool spec as a session records it (name, description, JSON Schema); keys out of
#: alphabetical order on purpose.
TOOL_SPECS: list[dict[str, Any]] = [
    {
        "name": "weather",
        "description": "Current weather for a city. ✓",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": ["integer", "null"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    {"name": "noargs", "description": "", "parameters": {"type": "object", "properties": {}}},
]


def media_bytes(tag: str = "") -> bytes:
    """Bytes no other test writes (a shared backing store may hold other tests' blobs),
    not valid UTF-8, with a NUL: media is binary."""
    return b"\x89PNG\r\n\x1a\n\x00\xff" + uuid.uuid4().bytes + tag.encode() + bytes(range(256)) * 16


def rich_turn(image: bytes | None = None) -> list[Message]:
    """A tool turn with every part type: the user's text, images and files (by URL and,
    given ``image``, inline); the model's reasoning, text and tool calls; the tool
    results; the final answer."""
    user_parts: list[Any] = [
        TextPart(text="What is on these? "),
        ImagePart.from_url("https://example.com/cat.png"),
        FilePart(media_type="application/pdf", url="https://example.com/a.pdf", name="a.pdf"),
        TextPart(text="Then check the weather."),
    ]
    if image is not None:
        user_parts += [
            ImagePart.from_bytes(image, "image/png"),
            FilePart.from_bytes(image, "application/octet-stream", name="raw.bin"),
        ]
    return [
        Message(role="user", parts=user_parts),
        Message(
            role="assistant",
            usage=Usage(input_tokens=7, output_tokens=3),
            parts=[
                ReasoningPart(
                    text="The user wants… 🙂",
                    provider="anthropic",
                    model="claude-x",
                    data={"signature": "c2ln==", "nested": {"n": [1, None, 2.5]}},
                ),
                ReasoningPart(text="plain"),
                TextPart(text="Let me check."),
                ToolCall(id="call_1", name="weather", arguments=ARGUMENTS),
                ToolCall(id="call_2", name="noargs"),
            ],
            metadata={"finish": "tool_calls"},
        ),
        Message(
            role="tool",
            parts=[
                ToolResult(
                    call_id="call_1", content='{"temp": 21, "sky": "clear ✓"}', name="weather"
                ),
                ToolResult(call_id="call_2", content="boom", is_error=True),
            ],
        ),
        Message(role="assistant", content="It is clear, 21°C.", provider_message_id="msg_9"),
    ]


def _without_data(parts: list[Any]) -> list[Any]:
    return [p.without_data() if isinstance(p, (ImagePart, FilePart)) else p for p in parts]


def _ordered(value: Any) -> str:
    """Order-sensitive form of JSON data (dict equality ignores key order)."""
    return json.dumps(value, ensure_ascii=False)


def _parts_json(message: Message) -> list[str]:
    return [_ordered(p.model_dump(mode="json")) for p in message.parts]


def assert_same_messages(got: list[Message], sent: list[Message], *, blobs: bool) -> None:
    """``got`` (loaded) holds what ``sent`` (stored, seqs set) did: every field, parts in
    order with their keys in order; media bytes dropped when the storage has a blob
    store, kept inline when not."""
    assert len(got) == len(sent)
    for g, s in zip(got, sent, strict=True):
        want = _without_data(s.parts) if blobs else s.parts
        assert (g.seq, g.role, g.content, MessageStatus(g.status)) == (
            s.seq, s.role, s.content, MessageStatus(s.status))  # fmt: skip
        assert (g.usage, g.provider_message_id, g.metadata) == (
            s.usage, s.provider_message_id, s.metadata)  # fmt: skip
        assert g.created_at == pytest.approx(s.created_at, abs=1e-6)
        assert g.parts == want
        assert _parts_json(g) == [_ordered(p.model_dump(mode="json")) for p in want]
        assert g.tool_calls == [p for p in want if isinstance(p, ToolCall)]


def has_blob_store(storage: ISessionStorage) -> bool:
    """Whether the storage keeps media in a blob store (it implements ``load_blob``)."""
    return type(storage).load_blob is not ISessionStorage.load_blob


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _record(**fields: Any) -> SessionRecord:
    return SessionRecord(session_id=_uid("s"), user_id=fields.pop("user_id", _uid("u")),
                         provider="echo", **fields)  # fmt: skip


class RichTurnChecks:
    """Conformance tests of rich turns (mixed into ``StorageConformance``)."""

    #: See ``StorageConformance``.
    shared_backing: ClassVar[bool] = True

    async def blob_count(self, storage: ISessionStorage) -> int | None:
        """How many blobs the storage's backing store holds now, or None if this suite
        cannot tell. Override it for your storage to have "stored once" checked by
        count, not only by behaviour."""
        from langswarm_runtime.session.storage.memory import MemorySessionStorage
        from langswarm_runtime.session.storage.sqlite import SQLiteSessionStorage

        if isinstance(storage, MemorySessionStorage):
            return len(storage._blobs)
        if isinstance(storage, SQLiteSessionStorage) and storage.db_path != ":memory:":
            with sqlite3.connect(storage.db_path) as conn:
                return int(conn.execute("SELECT count(*) FROM blobs").fetchone()[0])
        return None

    # -- parts -----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_parts_round_trip(self, storage: ISessionStorage) -> None:
        """Every part type, through append and commit_turn, back from every kind of
        read: equal, in order, keys in order; tool-call arguments with nested JSON and
        nulls intact; media bytes kept once (or inline, without a blob store)."""
        rec = _record()
        await storage.create_session(rec)
        sid, blobs = rec.session_id, has_blob_store(storage)
        image = media_bytes("parts")
        appended = await storage.append_messages(sid, rich_turn(image))
        assert [m.parts for m in appended] == [
            _without_data(m.parts) if blobs else m.parts for m in rich_turn(image)]  # fmt: skip
        (pending,) = await storage.append_messages(sid, [Message(role="user", content="p",
                                                                 status=P)])  # fmt: skip
        committed = await storage.commit_turn(sid, pending.seq, rich_turn(image),
                                              usage=Usage(output_tokens=1))  # fmt: skip
        stored = appended + committed
        assert_same_messages(await storage.load_messages(sid), stored, blobs=blobs)
        assert_same_messages(await storage.load_messages(sid, last=3), stored[-3:], blobs=blobs)
        after = stored[1].seq or 0
        assert_same_messages(await storage.load_messages(sid, after_seq=after), stored[2:],
                             blobs=blobs)  # fmt: skip
        assert_same_messages(await storage.load_messages(sid, statuses=[C], last=5),
                             stored[-5:], blobs=blobs)  # fmt: skip
        # A status change rewrites nothing else of the message.
        tool_msg = stored[2]
        await storage.update_message_status(sid, [tool_msg.seq or 0], F)
        (failed,) = await storage.load_messages(sid, statuses=[F])
        assert_same_messages([failed], [tool_msg.model_copy(update={"status": F})],
                             blobs=blobs)  # fmt: skip
        got = (await storage.load_messages(sid))[1]
        assert got.tool_calls[0].arguments == ARGUMENTS
        assert _ordered(got.tool_calls[0].arguments) == _ordered(ARGUMENTS)
        assert got.tool_calls[1].arguments == {}
        user = (await storage.load_messages(sid, last=4))[0]
        assert user.content == "What is on these? Then check the weather."
        if blobs:
            media = [
                p for p in user.parts if isinstance(p, (ImagePart, FilePart)) and p.url is None
            ]
            assert len(media) == 2
            for part in media:
                assert part.data is None and part.size == len(image)
                assert part.sha256 is not None and await storage.load_blob(part.sha256) == image

    @pytest.mark.asyncio
    async def test_text_only_messages_unchanged(self, storage: ISessionStorage) -> None:
        """A message that is only text has no parts, stored or loaded, however it was
        given (a string, or text parts that fold into it)."""
        rec = _record()
        await storage.create_session(rec)
        sent = [Message(role="user", content="plain ✓"),
                Message(role="assistant", parts=[TextPart(text="fol"), TextPart(text="ded")]),
                Message(role="summary", content="")]  # fmt: skip
        assert [m.parts for m in sent] == [[], [], []]
        stored = await storage.append_messages(rec.session_id, sent)
        loaded = await storage.load_messages(rec.session_id)
        assert [m.content for m in loaded] == ["plain ✓", "folded", ""]
        assert [m.parts for m in loaded] == [[], [], []]
        skip = {"created_at"}
        assert [m.model_dump(exclude=skip) for m in loaded] == [
            m.model_dump(exclude=skip) for m in stored]  # fmt: skip

    @pytest.mark.asyncio
    async def test_record_tools_round_trip(self, storage: ISessionStorage) -> None:
        """``SessionRecord.tools`` (tool specs) persist through create, save, commit_turn
        record updates and listing, with their keys in order."""
        rec = _record(tools=TOOL_SPECS, metadata={"m": 1})
        await storage.create_session(rec)

        async def tools_of(sid: str) -> list[dict[str, Any]]:
            got = await storage.load_session(sid)
            assert got is not None
            return got.tools

        assert await tools_of(rec.session_id) == TOOL_SPECS
        assert _ordered(await tools_of(rec.session_id)) == _ordered(TOOL_SPECS)
        (listed,) = await storage.list_sessions(user_id=rec.user_id)
        assert _ordered(listed.tools) == _ordered(TOOL_SPECS)
        await storage.commit_turn(rec.session_id, None, rich_turn(),
                                  usage=Usage(input_tokens=2), provider_state={"a": 1})  # fmt: skip
        assert _ordered(await tools_of(rec.session_id)) == _ordered(TOOL_SPECS)
        fresh = await storage.load_session(rec.session_id)
        assert fresh is not None
        fresh.tools = [*TOOL_SPECS[1:], {"name": "added", "parameters": {"type": "object"}}]
        await storage.save_session(fresh)
        assert await tools_of(rec.session_id) == fresh.tools
        fresh.tools = []
        await storage.save_session(fresh)
        assert await tools_of(rec.session_id) == []
        plain = _record()  # no tools: the default, an empty list
        await storage.create_session(plain)
        assert await tools_of(plain.session_id) == []

    # -- the pending steps of a tool turn ---------------------------------------------

    @pytest.mark.asyncio
    async def test_commit_turn_with_several_pending_seqs(self, storage: ISessionStorage) -> None:
        """A tool turn writes each step pending as it happens; commit_turn removes all of
        them (whatever their status now) and appends the turn in the same write.
        Committed messages and other placeholders named or not stay."""
        rec = _record(usage=Usage(input_tokens=1))
        await storage.create_session(rec)
        sid, blobs = rec.session_id, has_blob_store(storage)
        before = await storage.append_messages(sid, rich_turn()[-1:])
        other = await storage.append_messages(sid, [Message(role="user", content="o", status=P)])
        steps: list[Message] = []
        for message in rich_turn(media_bytes("pending"))[:3]:  # one write per step
            steps += await storage.append_messages(sid, [message.model_copy(update={"status": P})])
        await storage.update_message_status(sid, [steps[1].seq or 0], I)
        await storage.update_message_status(sid, [steps[2].seq or 0], F)
        seqs = [m.seq or 0 for m in steps]
        turn = await storage.commit_turn(
            sid, [*seqs, before[0].seq or 0], rich_turn(media_bytes("final")),
            usage=Usage(input_tokens=4, output_tokens=2), provider_state={"c": 1},
        )  # fmt: skip
        assert [m.seq for m in turn] == list(range(turn[0].seq or 0, (turn[0].seq or 0) + 4))
        assert (turn[0].seq or 0) > max(seqs)
        everything = await storage.load_messages(sid)
        assert not set(seqs) & {m.seq for m in everything}
        assert [m.seq for m in everything] == [before[0].seq, other[0].seq,
                                               *(m.seq for m in turn)]  # fmt: skip
        assert_same_messages(everything[2:], turn, blobs=blobs)
        assert everything[1].status == P  # not named: still there
        got = await storage.load_session(sid)
        assert got is not None and got.usage == Usage(input_tokens=5, output_tokens=2)
        assert got.provider_state == {"c": 1} and got.version == rec.version + 1
        # One seq in a tuple or a list, or none at all, works the same.
        (p1,) = await storage.append_messages(sid, [Message(role="user", content="q", status=P)])
        await storage.commit_turn(sid, (p1.seq or 0,), rich_turn()[-1:])
        (p2,) = await storage.append_messages(sid, [Message(role="user", content="q", status=P)])
        await storage.commit_turn(sid, [], rich_turn()[-1:])
        left = [m.seq for m in await storage.load_messages(sid, statuses=[P])]
        assert left == [other[0].seq, p2.seq]

    # -- media -----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_media_stored_once(self, storage: ISessionStorage, storage_factory: Any) -> None:
        """The same image in 100 messages of two sessions is one blob; messages come
        back without its bytes (sha256 and size kept) and ``load_blob`` has them.
        Deleting one session keeps the blob; deleting the last one removes it."""
        if not has_blob_store(storage):
            pytest.skip("this storage keeps media inline (no load_blob)")
        image, other_image = media_bytes("once"), media_bytes("other")
        part = ImagePart.from_bytes(image, "image/png")
        assert part.sha256 is not None
        sha = part.sha256
        count0 = await self.blob_count(storage)
        first, second = _record(), _record()
        for rec in (first, second):
            await storage.create_session(rec)
        for i in range(25):
            for rec in (first, second):
                await storage.append_messages(
                    rec.session_id, [Message(role="user", parts=[TextPart(text=f"{i}"), part])]
                )
                await storage.commit_turn(rec.session_id, None, [
                    Message(role="user", parts=[part, TextPart(text=f"again {i}")])])  # fmt: skip
        # Another image beside it in the first session only, and the first image again
        # by its sha256 alone (as a message built from a stored one carries it).
        await storage.append_messages(first.session_id, [Message(role="user", parts=[
            ImagePart.from_bytes(other_image, "image/jpeg"),
            ImagePart(media_type="image/png", sha256=sha, size=len(image)),
        ])])  # fmt: skip
        if count0 is not None:
            assert await self.blob_count(storage) == count0 + 2
        for rec in (first, second):
            loaded = await storage.load_messages(rec.session_id)
            images = [p for m in loaded for p in m.parts if isinstance(p, ImagePart)]
            assert len(images) == (52 if rec is first else 50)
            assert all(p.data is None and p.sha256 is not None and p.size for p in images)
            assert {p.sha256 for p in images if p.media_type == "image/png"} == {sha}
            assert {p.size for p in images if p.sha256 == sha} == {len(image)}
        assert await storage.load_blob(sha) == image
        other_sha = ImagePart.from_bytes(other_image, "image/jpeg").sha256
        assert other_sha is not None and await storage.load_blob(other_sha) == other_image
        assert await storage.load_blob("0" * 64) is None
        if self.shared_backing:  # the blob store is the backing store's, not the instance's
            made = storage_factory()
            reader: ISessionStorage = await made if inspect.isawaitable(made) else made
            try:
                assert await reader.load_blob(sha) == image
            finally:
                await reader.close()
        assert await storage.delete_session(first.session_id) is True
        assert await storage.load_blob(sha) == image  # the second session still has it
        assert await storage.load_blob(other_sha) is None  # only the first one had this
        (m,) = await storage.load_messages(second.session_id, last=1)
        assert m.parts[0] == part.without_data()
        if count0 is not None:
            assert await self.blob_count(storage) == count0 + 1
        assert await storage.delete_session(second.session_id) is True
        assert await storage.load_blob(sha) is None
        if count0 is not None:
            assert await self.blob_count(storage) == count0
        # Stored again, it is there again: nothing stale keeps it from being written.
        again = _record()
        await storage.create_session(again)
        await storage.append_messages(again.session_id, [Message(role="user", parts=[part])])
        assert await storage.load_blob(sha) == image
        assert await storage.delete_session(again.session_id) is True
        assert await storage.load_blob(sha) is None

    @pytest.mark.asyncio
    async def test_media_of_failed_and_pending_steps(self, storage: ISessionStorage) -> None:
        """Media in steps that stay failed, and in steps a commit replaced, is kept as
        long as the session is; the session's deletion removes it."""
        if not has_blob_store(storage):
            pytest.skip("this storage keeps media inline (no load_blob)")
        rec = _record()
        await storage.create_session(rec)
        sid = rec.session_id
        kept, replaced = media_bytes("failed"), media_bytes("replaced")
        (failed,) = await storage.append_messages(sid, [Message(
            role="user", status=P, parts=[ImagePart.from_bytes(kept, "image/png")])])  # fmt: skip
        await storage.update_message_status(sid, [failed.seq or 0], F)
        (pending,) = await storage.append_messages(sid, [Message(
            role="user", status=P, parts=[FilePart.from_bytes(replaced, "text/plain")])])  # fmt: skip
        await storage.commit_turn(sid, pending.seq, [Message(role="user", parts=[
            FilePart.from_bytes(replaced, "text/plain")]), Message(role="assistant",
            content="ok")])  # fmt: skip
        (got,) = await storage.load_messages(sid, statuses=[F])
        part = got.parts[0]
        assert isinstance(part, ImagePart) and part.sha256 is not None
        assert await storage.load_blob(part.sha256) == kept
        sha = FilePart.from_bytes(replaced, "text/plain").sha256
        assert sha is not None and await storage.load_blob(sha) == replaced
        assert await storage.delete_session(sid) is True
        assert await storage.load_blob(part.sha256) is None
        assert await storage.load_blob(sha) is None
