"""Text the storage cannot hold is refused at the door; everything else comes back
byte-identical, after a restart, on SQLite, PostgreSQL and Redis.

Arbitrary Unicode (control characters, noncharacters, astral planes, NUL and lone
surrogates included) goes through a Session (echo provider): as a message, plain and
streamed, and as the user id, system prompt and metadata (keys and values, nested) of
the session. What is accepted comes back identical through a new manager on a new
storage object; what is rejected raises ``InvalidText`` naming the character and leaves
nothing written (no session record, no message).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langswarm_runtime import InvalidMessage, InvalidText, SessionManager, SessionNotFound
from langswarm_runtime.session.storage.base import ISessionStorage

#: Characters that matter, drawn often (hypothesis alone rarely hits NUL or a surrogate).
SPECIAL = "\x00\x01\x08\x1b\x7f\x85\r\n\t \u2028\ufeff\ufffe\uffff\U0010ffff\ud800\udc80\udfff🙂é"
#: Any code point, lone surrogates included (hypothesis leaves them out by default).
ANY = st.characters(exclude_categories=[]) | st.sampled_from(SPECIAL)
TEXT = st.text(ANY, max_size=10)

def first_bad(text: str) -> int | None:
    """Where the first character no storage can hold is (the test's own oracle)."""
    for i, c in enumerate(text):
        if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF:
            return i
    return None


def storable(*texts: str) -> bool:
    return all(first_bad(t) is None for t in texts)


def assert_names_the_character(err: InvalidText, text: str, field: str) -> None:
    """The error says what (the character, as U+XXXX) and where (field and index)."""
    index = first_bad(text)
    assert index is not None
    assert (err.field, err.index, err.char) == (field, index, text[index])
    assert f"U+{ord(text[index]):04X}" in str(err) and field in str(err)


async def count_everything(store: ISessionStorage) -> tuple[int, int]:
    """Sessions in this test's own storage, and all their messages."""
    records = await store.list_sessions(limit=100_000)
    messages = 0
    for r in records:
        messages += len(await store.load_messages(r.session_id))
    return len(records), messages


EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@EXAMPLES
@given(text=TEXT, streamed=st.booleans())
def test_message_text_round_trips_or_is_refused(
    make_storage: Callable[..., ISessionStorage], text: str, streamed: bool
) -> None:
    make = make_storage
    async def example() -> None:
        async with SessionManager(storage=make()) as manager:
            session = await manager.create_session(user_id="u", provider="echo")
            sid = session.session_id
            before = await count_everything(manager.storage)
            if not text.strip() or not storable(text):
                with pytest.raises(InvalidMessage) as caught:
                    if streamed:
                        async for _ in session.stream_message(text):
                            pass
                    else:
                        await session.send_message(text)
                if text.strip():
                    assert isinstance(caught.value, InvalidText)
                    assert_names_the_character(caught.value, text, "message")
                assert await count_everything(manager.storage) == before
                assert await session.get_history(include_failed=True) == []
                return
            if streamed:
                chunks = [c async for c in session.stream_message(text)]
                reply = "".join(chunks)
            else:
                reply = (await session.send_message(text)).content
            assert reply == f"echo: {text} [earlier messages: 0]"
        # A restart: a new manager on a new storage object.
        async with SessionManager(storage=make()) as manager:
            again = await manager.require_session(sid, user_id="u")
            history = await again.get_history(include_failed=True)
            assert [(m.role, m.status.value, m.content) for m in history] == [
                ("user", "committed", text),
                ("assistant", "committed", f"echo: {text} [earlier messages: 0]"),
            ]
            assert history[0].content.encode() == text.encode()

    # Each example on its own loop (a storage object runs on the loop that made it).
    asyncio.run(example())


METADATA = st.dictionaries(
    TEXT, TEXT | st.lists(TEXT, max_size=2) | st.dictionaries(TEXT, TEXT, max_size=2),
    max_size=2,
)  # fmt: skip


def metadata_strings(value: Any) -> list[tuple[str, str]]:
    """Every string in ``value`` (keys too), each with the field name an error about it
    gives."""
    out: list[tuple[str, str]] = []

    def walk(v: Any, path: str) -> None:
        if isinstance(v, str):
            out.append((path, v))
        elif isinstance(v, dict):
            for k, item in v.items():
                out.append((f"{path} key {k!r}", k))
                walk(item, f"{path}[{k!r}]")
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, f"{path}[{i}]")

    walk(value, "metadata")
    return out


