"""validation: size limits and banned patterns, per direction."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from langswarm_runtime.errors import ConfigError, MessageRejected
from langswarm_runtime.middleware.validation import ValidationConfig, ValidationMiddleware
from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.session.middleware import run_incoming, run_outgoing
from langswarm_runtime.session.models import Message

S = SimpleNamespace(session_id="s1", user_id="u1")


def user(text: str) -> Message:
    return Message(role="user", content=text)


def reply(text: str) -> Message:
    return Message(role="assistant", content=text)


async def test_no_options_accepts_everything() -> None:
    msg = user("x" * 100_000)
    assert await run_outgoing([ValidationMiddleware()], S, msg) is msg


async def test_max_chars_rejects_with_a_clear_reason() -> None:
    mw = ValidationMiddleware(max_chars=10)
    assert (await run_outgoing([mw], S, user("0123456789"))).content == "0123456789"
    with pytest.raises(MessageRejected) as info:
        await run_outgoing([mw], S, user("0123456789!"))
    assert str(info.value) == (
        "message rejected: validation: outgoing message has 11 characters, over the limit of 10"
    )
    with pytest.raises(MessageRejected, match="incoming message has 11 characters"):
        await run_incoming([mw], S, reply("0123456789!"))


async def test_banned_patterns_name_the_rule_not_the_text() -> None:
    mw = ValidationMiddleware(banned_patterns=[
        r"\bdrop\s+table\b",
        {"pattern": r"project\s+falcon", "reason": "internal code names are not shared"},
    ])
    with pytest.raises(MessageRejected) as info:
        await run_outgoing([mw], S, user("please DROP  TABLE users"))
    assert "banned pattern #1" in str(info.value) and "users" not in str(info.value)
    with pytest.raises(MessageRejected, match="internal code names are not shared"):
        await run_incoming([mw], S, reply("About Project Falcon..."))
    ok = user("dropped tables are fine")
    assert await run_outgoing([mw], S, ok) is ok


async def test_case_sensitive_pattern() -> None:
    mw = ValidationMiddleware(banned_patterns=[{"pattern": "SECRET", "ignore_case": False}])
    assert (await run_outgoing([mw], S, user("a secret"))).content == "a secret"
    with pytest.raises(MessageRejected):
        await run_outgoing([mw], S, user("a SECRET"))


async def test_rules_per_direction() -> None:
    mw = ValidationMiddleware(
        max_chars=50,
        directions=["outgoing"],
        banned_patterns=["forbidden"],
        incoming={"max_chars": 5, "banned_patterns": ["ai!"]},
    )
    # Top-level rules apply only to outgoing here.
    with pytest.raises(MessageRejected, match="outgoing message has 51"):
        await run_outgoing([mw], S, user("x" * 51))
    with pytest.raises(MessageRejected, match="banned pattern #1"):
        await run_outgoing([mw], S, user("forbidden"))
    assert (await run_incoming([mw], S, reply("fine"))).content == "fine"
    with pytest.raises(MessageRejected, match="incoming message has 6 characters, over the limit of 5"):
        await run_incoming([mw], S, reply("abcdef"))
    with pytest.raises(MessageRejected, match="incoming message rejected: banned pattern #1"):
        await run_incoming([mw], S, reply("AI!"))
    # Outgoing keeps its own limit when incoming overrides.
    mw2 = ValidationMiddleware(max_chars=3, outgoing={"max_chars": 8})
    assert (await run_outgoing([mw2], S, user("12345678"))).content == "12345678"
    with pytest.raises(MessageRejected):
        await run_incoming([mw2], S, reply("1234"))


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid regular expression"):
        ValidationMiddleware(banned_patterns=["(unclosed"])
    with pytest.raises(ConfigError, match="validation.max_chars"):
        ValidationMiddleware(max_chars=0)
    with pytest.raises(ConfigError, match="validation.outgoing.max_len"):
        ValidationMiddleware(outgoing={"max_len": 3})


def test_built_from_yaml_options_through_the_registry() -> None:
    pm = PluginManager(load_entrypoints=False)
    mw = pm.middlewares.create("validation", {"max_chars": 20, "banned_patterns": ["x+y"]})
    assert isinstance(mw, ValidationMiddleware)
    assert isinstance(mw.config, ValidationConfig)
    with pytest.raises(MessageRejected):
        mw.check("xxy", "outgoing")
