"""The OpenAI adapter through the real ``openai`` SDK against the loopback emulator."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from langswarm_runtime.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.providers.base import ProviderReply, ProviderRequest
from langswarm_runtime.providers.openai import STATE_KEY, OpenAIConfig, OpenAIProvider
from langswarm_runtime.session.models import Message, SessionBackend
from langswarm_runtime.testing.emulator import ProviderEmulator

KEY = "sk-test-very-secret-key-0123456789"
HISTORY = [
    Message(role="user", content="first question"),
    Message(role="assistant", content="first answer"),
]


@pytest.fixture
async def make(provider_emulator: ProviderEmulator) -> AsyncIterator[Any]:
    made: list[OpenAIProvider] = []

    def factory(**options: Any) -> OpenAIProvider:
        options.setdefault("base_url", provider_emulator.url("openai"))
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 5)
        provider = OpenAIProvider(OpenAIConfig(model="gpt-test", api_key=SecretStr(KEY), **options))
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
    )


async def _streamed(
    provider: OpenAIProvider, request: ProviderRequest
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


# ----------------------------------------------------------------------- hybrid


async def test_hybrid_responses_sends_whole_input_with_store_false(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider = make()
    reply = await provider.send(_request(history=HISTORY, system_prompt="Be terse.", max_tokens=50))
    assert reply.content == "echo: hello there [earlier messages: 2]"
    assert reply.state is None
    assert reply.provider_message_id and reply.provider_message_id.startswith("resp_")
    # input words: system (2) + history (2 + 2) + message (2)
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (8, 6)
    [rec] = provider_emulator.requests
    assert rec.path == "/openai/v1/responses"
    body = rec.json
    assert body["store"] is False
    assert body["model"] == "gpt-test"
    assert body["max_output_tokens"] == 50
    assert "conversation" not in body
    assert body["input"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "hello there"},
    ]
    assert rec.headers["authorization"] == "<redacted>"


async def test_hybrid_stream(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider = make()
    text, final = await _streamed(provider, _request(history=HISTORY))
    assert text == final.content == "echo: hello there [earlier messages: 2]"
    assert final.usage.output_tokens == 6
    assert final.usage.input_tokens == 6
    assert provider_emulator.requests[0].json["stream"] is True
    assert provider_emulator.requests[0].json["store"] is False


async def test_cached_tokens_and_options_mapped(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.cached_tokens = 3
    provider = make(temperature=0.2, max_tokens=77, extra={"top_p": 0.5}, system_role="developer")
    reply = await provider.send(_request(system_prompt="sys prompt here"))
    assert reply.usage.cached_tokens == 3
    body = provider_emulator.requests[0].json
    assert (body["temperature"], body["max_output_tokens"], body["top_p"]) == (0.2, 77, 0.5)
    assert body["input"][0] == {"role": "developer", "content": "sys prompt here"}


async def test_summary_role_goes_as_system_note(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider = make()
    history = [Message(role="summary", content="we talked"), *HISTORY]
    reply = await provider.send(_request(history=history))
    assert reply.content.endswith("[earlier messages: 2]")  # the note is not a chat turn
    first = provider_emulator.requests[0].json["input"][0]
    assert first["role"] == "system" and "we talked" in first["content"]


async def test_chat_completions_api(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.cached_tokens = 1
    provider = make(api="chat_completions", max_tokens=20)
    reply = await provider.send(_request(history=HISTORY, system_prompt="Be terse."))
    assert reply.content == "echo: hello there [earlier messages: 2]"
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.cached_tokens) == (
        8,
        6,
        1,
    )
    rec = provider_emulator.requests[0]
    assert rec.path == "/openai/v1/chat/completions"
    assert rec.json["messages"][0] == {"role": "system", "content": "Be terse."}
    assert rec.json["max_tokens"] == 20

    text, final = await _streamed(provider, _request(history=HISTORY))
    assert text == final.content == "echo: hello there [earlier messages: 2]"
    assert final.usage.output_tokens == 6
    streamed = provider_emulator.requests[-1].json
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}


# ----------------------------------------------------------------------- native


async def test_native_creates_seeded_conversation_then_sends_only_new_message(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider = make()
    reply = await provider.send(
        _request(backend=SessionBackend.NATIVE, mirror=HISTORY, system_prompt="Be terse.")
    )
    assert reply.content == "echo: hello there [earlier messages: 2]"
    conv_id = reply.state[STATE_KEY] if reply.state else None
    assert conv_id and conv_id.startswith("conv_")
    create, turn = provider_emulator.requests
    assert create.path == "/openai/v1/conversations"
    assert create.json["items"][0] == {"role": "system", "content": "Be terse."}
    assert len(create.json["items"]) == 3
    assert turn.json["conversation"] == conv_id
    assert turn.json["input"] == [{"role": "user", "content": "hello there"}]
    assert "store" not in turn.json

    provider_emulator.clear()
    again = await provider.send(
        _request("and now", backend=SessionBackend.NATIVE, state=reply.state, mirror=HISTORY)
    )
    assert again.content == "echo: and now [earlier messages: 4]"  # server kept the turn
    assert again.state == {STATE_KEY: conv_id}
    assert [r.path for r in provider_emulator.requests] == ["/openai/v1/responses"]


async def test_native_long_mirror_seeded_in_batches(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    mirror = [
        Message(role="user" if i % 2 == 0 else "assistant", content=f"m{i}") for i in range(45)
    ]
    reply = await make().send(_request(backend=SessionBackend.NATIVE, mirror=mirror))
    assert reply.content.endswith("[earlier messages: 45]")
    paths = [r.path for r in provider_emulator.requests]
    assert paths[0] == "/openai/v1/conversations"
    assert paths[1:3] == [f"/openai/v1/conversations/{reply.state[STATE_KEY]}/items"] * 2  # type: ignore[index]
    assert all(len(r.json.get("items", [])) <= 20 for r in provider_emulator.requests[:3])


async def test_native_stream(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider = make()
    text, final = await _streamed(provider, _request(backend=SessionBackend.NATIVE, mirror=HISTORY))
    assert text == final.content == "echo: hello there [earlier messages: 2]"
    assert final.state and final.state[STATE_KEY].startswith("conv_")
    text2, final2 = await _streamed(
        provider, _request("more", backend=SessionBackend.NATIVE, state=final.state)
    )
    assert text2 == "echo: more [earlier messages: 4]"
    assert final2.state == final.state


@pytest.mark.parametrize("streamed", [False, True])
async def test_native_reseeds_after_conversation_lost(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider = make()
    first = await provider.send(_request(backend=SessionBackend.NATIVE, mirror=[]))
    assert first.state is not None
    provider_emulator.forget_conversations()
    provider_emulator.clear()
    mirror = [
        Message(role="user", content="hello there"),
        Message(role="assistant", content=first.content),
    ]
    request = _request(
        "still there?", backend=SessionBackend.NATIVE, state=first.state, mirror=mirror
    )
    if streamed:
        _, reply = await _streamed(provider, request)
    else:
        reply = await provider.send(request)
    assert reply.content == "echo: still there? [earlier messages: 2]"
    assert reply.state and reply.state[STATE_KEY] != first.state[STATE_KEY]
    paths = [(r.path, r.fault) for r in provider_emulator.requests]
    assert paths == [
        ("/openai/v1/responses", None),  # 404: the conversation is gone
        ("/openai/v1/conversations", None),  # re-seeded from the mirror
        ("/openai/v1/responses", None),
    ]


async def test_native_injected_not_found_reseeds_once_then_fails(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider = make()
    first = await provider.send(_request(backend=SessionBackend.NATIVE))
    provider_emulator.inject("not_found", path=r"/responses$", count=2)
    with pytest.raises(ProviderNotFound):
        await provider.send(_request("x", backend=SessionBackend.NATIVE, state=first.state))


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


async def test_429_then_success_with_one_retry(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("429", retry_after=0.05)
    reply = await make(max_retries=1).send(_request())
    assert reply.content.startswith("echo: hello there")
    assert [r.fault for r in provider_emulator.requests] == ["429", None]


@pytest.mark.parametrize("kind", ["500", "503", "529"])
async def test_server_errors_are_unavailable(
    kind: str, make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject(kind)
    with pytest.raises(ProviderUnavailable) as info:
        await make().send(_request())
    assert info.value.status_code == int(kind)


async def test_slow_answer_with_small_timeout(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("slow", delay=1.0)
    with pytest.raises(ProviderTimeout):
        await make(timeout=0.2).send(_request())


async def test_dropped_connection(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("drop")
    with pytest.raises(ProviderUnavailable):
        await make().send(_request())


async def test_malformed_body(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("malformed")
    with pytest.raises(ProviderBadResponse):
        await make().send(_request())


@pytest.mark.parametrize(
    ("api", "backend"),
    [
        ("responses", SessionBackend.HYBRID),
        ("responses", SessionBackend.NATIVE),
        ("chat_completions", SessionBackend.HYBRID),
    ],
)
async def test_stream_break_mid_way(
    api: str, backend: SessionBackend, make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("stream_break", path=r"/(responses|chat/completions)$")
    received: list[str] = []
    with pytest.raises(ProviderUnavailable):
        async for item in make(api=api).stream(_request(backend=backend)):
            assert not isinstance(item, ProviderReply)
            received.append(item)
    assert received, "some deltas arrived before the break"


async def test_fault_header_via_extra_headers(make: Any) -> None:
    provider = make(extra={"extra_headers": {"x-emulator-fault": "503"}})
    with pytest.raises(ProviderUnavailable):
        await provider.send(_request())


async def test_auth_error_never_shows_the_key(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    from langswarm_runtime.testing.emulator import _wire as server

    # A server that echoes the key back, as some gateways do in their 401 text.
    provider_emulator.inject("not_found")  # warm the route table
    shape = server._ERROR_SHAPES["openai"]
    server._ERROR_SHAPES["openai"] = lambda status, message, code: {
        "error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}
    }
    try:
        provider_emulator.clear()
        provider = make(extra={"extra_headers": {"x-emulator-fault": "500"}})
        with pytest.raises(ProviderError) as info:
            await provider.send(_request())
    finally:
        server._ERROR_SHAPES["openai"] = shape
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value.args)
    assert "***" in str(info.value)


async def test_missing_key_is_auth_error(
    monkeypatch: pytest.MonkeyPatch, provider_emulator: ProviderEmulator
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = OpenAIProvider(OpenAIConfig(model="m", base_url=provider_emulator.url("openai")))
    with pytest.raises(ProviderAuthError, match="OPENAI_API_KEY"):
        await provider.send(_request())


async def test_key_from_environment(
    monkeypatch: pytest.MonkeyPatch, provider_emulator: ProviderEmulator
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-1234567890")
    provider = OpenAIProvider(
        OpenAIConfig(model="m", base_url=provider_emulator.url("openai") + "/v1/")
    )
    try:
        reply = await provider.send(_request())
    finally:
        await provider.close()
    assert reply.content.startswith("echo:")
    assert provider_emulator.requests[0].path == "/openai/v1/responses"  # no double /v1


def test_import_does_not_import_sdk() -> None:
    code = (
        "import sys, langswarm_runtime.providers.openai as m; "
        "assert 'openai' not in sys.modules, 'SDK imported'; "
        "m.OpenAIConfig(model='x'); assert 'openai' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_registered_as_plugin() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="langswarm_runtime")}
    assert eps.get("openai") == "langswarm_runtime.providers.openai"
    from langswarm_runtime.plugins import DEFAULT_PLUGINS

    assert "langswarm_runtime.providers.openai" in DEFAULT_PLUGINS
