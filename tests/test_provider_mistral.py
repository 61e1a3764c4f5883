"""The Mistral adapter through the real ``mistralai`` SDK against the loopback emulator."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from langswarm_runtime import SessionBackend, SessionManager
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
from langswarm_runtime.providers.base import ProviderReply, ProviderRequest
from langswarm_runtime.providers.mistral import STATE_KEY, MistralConfig, MistralProvider
from langswarm_runtime.session.models import Message, MessageStatus
from langswarm_runtime.testing.emulator import ProviderEmulator

KEY = "mistral-test-very-secret-key-0123456789"
HISTORY = [
    Message(role="user", content="first question"),
    Message(role="assistant", content="first answer"),
]
CHAT = "/mistral/v1/chat/completions"
CONVS = "/mistral/v1/conversations"
NATIVE = SessionBackend.NATIVE


@pytest.fixture
async def make(provider_emulator: ProviderEmulator) -> AsyncIterator[Any]:
    made: list[MistralProvider] = []

    def factory(**options: Any) -> MistralProvider:
        options.setdefault("base_url", provider_emulator.url("mistral"))
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 5)
        provider = MistralProvider(
            MistralConfig(model="mistral-test", api_key=SecretStr(KEY), **options)
        )
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        await provider.close()


def _request(
    text: str = "hello there",
    *,
    backend: SessionBackend = SessionBackend.HYBRID,
    history: list[Message] | None = None,
    state: dict[str, Any] | None = None,
    mirror: list[Message] | None = None,
    system_prompt: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> ProviderRequest:
    async def load_history() -> list[Message]:
        return list(mirror or [])

    return ProviderRequest(
        message=Message(role="user", content=text),
        model=None,
        backend=backend,
        system_prompt=system_prompt,
        history=list(history or []),
        state=dict(state or {}),
        load_history=load_history,
        max_tokens=max_tokens,
        temperature=temperature,
    )


async def _streamed(
    provider: MistralProvider, request: ProviderRequest
) -> tuple[str, ProviderReply]:
    deltas: list[str] = []
    final = None
    async for item in provider.stream(request):
        if isinstance(item, ProviderReply):
            assert final is None, "exactly one final reply"
            final = item
        else:
            assert final is None, "deltas come before the final reply"
            deltas.append(item)
    assert final is not None
    return "".join(deltas), final


async def _turn(
    provider: MistralProvider, request: ProviderRequest, streamed: bool
) -> ProviderReply:
    if streamed:
        text, reply = await _streamed(provider, request)
        assert text == reply.content
        return reply
    return await provider.send(request)


# ----------------------------------------------------------------------- hybrid


@pytest.mark.parametrize("streamed", [False, True])
async def test_hybrid_sends_system_and_whole_history(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider_emulator.cached_tokens = 3
    provider = make(temperature=0.3)
    request = _request(history=HISTORY, system_prompt="Be terse.", max_tokens=40)
    reply = await _turn(provider, request, streamed)
    assert reply.content == "echo: hello there [earlier messages: 2]"
    assert reply.state is None
    assert reply.provider_message_id and reply.provider_message_id.startswith("cmpl-")
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.cached_tokens) == (
        8,
        6,
        3,
    )
    [rec] = provider_emulator.requests
    assert rec.path == CHAT
    body = rec.json
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("mistral-test", 40, 0.3)
    assert body["stream"] is streamed
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("system", "Be terse."),
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "hello there"),
    ]
    assert rec.headers["authorization"] == "<redacted>"


async def test_extra_passed_through_and_unknown_extra_rejected(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    await make(extra={"random_seed": 7, "top_p": 0.5}).send(_request())
    body = provider_emulator.requests[0].json
    assert (body["random_seed"], body["top_p"]) == (7, 0.5)
    with pytest.raises(ConfigError, match="not_a_mistral_option"):
        await make(extra={"not_a_mistral_option": 1}).send(_request())


async def test_server_url_version_suffix_dropped(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    await make(base_url=provider_emulator.url("mistral") + "/v1/").send(_request())
    assert provider_emulator.requests[0].path == CHAT


async def test_summary_goes_as_system_message(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    reply = await make().send(
        _request(history=[Message(role="summary", content="we met"), *HISTORY])
    )
    assert reply.content.endswith("[earlier messages: 2]")
    first = provider_emulator.requests[0].json["messages"][0]
    assert first["role"] == "system" and "we met" in first["content"]


# ----------------------------------------------------------------------- native


@pytest.mark.parametrize("streamed", [False, True])
async def test_native_starts_seeded_conversation_then_appends_only_new_message(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider = make(max_tokens=30, temperature=0.1, extra={"random_seed": 3})
    first = await _turn(
        provider,
        _request(backend=NATIVE, mirror=HISTORY, system_prompt="Be terse."),
        streamed,
    )
    assert first.content == "echo: hello there [earlier messages: 2]"
    conv_id = (first.state or {}).get(STATE_KEY)
    assert conv_id and conv_id.startswith("conv_")
    assert first.provider_message_id and first.provider_message_id.startswith("msg_")
    [start] = provider_emulator.requests
    assert start.path == CONVS
    assert start.json["store"] is True
    assert start.json["stream"] is streamed
    assert start.json["instructions"] == "Be terse."
    assert start.json["model"] == "mistral-test"
    assert start.json["completion_args"] == {"max_tokens": 30, "temperature": 0.1, "random_seed": 3}
    assert [(e["role"], e["content"]) for e in start.json["inputs"]] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "hello there"),
    ]

    provider_emulator.clear()
    again = await _turn(
        provider, _request("and now", backend=NATIVE, state=first.state, mirror=HISTORY), streamed
    )
    assert again.content == "echo: and now [earlier messages: 4]"  # the server kept the turn
    assert again.state == {STATE_KEY: conv_id}
    [append] = provider_emulator.requests
    assert append.path == f"{CONVS}/{conv_id}"
    assert append.json["inputs"] == "and now"
    assert "model" not in append.json and "instructions" not in append.json


@pytest.mark.parametrize("streamed", [False, True])
async def test_native_reseeds_after_conversation_lost(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider = make()
    first = await provider.send(_request(backend=NATIVE))
    assert first.state is not None
    provider_emulator.forget_conversations()
    provider_emulator.clear()
    mirror = [Message(role="user", content="hello there"), Message(role="assistant", content="x")]
    request = _request("still there?", backend=NATIVE, state=first.state, mirror=mirror)
    reply = await _turn(provider, request, streamed)
    assert reply.content == "echo: still there? [earlier messages: 2]"
    assert reply.state and reply.state[STATE_KEY] != first.state[STATE_KEY]
    assert [r.path for r in provider_emulator.requests] == [
        f"{CONVS}/{first.state[STATE_KEY]}",  # 404: the conversation is gone
        CONVS,  # started afresh from the mirror
    ]


async def test_native_injected_not_found_on_start_is_not_found(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("not_found")
    with pytest.raises(ProviderNotFound):
        await make().send(_request(backend=NATIVE))


# ----------------------------------------------------------------------- faults


@pytest.mark.parametrize("backend", [SessionBackend.HYBRID, NATIVE])
async def test_429_without_retries_is_rate_limited_with_retry_after(
    make: Any, provider_emulator: ProviderEmulator, backend: SessionBackend
) -> None:
    provider_emulator.inject("429", retry_after=17)
    with pytest.raises(ProviderRateLimited) as info:
        await make().send(_request(backend=backend))
    assert info.value.retry_after == 17
    assert info.value.status_code == 429
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert len(provider_emulator.requests) == 1


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("backend", [SessionBackend.HYBRID, NATIVE])
async def test_429_then_success_with_one_retry(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool, backend: SessionBackend
) -> None:
    provider_emulator.inject("429", retry_after=0.05)
    reply = await _turn(make(max_retries=1), _request(backend=backend), streamed)
    assert reply.content.startswith("echo: hello there")
    assert [r.fault for r in provider_emulator.requests] == ["429", None]


async def test_retry_after_is_capped(
    make: Any, provider_emulator: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: Any) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    provider_emulator.inject("429", retry_after=3600, count=2)
    reply = await make(max_retries=2).send(_request())
    assert reply.content.startswith("echo:")
    assert waits == [60.0, 60.0]


@pytest.mark.parametrize("kind", ["500", "503", "529"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_server_errors_are_unavailable(
    kind: str, streamed: bool, make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject(kind)
    with pytest.raises(ProviderUnavailable) as info:
        await _turn(make(), _request(), streamed)
    assert info.value.status_code == int(kind)


@pytest.mark.parametrize("streamed", [False, True])
async def test_slow_answer_with_small_timeout(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider_emulator.inject("slow", delay=1.0)
    with pytest.raises(ProviderTimeout):
        await _turn(make(timeout=0.2), _request(), streamed)


async def test_dropped_connection(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("drop")
    with pytest.raises(ProviderUnavailable):
        await make().send(_request())
    provider_emulator.inject("drop")
    reply = await make(max_retries=1).send(_request())  # retried
    assert reply.content.startswith("echo:")


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("backend", [SessionBackend.HYBRID, NATIVE])
async def test_malformed_body(
    make: Any, provider_emulator: ProviderEmulator, backend: SessionBackend, streamed: bool
) -> None:
    provider_emulator.inject("malformed")
    with pytest.raises(ProviderBadResponse) as info:
        await _turn(make(), _request(backend=backend), streamed)
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("backend", [SessionBackend.HYBRID, NATIVE])
async def test_stream_break_mid_way(
    make: Any, provider_emulator: ProviderEmulator, backend: SessionBackend
) -> None:
    provider_emulator.inject("stream_break")
    received: list[str] = []
    with pytest.raises(ProviderUnavailable):
        async for item in make(max_retries=2).stream(_request(backend=backend)):
            assert not isinstance(item, ProviderReply)
            received.append(item)
    assert received, "some deltas arrived before the break"
    assert len(provider_emulator.requests) == 1  # a stream that began is never replayed


async def test_error_message_never_shows_the_key(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    from langswarm_runtime.testing.emulator import server

    # A server that echoes the key back, as some gateways do in their error text.
    shape = server._ERROR_SHAPES["mistral"]
    server._ERROR_SHAPES["mistral"] = lambda status, message, code: {
        "object": "error",
        "message": f"Unauthorized key {KEY}",
    }
    try:
        for kind in ("500", "429", "not_found"):
            provider_emulator.inject(kind)
            with pytest.raises(ProviderError) as info:
                await make().send(_request())
            assert KEY not in str(info.value)
            assert KEY not in repr(info.value.args)
            assert "***" in str(info.value)
    finally:
        server._ERROR_SHAPES["mistral"] = shape


async def test_fault_header_via_http_headers(make: Any) -> None:
    provider = make(extra={"http_headers": {"x-emulator-fault": "503"}})
    with pytest.raises(ProviderUnavailable):
        await provider.send(_request())


@pytest.mark.parametrize("backend", [SessionBackend.HYBRID, NATIVE])
async def test_missing_key_is_auth_error(
    monkeypatch: pytest.MonkeyPatch,
    provider_emulator: ProviderEmulator,
    backend: SessionBackend,
) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    provider = MistralProvider(MistralConfig(base_url=provider_emulator.url("mistral")))
    try:
        with pytest.raises(ProviderAuthError) as info:
            await provider.send(_request(backend=backend))
    finally:
        await provider.close()
    assert info.value.status_code == 401
    assert "authorization" not in provider_emulator.requests[0].headers


async def test_key_from_environment(
    monkeypatch: pytest.MonkeyPatch, provider_emulator: ProviderEmulator
) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", "from-env-1234567890")
    provider = MistralProvider(MistralConfig(base_url=provider_emulator.url("mistral")))
    try:
        reply = await provider.send(_request())
    finally:
        await provider.close()
    assert reply.content.startswith("echo:")
    rec = provider_emulator.requests[0]
    assert rec.json["model"] == "mistral-large-latest"
    assert rec.headers["authorization"] == "<redacted>"


def test_import_does_not_import_sdk() -> None:
    code = (
        "import sys, langswarm_runtime.providers.mistral as m; "
        "assert 'mistralai' not in sys.modules, 'SDK imported'; "
        "m.MistralProvider(m.MistralConfig(model='x')); "
        "assert 'mistralai' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_registered_as_plugin() -> None:
    from importlib.metadata import entry_points

    from langswarm_runtime.plugins import DEFAULT_PLUGINS

    eps = {ep.name: ep.value for ep in entry_points(group="langswarm_runtime")}
    assert eps.get("mistral") == "langswarm_runtime.providers.mistral"
    assert "langswarm_runtime.providers.mistral" in DEFAULT_PLUGINS
    assert MistralProvider.supports_native is True


# ----------------------------------------------------------------------- sessions


CONFIG = """
version: 1
storage: {{type: sqlite, path: "{db}"}}
defaults: {{provider: mi, backend: {backend}}}
providers:
  mi:
    type: mistral
    model: mistral-test
    api_key: "{key}"
    base_url: "{url}"
    max_retries: 0
    timeout: 5
