"""The OpenAI adapter through the real ``openai`` SDK against the loopback emulator: the
provider conformance suite, then what only OpenAI has (Responses and Conversations wire
shapes, the chat-completions API, options)."""

from __future__ import annotations

from typing import Any

import pytest

from langswarm_runtime.errors import ProviderUnavailable
from langswarm_runtime.providers.base import ProviderReply
from langswarm_runtime.providers.openai import STATE_KEY
from langswarm_runtime.session.models import Message, SessionBackend
from langswarm_runtime.testing import ProviderConformance
from langswarm_runtime.testing.emulator import ProviderEmulator, RecordedRequest
from langswarm_runtime.testing.provider_helpers import (
    HISTORY,
    collect_stream,
    content_text,
    make_request,
    provider_turn,
)

NATIVE = SessionBackend.NATIVE

class TestOpenAI(ProviderConformance):
    provider_type = "openai"
    plugin_module = "langswarm_runtime.providers.openai"
    sdk_module = "openai"
    api_key_env = ("OPENAI_API_KEY",)
    supports_native = True
    builtin = True
    model = "gpt-test"
    api_key = "sk-test-very-secret-key-0123456789"
    # Adapter bugs, reported: strict xfails, so that the fix is noticed.
    def wire_messages(self, request: RecordedRequest) -> list[tuple[str, str]]:
        body = request.json
        items = body.get("input", body.get("messages", []))
        roles = {"developer": "system"}
        return [(roles.get(i["role"], i["role"]), content_text(i["content"])) for i in items]

    # ------------------------------------------------------------------- hybrid shapes

    async def test_hybrid_responses_sends_whole_input_with_store_false(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider()
        request = make_request(history=HISTORY, system_prompt="Be terse.", max_tokens=50)
        reply = await provider.send(request)
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

    async def test_hybrid_stream(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        _, final = await collect_stream(make_provider(), make_request(history=HISTORY))
        assert final.content == "echo: hello there [earlier messages: 2]"
        assert (final.usage.input_tokens, final.usage.output_tokens) == (6, 6)
        assert provider_emulator.requests[0].json["stream"] is True
        assert provider_emulator.requests[0].json["store"] is False

    async def test_cached_tokens_and_options_mapped(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider_emulator.cached_tokens = 3
        provider = make_provider(
            temperature=0.2, max_tokens=77, extra={"top_p": 0.5}, system_role="developer"
        )
        reply = await provider.send(make_request(system_prompt="sys prompt here"))
        assert reply.usage.cached_tokens == 3
        body = provider_emulator.requests[0].json
        assert (body["temperature"], body["max_output_tokens"], body["top_p"]) == (0.2, 77, 0.5)
        assert body["input"][0] == {"role": "developer", "content": "sys prompt here"}

    async def test_summary_role_goes_as_system_note(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        history = [Message(role="summary", content="we talked"), *HISTORY]
        reply = await make_provider().send(make_request(history=history))
        assert reply.content.endswith("[earlier messages: 2]")  # the note is not a chat turn
        first = provider_emulator.requests[0].json["input"][0]
        assert first["role"] == "system" and "we talked" in first["content"]

    async def test_chat_completions_api(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider_emulator.cached_tokens = 1
        provider = make_provider(api="chat_completions", max_tokens=20)
        reply = await provider.send(make_request(history=HISTORY, system_prompt="Be terse."))
        assert reply.content == "echo: hello there [earlier messages: 2]"
        usage = reply.usage
        assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (8, 6, 1)
        rec = provider_emulator.requests[0]
        assert rec.path == "/openai/v1/chat/completions"
        assert rec.json["messages"][0] == {"role": "system", "content": "Be terse."}
        assert rec.json["max_tokens"] == 20

        _, final = await collect_stream(provider, make_request(history=HISTORY))
        assert final.content == "echo: hello there [earlier messages: 2]"
        assert final.usage.output_tokens == 6
        streamed = provider_emulator.requests[-1].json
        assert streamed["stream"] is True
        assert streamed["stream_options"] == {"include_usage": True}

    async def test_chat_completions_stream_break(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider_emulator.inject("stream_break")
        received: list[str] = []
        with pytest.raises(ProviderUnavailable):
            async for item in make_provider(api="chat_completions").stream(make_request()):
                assert not isinstance(item, ProviderReply)
                received.append(item)
        assert received, "some deltas arrived before the break"

    async def test_base_url_with_version_suffix(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        await make_provider(base_url=provider_emulator.url("openai") + "/v1/").send(make_request())
        assert provider_emulator.requests[0].path == "/openai/v1/responses"  # no double /v1

    async def test_fault_header_via_extra_headers(self, make_provider: Any) -> None:
        provider = make_provider(extra={"extra_headers": {"x-emulator-fault": "503"}})
        with pytest.raises(ProviderUnavailable):
            await provider.send(make_request())

    # ------------------------------------------------------------------- native shapes

    async def test_native_creates_seeded_conversation_then_sends_only_new_message(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider()
        reply = await provider.send(
            make_request(backend=NATIVE, mirror=HISTORY, system_prompt="Be terse.")
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
            make_request("and now", backend=NATIVE, state=reply.state, mirror=HISTORY)
        )
        assert again.content == "echo: and now [earlier messages: 4]"  # server kept the turn
        assert again.state == {STATE_KEY: conv_id}
        assert [r.path for r in provider_emulator.requests] == ["/openai/v1/responses"]

    async def test_native_long_mirror_seeded_in_batches(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        mirror = [
            Message(role="user" if i % 2 == 0 else "assistant", content=f"m{i}") for i in range(45)
        ]
        reply = await make_provider().send(make_request(backend=NATIVE, mirror=mirror))
        assert reply.content.endswith("[earlier messages: 45]")
        assert reply.state is not None
        paths = [r.path for r in provider_emulator.requests]
        assert paths[0] == "/openai/v1/conversations"
        assert paths[1:3] == [f"/openai/v1/conversations/{reply.state[STATE_KEY]}/items"] * 2
        assert all(len(r.json.get("items", [])) <= 20 for r in provider_emulator.requests[:3])

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_native_reseed_requests(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider()
        first = await provider.send(make_request(backend=NATIVE, mirror=[]))
        assert first.state is not None
        provider_emulator.forget_conversations()
        provider_emulator.clear()
        mirror = [
            Message(role="user", content="hello there"),
            Message(role="assistant", content=first.content),
        ]
        request = make_request("still there?", backend=NATIVE, state=first.state, mirror=mirror)
        reply = await provider_turn(provider, request, streamed)
        assert reply.content == "echo: still there? [earlier messages: 2]"
        assert reply.state and reply.state[STATE_KEY] != first.state[STATE_KEY]
        assert [r.path for r in provider_emulator.requests] == [
            "/openai/v1/responses",  # 404: the conversation is gone
            "/openai/v1/conversations",  # re-seeded from the mirror
            "/openai/v1/responses",
        ]
