"""The Anthropic adapter through the real ``anthropic`` SDK against the loopback emulator:
the provider conformance suite, then what only Anthropic has (Messages shapes with the
system prompt apart, beta message threads for native mode, retry-after cap, options)."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from langswarm_runtime import SessionBackend
from langswarm_runtime.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderUnavailable,
)
from langswarm_runtime.providers._model_rules import reasoning_for
from langswarm_runtime.providers.anthropic import (
    STATE_KEY,
    THREADS_BETA,
    TOOLS_KEY,
    AnthropicConfig,
    AnthropicProvider,
)
from langswarm_runtime.providers.portable import for_provider
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.testing import ProviderConformance
from langswarm_runtime.testing._provider_rich import LOOKUP, PNG, Invoice, weather
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
THINKING = {"type": "enabled", "budget_tokens": 2048}
INVOICE = Invoice.model_json_schema()


def _block_kinds(body: dict[str, Any]) -> list[str]:
    """The types of every content block of a request's messages, in order."""
    return [
        block["type"]
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
    ]


class TestAnthropic(ProviderConformance):
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

    # ----------------------------------------------------------------- rich turns

    async def test_tool_results_merge_into_one_user_message_in_call_order(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        request = make_request('call lookup {"key": "a"}\ncall lookup {"key": "b"}')
        request.tools = [LOOKUP]
        first = await make_provider().send(request)
        calls = [p for p in first.parts if isinstance(p, ToolCall)]
        assert [c.arguments for c in calls] == [{"key": "a"}, {"key": "b"}]
        assert first.content == "" and all(c.id.startswith("toolu_") for c in calls)
        asking = Message(role="assistant", parts=first.parts)
        # The results come back in two tool messages, the second call's first.
        request = make_request()
        request.message = Message(
            role="tool", parts=[ToolResult(call_id=calls[0].id, content="A", name="lookup")]
        )
        request.turn = [
            Message(role="user", content="look both up"),
            asking,
            Message(role="tool", parts=[ToolResult(call_id=calls[1].id, content="B",
                                                   is_error=True)]),
        ]  # fmt: skip
        request.tools = [LOOKUP]
        reply = await make_provider(prompt_caching=False).send(request)
        assert reply.content == "tool lookup returned A; tool lookup returned B"
        body = provider_emulator.requests[-1].json
        assert body["tools"] == [{
            "name": "lookup", "description": LOOKUP.description,
            "input_schema": LOOKUP.parameters,
        }]  # fmt: skip
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][1]["content"] == [
            {"type": "tool_use", "id": c.id, "name": "lookup", "input": c.arguments} for c in calls
        ]
        assert body["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": calls[0].id, "content": "A"},
            {"type": "tool_result", "tool_use_id": calls[1].id, "content": "B", "is_error": True},
        ]

    async def test_emulator_refuses_unpaired_tool_blocks(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        request = make_request()
        request.turn = [
            Message(role="user", content="x"),
            Message(role="assistant", parts=[ToolCall(id="toolu_1", name="lookup")]),
        ]
        request.message = Message(role="tool", parts=[ToolResult(call_id="toolu_2", content="?")])
        request.tools = [LOOKUP]
        with pytest.raises(
            ProviderBadResponse, match="without `tool_result` blocks immediately after: toolu_1"
        ):
            await make_provider().send(request)
        request.tools = []
        request.message = Message(role="tool", parts=[ToolResult(call_id="toolu_1", content="1")])
        with pytest.raises(ProviderBadResponse, match="must define tools"):
            await make_provider().send(request)

    async def test_call_ids_of_another_provider_are_rewritten_to_the_pattern(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider()
        foreign = "call.7:abc/1"  # what another API may use; Anthropic refuses it
        assert provider.call_id_pattern == r"^[a-zA-Z0-9_-]+$"
        steps = [
            Message(role="user", content="x"),
            Message(role="assistant", parts=[ToolCall(id=foreign, name="lookup")]),
            Message(role="tool", parts=[ToolResult(call_id=foreign, content="42")]),
        ]
        request = make_request()
        request.tools = [LOOKUP]
        *request.turn, request.message = steps
        with pytest.raises(
            ProviderBadResponse, match="id: String should match"
        ):  # as it is: refused
            await provider.send(request)
        portable = for_provider(
            steps, provider="anthropic", model=self.model, wire_call_id=provider.wire_call_id
        )  # what the session does
        *request.turn, request.message = portable
        reply = await provider.send(request)
        assert reply.content == "tool lookup returned 42"
        wire = provider_emulator.requests[-1].json["messages"]
        new_id = wire[1]["content"][0]["id"]
        assert new_id != foreign and re.fullmatch(provider.call_id_pattern, new_id)
        assert wire[2]["content"][0]["tool_use_id"] == new_id == provider.wire_call_id(foreign)

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_thinking_signature_is_kept_and_replayed(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider(extra={"thinking": THINKING}, max_tokens=4096)
        reply = await provider_turn(provider, make_request("why?"), streamed)
        thought, signature = reasoning_for("why?")
        assert reply.content == "echo: why? [earlier messages: 0]"
        assert reply.parts == [
            ReasoningPart(text=thought, provider="anthropic", model=self.model,
                          data={"signature": signature}),
            TextPart(text=reply.content),
        ]  # fmt: skip
        history = [Message(role="user", content="why?"),
                   Message(role="assistant", parts=reply.parts)]  # fmt: skip
        await provider_turn(provider, make_request("and?", history=history), streamed)
        replayed = provider_emulator.requests[-1].json["messages"][1]["content"]
        assert replayed[0] == {"type": "thinking", "thinking": thought, "signature": signature}
        forged = ReasoningPart(text=thought + "!", provider="anthropic", model=self.model,
                               data={"signature": signature})  # fmt: skip
        history[1] = Message(role="assistant", parts=[forged, TextPart(text="x")])
        with pytest.raises(ProviderBadResponse, match="Invalid `signature`"):
            await provider_turn(provider, make_request("and?", history=history), streamed)

    async def test_thinking_goes_back_to_the_same_model_family_only(
        self, manager: Any, provider_emulator: ProviderEmulator
    ) -> None:
        async with manager(extra={"thinking": THINKING}, max_tokens=4096) as mgr:
            session = await mgr.create_session(user_id="u", tools=[weather])
            reply = await session.send_message('call weather {"city": "Oslo"}')
            assert reply.content == "tool weather returned Sunny in Oslo"
            # The call went back with its thinking block first, as the API demands.
            asking = provider_emulator.requests[1].json["messages"][1]["content"]
            assert [b["type"] for b in asking] == ["thinking", "tool_use"]
            await session.send_message("again")  # same model: every thinking block replayed
            kinds = _block_kinds(provider_emulator.requests[-1].json)
            assert kinds == ["thinking", "tool_use", "tool_result", "thinking", "text"]
            await session.switch_provider("subject", model="claude-test-2")
            reply = await session.send_message("elsewhere")
            assert reply.content.startswith("echo: elsewhere")
            body = provider_emulator.requests[-1].json
            assert body["model"] == "claude-test-2"
            assert "thinking" not in _block_kinds(body)  # another family's: left out
            assert "tool_use" in _block_kinds(body)  # the rest of the history goes
            await session.switch_provider("subject", model=f"{self.model}-20260101")
            await session.send_message("back")  # a snapshot of the first model: same family
            assert _block_kinds(provider_emulator.requests[-1].json).count("thinking") == 3

    async def test_media_blocks(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        png = ImagePart.from_bytes(PNG, "image/png")
        parts = [
            TextPart(text="look"),
            png,
            ImagePart.from_url("https://example.com/cat.jpg"),
            FilePart.from_bytes(b"%PDF-1.4", "application/pdf", name="a.pdf"),
            FilePart.from_bytes(b"plain words", "text/plain", name="b.txt"),
            FilePart.from_bytes(b"\x00\x01", "application/zip", name="c.zip"),
        ]
        request = make_request()
        request.message = Message(role="user", parts=parts)
        reply = await make_provider().send(request)
        assert reply.content == (
            "echo: look[c.zip (application/zip, 2 bytes) not sent: a file type the API does "
            f"not take] [image/png {len(PNG)} bytes] [image https://example.com/cat.jpg] "
            "[application/pdf 8 bytes] [text/plain 11 bytes] [earlier messages: 0]"
        )
        blocks = provider_emulator.requests[-1].json["messages"][0]["content"]
        assert blocks[1] == {"type": "image", "source": {
            "type": "base64", "media_type": "image/png",
            "data": base64.b64encode(PNG).decode()}}  # fmt: skip
        assert blocks[2] == {"type": "image", "source": {"type": "url",
                             "url": "https://example.com/cat.jpg"}}  # fmt: skip
        assert blocks[3]["type"] == "document" and blocks[3]["title"] == "a.pdf"
        assert blocks[3]["source"]["media_type"] == "application/pdf"
        assert blocks[4]["source"] == {"type": "text", "media_type": "text/plain",
                                       "data": "plain words"}  # fmt: skip

    async def test_structured_output_uses_output_config(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        request = make_request("ACME")
        request.response_format = {"name": "Invoice", "schema": INVOICE, "strict": True}
        reply = await make_provider(extra={"output_config": {"effort": "low"}}).send(request)
        assert json.loads(reply.content) == {"customer": "ACME", "total": 1}
        config = provider_emulator.requests[-1].json["output_config"]
        assert config["effort"] == "low"  # the entry's own output_config options are kept
        assert config["format"]["type"] == "json_schema"
        schema = config["format"]["schema"]
        assert schema["additionalProperties"] is False  # the SDK's transform_schema ran
        assert schema["properties"].keys() == {"customer", "total"}

    async def test_native_thread_keeps_its_tools(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider()
        request = make_request('call lookup {"key": "k"}', backend=NATIVE, system_prompt="S.")
        request.tools = [LOOKUP]
        first = await provider.send(request)
        [call] = [p for p in first.parts if isinstance(p, ToolCall)]
        assert first.state is not None and first.state[TOOLS_KEY]
        results = make_request(backend=NATIVE, state=first.state, system_prompt="S.")
        results.turn = [request.message, Message(role="assistant", parts=first.parts)]
        results.message = Message(role="tool", parts=[ToolResult(call_id=call.id, content="v")])
        results.tools = [LOOKUP]
        second = await provider.send(results)
        assert second.content == "tool lookup returned v"
        assert second.state == {STATE_KEY: second.provider_message_id,
                                TOOLS_KEY: first.state[TOOLS_KEY]}  # fmt: skip
        create, cont = provider_emulator.requests
        assert create.json["tools"][0]["name"] == "lookup" and create.json["system"] == "S."
        assert "tools" not in cont.json and "system" not in cont.json
        assert cont.json["messages"] == [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "v"}]}]  # fmt: skip
        # Other tools: the thread cannot take them, so a new one starts from the mirror.
        mirror = [*results.turn, results.message,
                  Message(role="assistant", content=second.content)]  # fmt: skip
        other = make_request("plain", backend=NATIVE, state=second.state, mirror=mirror)
        other.tools = [LOOKUP, weather.spec]
        third = await provider.send(other)
        assert third.content == "echo: plain [earlier messages: 4]"
        assert third.state is not None and third.state[STATE_KEY] == third.provider_message_id
        assert third.state[TOOLS_KEY] != first.state[TOOLS_KEY]
        seeded = provider_emulator.requests[-1].json
        assert seeded["thread"] == {"type": "create"}
        assert [t["name"] for t in seeded["tools"]] == ["lookup", "weather"]


def test_redacted_thinking_round_trips_and_takes_no_cache_marker() -> None:
    from langswarm_runtime.providers._anthropic_parts import (
        mark_cache,
        parts_from_blocks,
        to_messages,
    )

    blocks = [
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "thinking", "thinking": "t", "signature": "s"},
        {"type": "text", "text": "answer"},
    ]
    text, parts = parts_from_blocks(blocks, model="claude-x")
    assert text == "answer"
    assert parts[0] == ReasoningPart(provider="anthropic", model="claude-x",
                                     data={"redacted": "opaque"})  # fmt: skip
    unsigned = ReasoningPart(text="no signature", provider="anthropic", model="claude-x")
    message = Message(role="assistant", parts=[*parts, unsigned])
    _, [wire] = to_messages([message])
    assert wire["content"] == blocks  # replayed as it came; the unsigned one left out
    marker = {"type": "ephemeral"}
    mark_cache(wire, marker)
    assert [b.get("cache_control") for b in wire["content"]] == [None, None, marker]
    thinking_only = {"role": "assistant", "content": blocks[:2] + [{"type": "tool_use"}]}
    mark_cache(thinking_only, marker)
    assert thinking_only["content"][2]["cache_control"] == marker