"""


def _swarm(tmp_path: Path, emu: ProviderEmulator, backend: str) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        CONFIG.format(db=tmp_path / "app.db", key=KEY, url=emu.url("mistral"), backend=backend),
        encoding="utf-8",
    )
    return path


async def test_auto_backend_is_native(tmp_path: Path, provider_emulator: ProviderEmulator) -> None:
    async with SessionManager.from_config(_swarm(tmp_path, provider_emulator, "auto")) as manager:
        session = await manager.create_session(user_id="u", provider="mi")
        assert session.backend is NATIVE


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("backend", ["hybrid", "native"])
async def test_session_survives_restart(
    tmp_path: Path, provider_emulator: ProviderEmulator, backend: str, streamed: bool
) -> None:
    swarm = _swarm(tmp_path, provider_emulator, backend)
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(user_id="u", provider="mi", system_prompt="Hi.")
        if streamed:
            chunks = [c async for c in session.stream_message("one")]
            assert "".join(chunks) == "echo: one [earlier messages: 0]"
        else:
            reply = await session.send_message("one")
            assert reply.content == "echo: one [earlier messages: 0]"
        sid = session.session_id
    provider_emulator.clear()
    async with SessionManager.from_config(swarm) as manager:
        again = await manager.get_session(sid, user_id="u")
        assert again is not None
        reply = await again.send_message("two")
        assert reply.content == "echo: two [earlier messages: 2]"
    [rec] = provider_emulator.requests
    if backend == "native":  # only the new message went: the server held the rest
        assert rec.path.startswith(f"{CONVS}/conv_")
        assert rec.json["inputs"] == "two"
    else:
        assert rec.path == CHAT
        assert [m["role"] for m in rec.json["messages"]] == ["system", "user", "assistant", "user"]


async def test_native_session_recovers_lost_conversation_after_restart(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    swarm = _swarm(tmp_path, provider_emulator, "native")
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(user_id="u", provider="mi")
        await session.send_message("one")
        await session.send_message("two")
        sid = session.session_id
    provider_emulator.forget_conversations()  # the provider lost it while we were down
    async with SessionManager.from_config(swarm) as manager:
        again = await manager.get_session(sid, user_id="u")
        assert again is not None
        reply = await again.send_message("three")  # no error reaches the caller
        assert reply.content == "echo: three [earlier messages: 4]"  # re-seeded from the mirror
        assert [m.content for m in await again.get_history() if m.role == "user"] == [
            "one",
            "two",
            "three",
        ]
        follow = await again.send_message("four")  # the new conversation id was recorded
        assert follow.content == "echo: four [earlier messages: 6]"
    assert provider_emulator.requests[-1].json["inputs"] == "four"


@pytest.mark.parametrize("backend", ["hybrid", "native"])
async def test_provider_fault_leaves_failed_turn_and_clean_history(
    tmp_path: Path, provider_emulator: ProviderEmulator, backend: str
) -> None:
    async with SessionManager.from_config(_swarm(tmp_path, provider_emulator, backend)) as manager:
        session = await manager.create_session(user_id="u", provider="mi")
        await session.send_message("kept")
        provider_emulator.inject("503")
        with pytest.raises(ProviderUnavailable):
            await session.send_message("lost")
        provider_emulator.inject("stream_break")
        with pytest.raises(ProviderUnavailable):
            async for _ in session.stream_message("broken"):
                pass
        reply = await session.send_message("after")
        history = await session.get_history()
        assert [m.content for m in history if m.role == "user"] == ["kept", "after"]
        assert len(history) == 4
        everything = await session.get_history(include_failed=True)
        failed = [m.content for m in everything if m.status == MessageStatus.FAILED]
        assert failed == ["lost", "broken"]
    if backend == "hybrid":  # failed turns never enter the context we send
        assert reply.content == "echo: after [earlier messages: 2]"
    else:
        # The emulator, like a real server, may keep a turn whose stream broke on the
        # way back; what matters here is that our history stayed clean.
        assert reply.content.startswith("echo: after")
