"""The keyword middleware on its own: blocking, tagging, whole words, directions."""

from __future__ import annotations

import pytest
from langswarm_middleware_keywords import KeywordConfig, KeywordMiddleware

from langswarm_runtime.errors import ConfigError, MessageRejected
from langswarm_runtime.session.middleware import run_incoming, run_outgoing
from langswarm_runtime.session.models import Message


def user(text: str) -> Message:
    return Message(role="user", content=text)


async def test_blocks_whole_words_case_insensitively() -> None:
    mw = KeywordMiddleware(block=["secret", "project falcon"])
    with pytest.raises(MessageRejected) as info:
        await run_outgoing([mw], None, user("This is SECRET."))
    assert "blocked keyword 'secret'" in str(info.value)
    assert info.value.middleware == "keywords"
    with pytest.raises(MessageRejected, match="'project falcon'"):
        await run_outgoing([mw], None, user("about Project\n  Falcon today"))
    # Whole words only: "secretary" and "secrets" are not "secret".
    for fine in ("ask the secretary", "no secrets here", "falcon project"):
        msg = user(fine)
        assert await run_outgoing([mw], None, msg) is msg


async def test_tags_go_to_metadata() -> None:
    mw = KeywordMiddleware(tag={"refund": "billing", "Invoice": "billing", "outage": "incident"})
    out = await run_outgoing([mw], None, user("Refund my invoice after the outage"))
    assert out.metadata["tags"] == ["billing", "incident"]
    assert out.content == "Refund my invoice after the outage"
    untouched = user("hello")
    assert await run_outgoing([mw], None, untouched) is untouched


async def test_existing_tags_are_kept() -> None:
    mw = KeywordMiddleware(tag={"refund": "billing"})
    msg = Message(role="user", content="refund", metadata={"tags": ["vip"]})
    out = await run_outgoing([mw], None, msg)
    assert out.metadata["tags"] == ["billing", "vip"]
    assert msg.metadata["tags"] == ["vip"]  # the input is not mutated


async def test_directions() -> None:
    mw = KeywordMiddleware(block=["forbidden"], directions=["incoming"])
    msg = user("forbidden")
    assert await run_outgoing([mw], None, msg) is msg
    with pytest.raises(MessageRejected, match="incoming message"):
        await run_incoming([mw], None, Message(role="assistant", content="Forbidden!"))


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="keywords.blok"):
        KeywordMiddleware(blok=["x"])
    with pytest.raises(ConfigError, match="must not be empty"):
        KeywordMiddleware(block=[" "])
    assert KeywordMiddleware(KeywordConfig(block=["x"])).config.block == ["x"]
