"""Shared adapter helpers: status mapping, Retry-After, retries, URLs, usage, scrubbing."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest

from langswarm_runtime.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.providers import _common
from langswarm_runtime.providers._common import (
    RETRY_AFTER_CAP,
    error_for_status,
    history_turns,
    import_sdk,
    make_usage,
    parse_retry_after,
    retry_delay,
    scrub,
    with_retries,
    with_version_suffix,
    without_version_suffix,
)
from langswarm_runtime.session.models import Message


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ProviderBadResponse),
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (404, ProviderNotFound),
        (408, ProviderTimeout),
        (422, ProviderBadResponse),
        (429, ProviderRateLimited),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (529, ProviderUnavailable),
        (None, ProviderUnavailable),
    ],
)
def test_error_for_status(status: int | None, kind: type[ProviderError]) -> None:
    err = error_for_status(status, "boom", provider="p", retry_after=3)
    assert type(err) is kind
    assert err.provider == "p"
    assert str(err).startswith("p: ")
    if status is not None:
        assert f"HTTP {status}" in str(err)
        assert err.status_code == status
    if kind is ProviderRateLimited:
        assert err.retry_after == 3  # type: ignore[attr-defined]


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "3600"}) == 3600.0  # reported uncapped
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after({"retry-after": when}) or 0) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-5"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None


def test_retry_delay_caps_and_backs_off() -> None:
    assert retry_delay(3600, 0) == RETRY_AFTER_CAP == 60.0
    assert retry_delay(2.5, 3) == 2.5
    assert [retry_delay(None, n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(_common.asyncio, "sleep", fake_sleep)
    return slept


class _Boom(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after


def _classify(exc: BaseException) -> ProviderError | None:
    if isinstance(exc, _Boom):
        return error_for_status(exc.status, "x", provider="p", retry_after=exc.retry_after)
    return None


async def test_with_retries_retries_then_succeeds(sleeps: list[float]) -> None:
    outcomes: list[Any] = [_Boom(429, retry_after=300), _Boom(503), "ok"]

    async def call() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return str(item)

    assert await with_retries(call, max_retries=2, classify=_classify) == "ok"
    assert sleeps == [60.0, 1.0]  # Retry-After capped at 60 s, then backoff for attempt 1


async def test_with_retries_gives_up_with_typed_unchained_error(sleeps: list[float]) -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise _Boom(500)

    with pytest.raises(ProviderUnavailable) as info:
        await with_retries(call, max_retries=2, classify=_classify)
    assert calls == 3
    assert info.value.__context__ is None and info.value.__cause__ is None


async def test_with_retries_does_not_retry_client_errors_or_foreign_ones(
    sleeps: list[float],
) -> None:
    async def bad() -> str:
        raise _Boom(400)

    with pytest.raises(ProviderBadResponse):
        await with_retries(bad, max_retries=3, classify=_classify)

    async def bug() -> str:
        raise KeyError("a bug, not a provider failure")

    with pytest.raises(KeyError):
        await with_retries(bug, max_retries=3, classify=_classify)
    assert sleeps == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:1", "http://h:1/v1"),
        ("http://h:1/", "http://h:1/v1"),
        ("http://h:1/openai", "http://h:1/openai/v1"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("http://h/v1beta", "http://h/v1beta"),
        (None, None),
        ("", None),
    ],
)
def test_with_version_suffix(given: str | None, expected: str | None) -> None:
    assert with_version_suffix(given) == expected


def test_without_version_suffix() -> None:
    assert without_version_suffix("http://h:1/mistral/v1/") == "http://h:1/mistral"
    assert without_version_suffix("http://h:1") == "http://h:1"
    assert without_version_suffix(None) is None


def test_scrub_removes_given_and_keylike_secrets() -> None:
    text = scrub(
        "bad key sk-live-abcdefgh123456, header Bearer tok.en-12345678, also hunter2-pw",
        "hunter2-pw",
    )
    assert "abcdefgh123456" not in text
    assert "tok.en-12345678" not in text
    assert "hunter2-pw" not in text
    assert text.count("***") == 3
    assert scrub("nothing secret here") == "nothing secret here"


def test_make_usage_coerces_floats_and_none() -> None:
    usage = make_usage(12.0, None, "3")
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (12, 0, 3)
    assert make_usage("garbage").input_tokens == 0


def test_history_turns_maps_summary() -> None:
    turns = history_turns(
        [
            Message(role="summary", content="we met"),
            Message(role="user", content="hi"),
            Message(role="assistant", content="hello"),
        ]
    )
    assert turns[0][0] == "system" and "we met" in turns[0][1]
    assert turns[1:] == [("user", "hi"), ("assistant", "hello")]


def test_import_sdk_missing_gives_install_hint() -> None:
    with pytest.raises(ConfigError, match=r"pip install 'langswarm-runtime\[nosuch\]'"):
        import_sdk("definitely_not_installed_sdk_xyz", "nosuch")
    assert import_sdk("json", "x").__name__ == "json"


# ---------------------------------------------------------------------- stream order

_WIRE = {"start": _common.Phase.OPEN, "stop": _common.Phase.END}


def _feed(order: _common.StreamOrder, events: list[str]) -> None:
    for kind in events:
        if kind == "trailer":
            order.see(kind, _common.Phase.TRAILER)
        else:
            order.see(kind)
    order.close()


@pytest.mark.parametrize(
    "events",
    [
        ["start", "delta", "delta", "stop"],
        ["start", "stop"],
        ["start", "other", "delta", "stop", "trailer"],
    ],
)
def test_stream_order_accepts_the_wire_order(events: list[str]) -> None:
    _feed(_common.StreamOrder("p", _WIRE), events)


@pytest.mark.parametrize(
    ("events", "why"),
    [
        (["delta", "start", "stop"], "'delta' out of sequence: before the opening event"),
        (["start", "start", "stop"], "'start' out of sequence: a second opening event"),
        (["start", "delta", "start", "stop"], "'start' out of sequence: after content"),
        (["start", "stop", "delta"], "'delta' out of sequence: after the end of the reply"),
        (["start", "stop", "stop"], "'stop' out of sequence: after the end of the reply"),
        (["start", "trailer", "stop"], "'trailer' out of sequence: before the end"),
        (["start", "stop", "trailer", "trailer"], "'trailer' out of sequence: a second trailer"),
        (["start", "delta"], "stream ended before its terminal event (stop)"),
        ([], "stream ended before its terminal event (stop)"),
    ],
)
def test_stream_order_refuses_events_out_of_sequence(events: list[str], why: str) -> None:
    with pytest.raises(ProviderBadResponse) as info:
        _feed(_common.StreamOrder("p", _WIRE), events)
    assert why in str(info.value)
    assert info.value.provider == "p"


def test_stream_order_without_an_opening_event() -> None:
    order = _common.StreamOrder("p", end="a finishing chunk")
    order.see("chunk")  # content first is fine on a wire with no opening event
    order.see("last", _common.Phase.END)
    order.close()
    with pytest.raises(ProviderBadResponse, match="ended before its terminal event"):
        _common.StreamOrder("p", end="a finishing chunk").close()


def test_stream_order_refuses_an_unparsed_event() -> None:
    with pytest.raises(ProviderBadResponse, match="could not be parsed"):
        _common.StreamOrder("p", _WIRE).see(None)


class _Choice:
    def __init__(self, index: int, finish_reason: str | None) -> None:
        self.index, self.finish_reason = index, finish_reason


class _Chunk:
    def __init__(self, choices: list[_Choice], usage: object = None) -> None:
        self.choices, self.usage = choices, usage


@pytest.mark.parametrize(
    ("chunk", "phase"),
    [
        (_Chunk([_Choice(0, None)]), _common.Phase.BODY),
        (_Chunk([_Choice(0, "stop")]), _common.Phase.END),
        (_Chunk([_Choice(0, "stop")], usage={"prompt_tokens": 1}), _common.Phase.END),
        (_Chunk([_Choice(1, "stop")]), _common.Phase.BODY),  # another choice finishing
        (_Chunk([], usage={"prompt_tokens": 1}), _common.Phase.TRAILER),
        (_Chunk([]), _common.Phase.BODY),  # Azure's leading prompt-filter chunk
    ],
)
def test_chat_chunk_phase(chunk: _Chunk, phase: _common.Phase) -> None:
    assert _common.chat_chunk_phase(chunk)[1] is phase
