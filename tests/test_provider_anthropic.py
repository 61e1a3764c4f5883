"""The Anthropic adapter through the real ``anthropic`` SDK against the loopback emulator:
Messages (hybrid) and beta message threads (native), plain and streamed, every fault, and
sessions across a restart."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

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
from langswarm_runtime.providers.anthropic import (
    STATE_KEY,
    THREADS_BETA,
    AnthropicConfig,
    AnthropicProvider,
)
from langswarm_runtime.providers.base import ProviderReply, ProviderRequest
from langswarm_runtime.session.models import Message, MessageStatus
from langswarm_runtime.testing.emulator import ProviderEmulator

KEY = "sk-ant-test-very-secret-key-0123456789"
HISTORY = [
    Message(role="user", content="first question"),
    Message(role="assistant", content="first answer"),
]
PATH = "/anthropic/v1/messages"
HYBRID, NATIVE = SessionBackend.HYBRID, SessionBackend.NATIVE


@pytest.fixture
async def make(provider_emulator: ProviderEmulator) -> AsyncIterator[Any]:
    made: list[AnthropicProvider] = []

    def factory(**options: Any) -> AnthropicProvider:
        options.setdefault("base_url", provider_emulator.url("anthropic"))
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 5)
        options.setdefault("api_key", SecretStr(KEY))
        provider = AnthropicProvider(AnthropicConfig(model="claude-test", **options))
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        await provider.close()


def _request(
    text: str = "hello there",
    *,
    backend: SessionBackend = HYBRID,
    history: list[Message] | None = None,
    state: dict[str, Any] | None = None,
    system_prompt: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> ProviderRequest:
    mirror = list(history or [])

    async def load_history() -> list[Message]:
        return mirror

    return ProviderRequest(
        message=Message(role="user", content=text),
        model=None,
        backend=backend,
        system_prompt=system_prompt,
        history=mirror if backend is HYBRID else [],
        state=dict(state or {}),
        load_history=load_history,
        max_tokens=max_tokens,
        temperature=temperature,
    )


async def _streamed(
    provider: AnthropicProvider, request: ProviderRequest
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
    provider: AnthropicProvider, request: ProviderRequest, streamed: bool
) -> ProviderReply:
    if not streamed:
        return await provider.send(request)
    text, final = await _streamed(provider, request)
    assert text == final.content
    return final


# ----------------------------------------------------------------------- turns


@pytest.mark.parametrize("streamed", [False, True])
async def test_hybrid_system_separate_roles_and_usage(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider_emulator.cached_tokens = 2
    reply = await _turn(make(), _request(history=HISTORY, system_prompt="Be terse."), streamed)
    assert reply.content == "echo: hello there [earlier messages: 2]"
    assert reply.state is None and reply.provider_message_id.startswith("msg_")
    # words seen: system 2 + history 2 + 2 + message 2; cache reads count as input too
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.cached_tokens) == (
        8,
        6,
        2,
    )
    [rec] = provider_emulator.requests
    assert rec.path == PATH
    body = rec.json
    # prompt_caching (default on): breakpoints on the system prompt and the last history
    # message; tests/test_prompt_caching.py covers the caching itself
    cc = {"type": "ephemeral"}
    assert body["system"] == [{"type": "text", "text": "Be terse.", "cache_control": cc}]
    assert body["messages"] == [
        {"role": "user", "content": "first question"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "first answer", "cache_control": cc}],
        },
        {"role": "user", "content": "hello there"},
    ]
    assert (body["model"], body["max_tokens"]) == ("claude-test", 1024)
    assert "temperature" not in body  # the current Messages API has none
    assert body.get("stream", False) is streamed
    assert "thread" not in body and "anthropic-beta" not in rec.headers
    assert rec.headers["authorization"] == "<redacted>" or rec.headers["x-api-key"] == "<redacted>"


@pytest.mark.parametrize("streamed", [False, True])
async def test_native_thread_create_then_continue(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider = make()
    first = await _turn(
        provider, _request("one", backend=NATIVE, history=HISTORY, system_prompt="Sys."), streamed
    )
    assert first.content == "echo: one [earlier messages: 2]"  # seeded from the mirror
    assert first.state == {STATE_KEY: first.provider_message_id}
    second = await _turn(provider, _request("two", backend=NATIVE, state=first.state), streamed)
    # the server holds the thread: 2 mirrored + one + its reply
    assert second.content == "echo: two [earlier messages: 4]"
    assert second.state == {STATE_KEY: second.provider_message_id} != first.state
    create, cont = provider_emulator.requests
    assert create.json["thread"] == {"type": "create"} and create.json["system"] == "Sys."
    assert [m["content"] for m in create.json["messages"]] == [
        "first question",
        "first answer",
        "one",
    ]
    assert cont.json["thread"] == {
        "type": "continue",
        "previous_message_id": first.provider_message_id,
    }
    assert cont.json["messages"] == [{"role": "user", "content": "two"}]
    assert "system" not in cont.json  # fixed when the thread was created
    assert all(THREADS_BETA in r.headers["anthropic-beta"] for r in (create, cont))


async def test_summary_joins_the_system_prompt(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    history = [Message(role="summary", content="we met"), *HISTORY]
    reply = await make().send(_request(history=history, system_prompt="Sys."))
    assert reply.content.endswith("[earlier messages: 2]")
    body = provider_emulator.requests[0].json
    [system] = body["system"]  # one block, marked for the prompt cache
    assert system["text"].startswith("Sys.") and "we met" in system["text"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


async def test_max_tokens_extra_and_base_url_with_version(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider = make(
        max_tokens=77,
        extra={"stop_sequences": ["zzz"], "metadata": {"user_id": "u-1"}},
        base_url=provider_emulator.url("anthropic") + "/v1/",
    )
    await provider.send(_request())
    rec = provider_emulator.requests[0]
    assert rec.path == PATH  # /v1 dropped: the SDK adds it
    assert rec.json["max_tokens"] == 77
    assert (rec.json["stop_sequences"], rec.json["metadata"]) == (["zzz"], {"user_id": "u-1"})


async def test_unknown_extra_option_and_temperature_are_config_errors(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    with pytest.raises(ConfigError, match="not_an_option"):
        await make(extra={"not_an_option": 1}).send(_request())
    assert provider_emulator.requests == []
    with pytest.raises(ValidationError, match="takes no temperature"):
        AnthropicConfig(temperature=0.5)


# ----------------------------------------------------------------------- lost threads


@pytest.mark.parametrize("how", ["forget", "fault"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_lost_thread_is_reseeded_from_the_mirror(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool, how: str
) -> None:
    provider = make()
    first = await provider.send(_request("one", backend=NATIVE, history=HISTORY))
    if how == "forget":
        provider_emulator.forget_conversations()
    else:
        provider_emulator.inject("not_found")
    mirror = [
        *HISTORY,
        Message(role="user", content="one"),
        Message(role="assistant", content=first.content),
    ]
    reply = await _turn(
        provider, _request("two", backend=NATIVE, history=mirror, state=first.state), streamed
    )
    assert reply.content == "echo: two [earlier messages: 4]"  # no error, whole mirror replayed
    assert reply.state == {STATE_KEY: reply.provider_message_id}
    lost, seeded = provider_emulator.requests[1:]
    assert lost.json["thread"]["type"] == "continue"
    assert seeded.json["thread"] == {"type": "create"} and len(seeded.json["messages"]) == 5


async def test_thread_that_moved_on_is_reseeded(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    # The server kept a turn whose stream broke on our side: the old id was continued.
    provider = make()
    first = await provider.send(_request("one", backend=NATIVE))
    provider_emulator.inject("stream_break")
    with pytest.raises(ProviderUnavailable):
        await _streamed(provider, _request("lost", backend=NATIVE, state=first.state))
    mirror = [Message(role="user", content="one"), Message(role="assistant", content=first.content)]
    reply = await provider.send(_request("two", backend=NATIVE, history=mirror, state=first.state))
    assert reply.content == "echo: two [earlier messages: 2]"  # the failed turn is not replayed


# ----------------------------------------------------------------------- faults


async def test_429_without_retries_carries_retry_after(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("429", retry_after=17)
    with pytest.raises(ProviderRateLimited) as info:
        await make().send(_request())
    assert info.value.retry_after == 17 and info.value.status_code == 429
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert len(provider_emulator.requests) == 1


@pytest.mark.parametrize("streamed", [False, True])
async def test_429_then_success_with_one_retry(
    make: Any, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    provider_emulator.inject("429", retry_after=0.05)
    reply = await _turn(make(max_retries=1), _request(), streamed)
    assert reply.content.startswith("echo: hello there")
    assert [r.fault for r in provider_emulator.requests] == ["429", None]


async def test_retry_after_wait_is_capped(make: Any, provider_emulator: ProviderEmulator) -> None:
    # The SDK alone would sleep the 30 s the server asks for; our cap (lowered here) wins.
    provider = make(max_retries=1)
    provider.retry_after_cap = 0.2
    provider_emulator.inject("429", retry_after=30)
    started = time.monotonic()
    reply = await provider.send(_request())
    assert reply.content.startswith("echo:")
    assert time.monotonic() - started < 10
    assert [r.fault for r in provider_emulator.requests] == ["429", None]
    assert AnthropicProvider(AnthropicConfig()).retry_after_cap == 60.0


@pytest.mark.parametrize("kind", ["500", "503", "529"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_server_errors_are_unavailable(
    kind: str, streamed: bool, make: Any, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject(kind)
    with pytest.raises(ProviderUnavailable) as info:
        await _turn(make(), _request(), streamed)
    assert info.value.status_code == int(kind)


async def test_overloaded_retried_then_success(
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
        await _turn(make(timeout=0.2), _request(), streamed)


async def test_dropped_connection(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("drop")
    with pytest.raises(ProviderUnavailable):
        await make().send(_request())


async def test_malformed_body(make: Any, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("malformed")
    with pytest.raises(ProviderBadResponse):
        await make().send(_request())


@pytest.mark.parametrize("backend", [HYBRID, NATIVE])
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


async def test_refused_key_is_auth_error(make: Any) -> None:
    with pytest.raises(ProviderAuthError) as info:
        await make(api_key=SecretStr("invalid-key-0123456789")).send(_request())
    assert info.value.status_code == 401


async def test_error_message_never_shows_the_key(
    make: Any, provider_emulator: ProviderEmulator
) -> None:
    from langswarm_runtime.testing.emulator import server

    # A server that echoes the key back, as some gateways do in their error text.
    shape = server._ERROR_SHAPES["anthropic"]
    server._ERROR_SHAPES["anthropic"] = lambda status, message, code: {
        "type": "error",
        "error": {"type": "api_error", "message": f"bad key {KEY}"},
    }
    try:
        for kind in ("500", "429"):
            provider_emulator.inject(kind)
            with pytest.raises(ProviderError) as info:
                await make().send(_request())
            assert KEY not in str(info.value) and KEY not in repr(info.value.args)
            assert "***" in str(info.value)
    finally:
        server._ERROR_SHAPES["anthropic"] = shape


async def test_missing_key_is_auth_error(
    monkeypatch: pytest.MonkeyPatch, provider_emulator: ProviderEmulator
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    provider = AnthropicProvider(AnthropicConfig(base_url=provider_emulator.url("anthropic")))
    try:
        with pytest.raises(ProviderAuthError):
            await provider.send(_request())
    finally:
        await provider.close()
    assert provider_emulator.requests == []


async def test_empty_key_falls_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, make: Any
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env-0123456789")
    reply = await make(api_key=SecretStr("")).send(_request())  # ${ANTHROPIC_API_KEY:-}
    assert reply.content.startswith("echo:")


def test_emulator_keeps_the_wire_rules(provider_emulator: ProviderEmulator) -> None:
    import httpx

    url = provider_emulator.url("anthropic") + "/v1/messages"
    msg = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    beta = {"anthropic-beta": THREADS_BETA}
    with httpx.Client(timeout=5) as http:
        assert http.post(url, json={**msg, "max_tokens": None}).status_code == 400
        r = http.post(url, json={**msg, "thread": {"type": "create"}})  # no beta header
        assert r.status_code == 400 and r.json()["type"] == "error"
        first = http.post(url, json={**msg, "thread": {"type": "create"}}, headers=beta).json()
        cont = {"type": "continue", "previous_message_id": first["id"]}
        r = http.post(url, json={**msg, "system": "s", "thread": cont}, headers=beta)
        assert r.status_code == 400  # system is fixed at create
        assert http.post(url, json={**msg, "thread": cont}, headers=beta).status_code == 200
        r = http.post(url, json={**msg, "thread": cont}, headers=beta)  # continued once only
        assert r.json()["error"]["details"]["error_code"] == "thread_already_continued"


def test_import_does_not_import_sdk() -> None:
    code = (
        "import sys, langswarm_runtime.providers.anthropic as m; "
        "m.AnthropicProvider(m.AnthropicConfig(model='x')); "
        "assert 'anthropic' not in sys.modules, 'SDK imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_registered_as_plugin() -> None:
    from importlib.metadata import entry_points

    from langswarm_runtime.plugins import DEFAULT_PLUGINS

    eps = {ep.name: ep.value for ep in entry_points(group="langswarm_runtime")}
    assert eps.get("anthropic") == "langswarm_runtime.providers.anthropic"
    assert "langswarm_runtime.providers.anthropic" in DEFAULT_PLUGINS
    assert AnthropicProvider.supports_native is True


# ----------------------------------------------------------------------- sessions

CONFIG = """
version: 1
storage: {{type: sqlite, path: "{db}"}}
defaults: {{provider: claude}}
providers:
  claude:
    type: anthropic
    model: claude-test
    api_key: "{key}"
    base_url: "{url}"
    max_retries: 0
    timeout: 5