@EXAMPLES
@given(user_id=TEXT.filter(bool), prompt=st.none() | TEXT, metadata=METADATA)
def test_session_text_round_trips_or_is_refused(
    make_storage: Callable[..., ISessionStorage],
    user_id: str,
    prompt: str | None,
    metadata: dict[str, Any],
) -> None:
    make = make_storage
    fields = [("user_id", user_id), *metadata_strings(metadata)]
    if prompt is not None:
        fields.append(("system_prompt", prompt))
    bad = [(name, text) for name, text in fields if not storable(text)]

    async def example() -> None:
        async with SessionManager(storage=make()) as manager:
            before = await count_everything(manager.storage)
            if bad:
                with pytest.raises(InvalidText) as caught:
                    await manager.create_session(
                        user_id=user_id, provider="echo", system_prompt=prompt,
                        metadata=metadata,
                    )  # fmt: skip
                err = caught.value
                # One of the broken strings, named by its field, its character shown.
                assert (err.field, err.char) in {
                    (name, text[first_bad(text) or 0]) for name, text in bad
                }
                assert err.index == first_bad(dict(bad)[err.field])
                assert f"U+{ord(err.char):04X}" in str(err)
                assert await count_everything(manager.storage) == before
                return
            session = await manager.create_session(
                user_id=user_id, provider="echo", system_prompt=prompt, metadata=metadata
            )
            sid = session.session_id
            await session.send_message("hi")
        async with SessionManager(storage=make()) as manager:
            again = await manager.require_session(sid, user_id=user_id)
            assert again.user_id == user_id
            assert again.system_prompt == prompt
            assert again.metadata == metadata
            listed = await manager.list_sessions(user_id)
            assert sid in [r.session_id for r in listed]
            assert [m.content for m in await again.get_history()] == [
                "hi", "echo: hi [earlier messages: 0]"
            ]  # fmt: skip

    # Each example on its own loop (a storage object runs on the loop that made it).
    asyncio.run(example())


MALFORMED_IDS = ["ses_\udc80", "ses_\x00", "\ud800", "\x00"]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS, ids=["surrogate", "nul", "lone", "only-nul"])
async def test_malformed_ids_are_missing_sessions(
    make_storage: Callable[..., ISessionStorage], bad_id: str
) -> None:
    """A session id or user id no storage can hold names no session: ``get_session`` is
    None, ``require_session`` and ``delete_session`` raise ``SessionNotFound``; never a
    driver error."""
    async with SessionManager(storage=make_storage()) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        await session.send_message("hi")
        assert await manager.get_session(bad_id) is None
        assert await manager.get_session(session.session_id, user_id=bad_id) is None
        with pytest.raises(SessionNotFound):
            await manager.require_session(bad_id)
        with pytest.raises(SessionNotFound):
            await manager.delete_session(bad_id)
        with pytest.raises(SessionNotFound):
            await manager.delete_session(session.session_id, user_id=bad_id)
        assert await manager.list_sessions(bad_id) == []
        # Nothing was harmed.
        again = await manager.require_session(session.session_id, user_id="u")
        assert len(await again.get_history()) == 2


async def test_text_changed_by_middleware_is_checked_again(
    make_storage: Callable[..., ISessionStorage],
) -> None:
    """What the outgoing chain returns is what is stored, so it is validated too."""

    class Corrupting:
        def process_outgoing_message(self, session: Any, message: Any) -> Any:
            return message.model_copy(update={"content": message.content + "\udc80"})

    async with SessionManager(storage=make_storage()) as manager:
        session = await manager.create_session(user_id="u", provider="echo")
        session.add_middleware(Corrupting())
        with pytest.raises(InvalidText) as caught:
            await session.send_message("hello")
        assert_names_the_character(caught.value, "hello\udc80", "message")
        assert await session.get_history(include_failed=True) == []
