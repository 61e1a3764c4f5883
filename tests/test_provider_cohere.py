"""The Cohere adapter through the real ``cohere`` SDK against the loopback emulator."""

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
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.providers.base import ProviderReply, ProviderRequest
from langswarm_runtime.providers.cohere import CohereConfig, CohereProvider
from langswarm_runtime.session.models import Message, MessageStatus
from langswarm_runtime.testing.emulator import ProviderEmulator

KEY = "co-test-very-secret-key-0123456789"
HISTORY = [
    Message(role="user", content="first question"),
    Message(role="assistant", content="first answer"),
]
CHAT = "/cohere/v2/chat"


@pytest.fixture
async def make(provider_emulator: ProviderEmulator) -> AsyncIterator[Any]:
    made: list[CohereProvider] = []

    def factory(**options: Any) -> CohereProvider:
        options.setdefault("base_url", provider_emulator.url("cohere"))
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 5)
        provider = CohereProvider(
            CohereConfig(model="command-test", api_key=SecretStr(KEY), **options)
        )
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        await provider.close()


def _request(
    text: str = "hello there",
    *,
    history: list[Message] | None = None,
    system_prompt: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> ProviderRequest:
    return ProviderRequest(
        message=Message(role="user", content=text),
        model=None,
        backend=SessionBackend.HYBRID,
        system_prompt=system_prompt,
        history=list(history or []),
        max_tokens=max_tokens,
        temperature=temperature,
    )


async def _streamed(
    provider: CohereProvider, request: ProviderRequest
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


# ----------------------------------------------------------------------- turns


async def test_hybrid_sends_system_and_whole_history(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider = make(temperature=0.3)
    reply = await provider.send(_request(history=HISTORY, system_prompt="Be terse.", max_tokens=40))
    assert reply.content == "echo: hello there [earlier messages: 2]"
    assert reply.state is None
    assert reply.provider_message_id
    # words: system 2 + history 2 + 2 + message 2; floats on the wire become ints
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (8, 6)
    assert isinstance(reply.usage.input_tokens, int)
    [rec] = provider_emulator.requests
    assert rec.path == CHAT
    body = rec.json
    assert body["model"] == "command-test"
    assert body["max_tokens"] == 40
    assert body["temperature"] == 0.3
    assert body["stream"] is False
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "hello there"},
    ]
    assert rec.headers["authorization"] == "<redacted>"


async def test_stream_yields_deltas_then_one_final_reply(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.cached_tokens = 2
    text, final = await _streamed(make(), _request(history=HISTORY))
    assert text == final.content == "echo: hello there [earlier messages: 2]"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cached_tokens) == (
        6,
        6,
        2,
    )
    assert final.provider_message_id
    assert provider_emulator.requests[0].json["stream"] is True


async def test_cached_tokens_extra_and_request_options(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.cached_tokens = 3
    provider = make(max_tokens=77, extra={"seed": 7})
    reply = await provider.send(_request(temperature=0.9, system_prompt="one two three"))
    assert reply.usage.cached_tokens == 3
    body = provider_emulator.requests[0].json
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (77, 0.9, 7)


async def test_summary_goes_as_system_message(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    reply = await make().send(
        _request(history=[Message(role="summary", content="we met"), *HISTORY])
    )
    assert reply.content.endswith("[earlier messages: 2]")  # the note is not a chat turn
    first = provider_emulator.requests[0].json["messages"][0]
    assert first["role"] == "system" and "we met" in first["content"]


async def test_unknown_extra_option_is_config_error(make: Any) -> None:
    with pytest.raises(ConfigError, match="not_a_cohere_option"):
        await make(extra={"not_a_cohere_option": 1}).send(_request())


async def test_base_url_version_suffix_dropped(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    await make(base_url=provider_emulator.url("cohere") + "/v2/").send(_request())
    assert provider_emulator.requests[0].path == CHAT


# ----------------------------------------------------------------------- faults


async def test_429_without_retries_is_rate_limited_with_retry_after(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("429", retry_after=17)
    with pytest.raises(ProviderRateLimited) as info:
        await make().send(_request())
    assert info.value.retry_after == 17
    assert info.value.status_code == 429
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert len(provider_emulator.requests) == 1


@pytest.mark.parametrize("streamed", [False, True])
async def test_429_then_success_with_one_retry(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider_emulator.inject("429", retry_after=0.05)
    provider = make(max_retries=1)
    if streamed:
        _, reply = await _streamed(provider, _request())
    else:
        reply = await provider.send(_request())
    assert reply.content.startswith("echo: hello there")
    assert [r.fault for r in provider_emulator.requests] == ["429", None]


@pytest.mark.parametrize("kind", ["500", "503", "529"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_server_errors_are_unavailable(
    kind: str, streamed: bool, make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject(kind)
    with pytest.raises(ProviderUnavailable) as info:
        if streamed:
            await _streamed(make(), _request())
        else:
            await make().send(_request())
    assert info.value.status_code == int(kind)


async def test_server_error_retried_then_success(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("529", retry_after=0)
    reply = await make(max_retries=2).send(_request())
    assert reply.content.startswith("echo:")
    assert [r.fault for r in provider_emulator.requests] == ["529", None]


@pytest.mark.parametrize("streamed", [False, True])
async def test_slow_answer_with_small_timeout(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider_emulator.inject("slow", delay=1.0)
    with pytest.raises(ProviderTimeout):
        if streamed:
            await _streamed(make(timeout=0.2), _request())
        else:
            await make(timeout=0.2).send(_request())


async def test_dropped_connection(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("drop")
    with pytest.raises(ProviderUnavailable):
        await make().send(_request())


async def test_dropped_connection_retried(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("drop")
    reply = await make(max_retries=1).send(_request())
    assert reply.content.startswith("echo:")
    assert [r.fault for r in provider_emulator.requests] == ["drop", None]


@pytest.mark.parametrize("streamed", [False, True])
async def test_malformed_body(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider_emulator.inject("malformed")
    with pytest.raises(ProviderBadResponse) as info:
        if streamed:
            await _streamed(make(), _request())
        else:
            await make().send(_request())
    assert info.value.__cause__ is None and info.value.__context__ is None


async def test_stream_break_mid_way(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("stream_break")
    received: list[str] = []
    with pytest.raises(ProviderUnavailable):
        async for item in make(max_retries=2).stream(_request()):
            assert not isinstance(item, ProviderReply)
            received.append(item)
    assert received, "some deltas arrived before the break"
    assert len(provider_emulator.requests) == 1  # a stream that began is never replayed


async def test_fault_header_via_request_options(make: Any) -> None:
    provider = make(extra={"request_options": {"additional_headers": {"x-emulator-fault": "503"}}})
    with pytest.raises(ProviderUnavailable):
        await provider.send(_request())


async def test_error_message_never_shows_the_key(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    from langswarm_runtime.testing.emulator import server

    # A server that echoes the key back, as some gateways do in their error text.
    shape = server._ERROR_SHAPES["cohere"]
    server._ERROR_SHAPES["cohere"] = lambda status, message, code: {
        "message": f"invalid api token {KEY}"
    }
    try:
        for kind in ("500", "429"):
            provider_emulator.inject(kind)
            with pytest.raises(ProviderError) as info:
                await make().send(_request())
            assert KEY not in str(info.value)
            assert KEY not in repr(info.value.args)
            assert "***" in str(info.value)
    finally:
        server._ERROR_SHAPES["cohere"] = shape


async def test_missing_key_is_auth_error(
    monkeypatch: pytest.MonkeyPatch, provider_emulator: ProviderEmulator
) -> None:
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    provider = CohereProvider(CohereConfig(model="m", base_url=provider_emulator.url("cohere")))
    with pytest.raises(ProviderAuthError, match="CO_API_KEY"):
        await provider.send(_request())
    assert provider_emulator.requests == []


async def test_key_from_environment(
    monkeypatch: pytest.MonkeyPatch, provider_emulator: ProviderEmulator
) -> None:
    monkeypatch.setenv("CO_API_KEY", "co-from-env-1234567890")
    provider = CohereProvider(CohereConfig(base_url=provider_emulator.url("cohere")))
    try:
        reply = await provider.send(_request())
    finally:
        await provider.close()
    assert reply.content.startswith("echo:")
    assert provider_emulator.requests[0].json["model"] == "command-a-03-2025"


def test_import_does_not_import_sdk() -> None:
    code = (
        "import sys, langswarm_runtime.providers.cohere as m; "
        "assert 'cohere' not in sys.modules, 'SDK imported'; "
        "m.CohereProvider(m.CohereConfig(model='x')); "
        "assert 'cohere' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_registered_as_plugin() -> None:
    from importlib.metadata import entry_points

    from langswarm_runtime.plugins import DEFAULT_PLUGINS

    eps = {ep.name: ep.value for ep in entry_points(group="langswarm_runtime")}
    assert eps.get("cohere") == "langswarm_runtime.providers.cohere"
    assert "langswarm_runtime.providers.cohere" in DEFAULT_PLUGINS
    assert CohereProvider.supports_native is False


# ----------------------------------------------------------------------- sessions


CONFIG = """
version: 1
storage: {{type: sqlite, path: "{db}"}}
defaults: {{provider: co}}
providers:
  co:
    type: cohere
    model: command-test
    api_key: "{key}"
    base_url: "{url}"
    max_retries: 0
    timeout: 5
"""


@pytest.fixture
def swarm(tmp_path: Path, provider_emulator: ProviderEmulator) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        CONFIG.format(db=tmp_path / "app.db", key=KEY, url=provider_emulator.url("cohere")),
        encoding="utf-8",
    )
    return path


async def test_native_backend_is_config_error_and_auto_is_hybrid(swarm: Path) -> None:
    async with SessionManager.from_config(swarm) as manager:
        with pytest.raises(ConfigError, match="no native mode") as info:
            await manager.create_session(user_id="u", provider="co", backend=SessionBackend.NATIVE)
        assert "mistral" in str(info.value)  # names the providers that have it
        session = await manager.create_session(
            user_id="u", provider="co", backend=SessionBackend.AUTO
        )
        assert session.backend is SessionBackend.HYBRID


@pytest.mark.parametrize("streamed", [False, True])
async def test_session_survives_restart(
    swarm: Path, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(user_id="u", provider="co", system_prompt="Hi.")
        if streamed:
            chunks = [c async for c in session.stream_message("one")]
            assert "".join(chunks) == "echo: one [earlier messages: 0]"
        else:
            reply = await session.send_message("one")
            assert reply.content == "echo: one [earlier messages: 0]"
            assert reply.usage is not None and reply.usage.output_tokens == 5
        sid = session.session_id
    async with SessionManager.from_config(swarm) as manager:
        again = await manager.get_session(sid, user_id="u")
        assert again is not None
        reply = await again.send_message("two")
        assert reply.content == "echo: two [earlier messages: 2]"
    body = provider_emulator.requests[-1].json
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]


async def test_provider_fault_leaves_failed_turn_and_clean_history(
    swarm: Path, provider_emulator: ProviderEmulator
) -> None:
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(user_id="u", provider="co")
        await session.send_message("kept")
        provider_emulator.inject("503")
        with pytest.raises(ProviderUnavailable):
            await session.send_message("lost")
        provider_emulator.inject("stream_break")
        with pytest.raises(ProviderUnavailable):
            async for _ in session.stream_message("broken"):
                pass
        reply = await session.send_message("after")
        assert reply.content == "echo: after [earlier messages: 2]"  # failed turns not sent
        history = await session.get_history()
        assert [m.content for m in history if m.role == "user"] == ["kept", "after"]
        everything = await session.get_history(include_failed=True)
        failed = [m.content for m in everything if m.status == MessageStatus.FAILED]
        assert failed == ["lost", "broken"]
        assert all(m.role == "user" for m in everything if m.status == MessageStatus.FAILED)