"""


@pytest.fixture
def swarm(tmp_path: Path, provider_emulator: ProviderEmulator) -> Path:
    path = tmp_path / "swarm.yaml"
    url = provider_emulator.url("anthropic")
    path.write_text(CONFIG.format(db=tmp_path / "app.db", key=KEY, url=url), encoding="utf-8")
    return path


async def _say(session: Any, text: str, streamed: bool) -> str:
    if streamed:
        return "".join([c async for c in session.stream_message(text)])
    return str((await session.send_message(text)).content)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("backend", [HYBRID, NATIVE])
async def test_session_survives_restart(
    swarm: Path, provider_emulator: ProviderEmulator, backend: SessionBackend, streamed: bool
) -> None:
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(
            user_id="u", provider="claude", backend=backend, system_prompt="Hi."
        )
        assert await _say(session, "one", streamed) == "echo: one [earlier messages: 0]"
        sid = session.session_id
    async with SessionManager.from_config(swarm) as manager:
        again = await manager.get_session(sid, user_id="u")
        assert again is not None and again.backend is backend
        assert await _say(again, "two", streamed) == "echo: two [earlier messages: 2]"
    last = provider_emulator.requests[-1].json
    if backend is NATIVE:  # the thread id came back from storage: only the new message went
        assert last["thread"]["type"] == "continue" and len(last["messages"]) == 1
    else:
        assert last["system"][0]["text"] == "Hi." and len(last["messages"]) == 3


async def test_native_session_recovers_a_lost_thread_after_restart(
    swarm: Path, provider_emulator: ProviderEmulator
) -> None:
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(user_id="u", provider="claude", backend=NATIVE)
        await session.send_message("one")
        sid = session.session_id
    provider_emulator.forget_conversations()
    async with SessionManager.from_config(swarm) as manager:
        again = await manager.get_session(sid, user_id="u")
        assert again is not None
        reply = await again.send_message("two")
        assert reply.content == "echo: two [earlier messages: 2]"
        assert len(await again.get_history(include_failed=True)) == 4  # nothing failed


@pytest.mark.parametrize("backend", [HYBRID, NATIVE])
async def test_provider_fault_leaves_failed_turn_and_clean_history(
    swarm: Path, provider_emulator: ProviderEmulator, backend: SessionBackend
) -> None:
    async with SessionManager.from_config(swarm) as manager:
        session = await manager.create_session(user_id="u", provider="claude", backend=backend)
        await session.send_message("kept")
        provider_emulator.inject("529")
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
