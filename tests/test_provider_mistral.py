"""The Mistral adapter through the real ``mistralai`` SDK against the loopback emulator:
the provider conformance suite, then what only Mistral has (chat completions for hybrid,
the Conversations API for native, the retry-after cap, options)."""

from __future__ import annotations

from typing import Any

import pytest

from langswarm_runtime import SessionBackend
from langswarm_runtime.errors import ConfigError, ProviderUnavailable
from langswarm_runtime.providers.mistral import STATE_KEY
from langswarm_runtime.session.models import Message
from langswarm_runtime.testing import ProviderConformance
from langswarm_runtime.testing.emulator import ProviderEmulator, RecordedRequest
from langswarm_runtime.testing.provider_helpers import (
    HISTORY,
    content_text,
    make_request,
    provider_turn,
)

CHAT = "/mistral/v1/chat/completions"
CONVS = "/mistral/v1/conversations"
NATIVE = SessionBackend.NATIVE


class TestMistral(ProviderConformance):
    rich_turns_pending = "tools, media and structured output are not translated yet"
    provider_type = "mistral"
    plugin_module = "langswarm_runtime.providers.mistral"
    sdk_module = "mistralai"
    api_key_env = ("MISTRAL_API_KEY",)
    supports_native = True
    builtin = True
    model = "mistral-test"
    api_key = "mistral-test-very-secret-key-0123456789"
    # The SDK sends without a key; the server's 401 is the error.
    missing_key_sends_request = True
    # Adapter bugs, reported: strict xfails, so that the fix is noticed.
    def wire_messages(self, request: RecordedRequest) -> list[tuple[str, str]]:
        body = request.json
        if "messages" in body:  # chat completions (hybrid)
            return [(m["role"], content_text(m["content"])) for m in body["messages"]]
        inputs = body["inputs"]  # conversations (native)
        if isinstance(inputs, str):
            inputs = [{"role": "user", "content": inputs}]
        system = [("system", body["instructions"])] if body.get("instructions") else []
        return system + [(e["role"], content_text(e["content"])) for e in inputs]

    # ----------------------------------------------------------------------- turns

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_hybrid_sends_system_and_whole_history(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider_emulator.cached_tokens = 3
        provider = make_provider(temperature=0.3)
        request = make_request(history=HISTORY, system_prompt="Be terse.", max_tokens=40)
        reply = await provider_turn(provider, request, streamed)
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
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        await make_provider(extra={"random_seed": 7, "top_p": 0.5}).send(make_request())
        body = provider_emulator.requests[0].json
        assert (body["random_seed"], body["top_p"]) == (7, 0.5)
        with pytest.raises(ConfigError, match="not_a_mistral_option"):
            await make_provider(extra={"not_a_mistral_option": 1}).send(make_request())

    async def test_server_url_version_suffix_dropped(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        await make_provider(base_url=provider_emulator.url("mistral") + "/v1/").send(make_request())
        assert provider_emulator.requests[0].path == CHAT

    async def test_summary_goes_as_system_message(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        reply = await make_provider().send(
            make_request(history=[Message(role="summary", content="we met"), *HISTORY])
        )
        assert reply.content.endswith("[earlier messages: 2]")
        first = provider_emulator.requests[0].json["messages"][0]
        assert first["role"] == "system" and "we met" in first["content"]

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_native_starts_seeded_conversation_then_appends_only_new_message(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider(max_tokens=30, temperature=0.1, extra={"random_seed": 3})
        first = await provider_turn(
            provider,
            make_request(backend=NATIVE, mirror=HISTORY, system_prompt="Be terse."),
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
        assert start.json["completion_args"] == {
            "max_tokens": 30,
            "temperature": 0.1,
            "random_seed": 3,
        }
        assert [(e["role"], e["content"]) for e in start.json["inputs"]] == [
            ("user", "first question"),
            ("assistant", "first answer"),
            ("user", "hello there"),
        ]

        provider_emulator.clear()
        again = await provider_turn(
            provider,
            make_request("and now", backend=NATIVE, state=first.state, mirror=HISTORY),
            streamed,
        )
        assert again.content == "echo: and now [earlier messages: 4]"  # the server kept the turn
        assert again.state == {STATE_KEY: conv_id}
        [append] = provider_emulator.requests
        assert append.path == f"{CONVS}/{conv_id}"
        assert append.json["inputs"] == "and now"
        assert "model" not in append.json and "instructions" not in append.json

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_native_reseeds_after_conversation_lost(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider()
        first = await provider.send(make_request(backend=NATIVE))
        assert first.state is not None
        provider_emulator.forget_conversations()
        provider_emulator.clear()
        mirror = [
            Message(role="user", content="hello there"),
            Message(role="assistant", content="x"),
        ]
        request = make_request("still there?", backend=NATIVE, state=first.state, mirror=mirror)
        reply = await provider_turn(provider, request, streamed)
        assert reply.content == "echo: still there? [earlier messages: 2]"
        assert reply.state and reply.state[STATE_KEY] != first.state[STATE_KEY]
        assert [r.path for r in provider_emulator.requests] == [
            f"{CONVS}/{first.state[STATE_KEY]}",  # 404: the conversation is gone
            CONVS,  # started afresh from the mirror
        ]

    async def test_retry_after_is_capped(
        self,
        make_provider: Any,
        provider_emulator: ProviderEmulator,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        import asyncio

        waits: list[float] = []
        real_sleep = asyncio.sleep

        async def sleep(delay: float, *args: Any) -> None:
            waits.append(delay)
            await real_sleep(0)

        monkeypatch.setattr(asyncio, "sleep", sleep)
        provider_emulator.inject("429", retry_after=3600, count=2)
        reply = await make_provider(max_retries=2).send(make_request())
        assert reply.content.startswith("echo:")
        assert waits == [60.0, 60.0]

    async def test_fault_header_via_http_headers(self, make_provider: Any) -> None:
        provider = make_provider(extra={"http_headers": {"x-emulator-fault": "503"}})
        with pytest.raises(ProviderUnavailable):
            await provider.send(make_request())

    async def test_default_model(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        await make_provider(model=None).send(make_request())
        assert provider_emulator.requests[0].json["model"] == "mistral-large-latest"
