"""The Anthropic adapter through the real ``anthropic`` SDK against the loopback emulator:
the provider conformance suite, then what only Anthropic has (Messages shapes with the
system prompt apart, beta message threads for native mode, retry-after cap, options)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from langswarm_runtime import SessionBackend
from langswarm_runtime.errors import ConfigError, ProviderAuthError, ProviderUnavailable
from langswarm_runtime.providers.anthropic import (
    STATE_KEY,
    THREADS_BETA,
    AnthropicConfig,
    AnthropicProvider,
)
from langswarm_runtime.session.models import Message
from langswarm_runtime.testing import ProviderConformance
from langswarm_runtime.testing.emulator import ProviderEmulator, RecordedRequest
from langswarm_runtime.testing.provider_helpers import (
    HISTORY,
    collect_stream,
    content_text,
    make_request,
    provider_turn,
)

PATH = "/anthropic/v1/messages"
HYBRID, NATIVE = SessionBackend.HYBRID, SessionBackend.NATIVE


class TestAnthropic(ProviderConformance):
    rich_turns_pending = "tools, media and structured output are not translated yet"
    provider_type = "anthropic"
    plugin_module = "langswarm_runtime.providers.anthropic"
    sdk_module = "anthropic"
    api_key_env = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
    supports_native = True
    builtin = True
    model = "claude-test"
    api_key = "sk-ant-test-very-secret-key-0123456789"
    sdk_context_cleared = False  # ``raise ... from None``: kept, never printed

    def wire_messages(self, request: RecordedRequest) -> list[tuple[str, str]]:
        body = request.json
        system = [("system", content_text(body["system"]))] if body.get("system") else []
        return system + [(m["role"], content_text(m["content"])) for m in body["messages"]]

    # ----------------------------------------------------------------------- turns

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_hybrid_system_separate_roles_and_usage(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider_emulator.cached_tokens = 2
        reply = await provider_turn(
            make_provider(), make_request(history=HISTORY, system_prompt="Be terse."), streamed
        )
        assert reply.content == "echo: hello there [earlier messages: 2]"
        assert reply.state is None and (reply.provider_message_id or "").startswith("msg_")
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
        assert (
            rec.headers["authorization"] == "<redacted>" or rec.headers["x-api-key"] == "<redacted>"
        )

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_native_thread_create_then_continue(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider()
        first = await provider_turn(
            provider,
            make_request("one", backend=NATIVE, history=HISTORY, system_prompt="Sys."),
            streamed,
        )
        assert first.content == "echo: one [earlier messages: 2]"  # seeded from the mirror
        assert first.state == {STATE_KEY: first.provider_message_id}
        second = await provider_turn(
            provider, make_request("two", backend=NATIVE, state=first.state), streamed
        )
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
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        history = [Message(role="summary", content="we met"), *HISTORY]
        reply = await make_provider().send(make_request(history=history, system_prompt="Sys."))
        assert reply.content.endswith("[earlier messages: 2]")
        body = provider_emulator.requests[0].json
        [system] = body["system"]  # one block, marked for the prompt cache
        assert system["text"].startswith("Sys.") and "we met" in system["text"]
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]

    async def test_max_tokens_extra_and_base_url_with_version(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider(
            max_tokens=77,
            extra={"stop_sequences": ["zzz"], "metadata": {"user_id": "u-1"}},
            base_url=provider_emulator.url("anthropic") + "/v1/",
        )
        await provider.send(make_request())
        rec = provider_emulator.requests[0]
        assert rec.path == PATH  # /v1 dropped: the SDK adds it
        assert rec.json["max_tokens"] == 77
        assert (rec.json["stop_sequences"], rec.json["metadata"]) == (["zzz"], {"user_id": "u-1"})

    async def test_unknown_extra_option_and_temperature_are_config_errors(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        with pytest.raises(ConfigError, match="not_an_option"):
            await make_provider(extra={"not_an_option": 1}).send(make_request())
        assert provider_emulator.requests == []
        with pytest.raises(ValidationError, match="takes no temperature"):
            AnthropicConfig(temperature=0.5)

    @pytest.mark.parametrize("how", ["forget", "fault"])
    @pytest.mark.parametrize("streamed", [False, True])
    async def test_lost_thread_is_reseeded_from_the_mirror(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool, how: str
    ) -> None:
        provider = make_provider()
        first = await provider.send(make_request("one", backend=NATIVE, history=HISTORY))
        if how == "forget":
            provider_emulator.forget_conversations()
        else:
            provider_emulator.inject("not_found")
        mirror = [
            *HISTORY,
            Message(role="user", content="one"),
            Message(role="assistant", content=first.content),
        ]
        reply = await provider_turn(
            provider,
            make_request("two", backend=NATIVE, history=mirror, state=first.state),
            streamed,
        )
        assert reply.content == "echo: two [earlier messages: 4]"  # no error, whole mirror replayed
        assert reply.state == {STATE_KEY: reply.provider_message_id}
        lost, seeded = provider_emulator.requests[1:]
        assert lost.json["thread"]["type"] == "continue"
        assert seeded.json["thread"] == {"type": "create"} and len(seeded.json["messages"]) == 5

    async def test_thread_that_moved_on_is_reseeded(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        # The server kept a turn whose stream broke on our side: the old id was continued.
        provider = make_provider()
        first = await provider.send(make_request("one", backend=NATIVE))
        provider_emulator.inject("stream_break")
        with pytest.raises(ProviderUnavailable):
            await collect_stream(provider, make_request("lost", backend=NATIVE, state=first.state))
        mirror = [
            Message(role="user", content="one"),
            Message(role="assistant", content=first.content),
        ]
        reply = await provider.send(
            make_request("two", backend=NATIVE, history=mirror, state=first.state)
        )
        assert reply.content == "echo: two [earlier messages: 2]"  # the failed turn is not replayed

    async def test_retry_after_wait_is_capped(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        # The SDK alone would sleep the 30 s the server asks for; our cap (lowered here) wins.
        provider = make_provider(max_retries=1)
        provider.retry_after_cap = 0.2
        provider_emulator.inject("429", retry_after=30)
        started = time.monotonic()
        reply = await provider.send(make_request())
        assert reply.content.startswith("echo:")
        assert time.monotonic() - started < 10
        assert [r.fault for r in provider_emulator.requests] == ["429", None]
        assert AnthropicProvider(AnthropicConfig()).retry_after_cap == 60.0

    async def test_refused_key_is_auth_error(self, make_provider: Any) -> None:
        with pytest.raises(ProviderAuthError) as info:
            await make_provider(api_key=SecretStr("invalid-key-0123456789")).send(make_request())
        assert info.value.status_code == 401

    def test_emulator_keeps_the_wire_rules(self, provider_emulator: ProviderEmulator) -> None:
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
