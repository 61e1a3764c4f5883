"""The Cohere adapter through the real ``cohere`` SDK against the loopback emulator: the
provider conformance suite (hybrid only: Cohere keeps no conversations), then Cohere's v2
chat shapes and options."""

from __future__ import annotations

from typing import Any

import pytest

from langswarm_runtime.errors import ConfigError, ProviderBadResponse, ProviderUnavailable
from langswarm_runtime.providers.base import ProviderRequest
from langswarm_runtime.session.models import Message, SessionBackend
from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.testing import ProviderConformance
from langswarm_runtime.testing._provider_rich import PDF, PNG
from langswarm_runtime.testing.emulator import ProviderEmulator, RecordedRequest
from langswarm_runtime.testing.provider_helpers import (
    HISTORY,
    collect_stream,
    content_text,
    make_request,
    provider_turn,
)
from langswarm_runtime.tools.spec import ToolSpec

CHAT = "/cohere/v2/chat"


# --------------------------------------------------------------------------- rich turns

WEATHER = ToolSpec(
    name="weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def rich_request(
    message: Message,
    *,
    turn: list[Message] | None = None,
    tools: list[ToolSpec] | None = None,
    response_format: dict[str, Any] | None = None,
) -> ProviderRequest:
    return ProviderRequest(
        message=message,
        model=None,
        backend=SessionBackend.HYBRID,
        history=list(HISTORY),
        turn=list(turn or []),
        tools=list(tools or []),
        response_format=response_format,
    )


def asking(*calls: ToolCall) -> Message:
    return Message(role="assistant", parts=list(calls))


class TestCohere(ProviderConformance):
    provider_type = "cohere"
    supports_files = False  # Cohere takes no documents in messages
    plugin_module = "langswarm_runtime.providers.cohere"
    sdk_module = "cohere"
    api_key_env = ("CO_API_KEY", "COHERE_API_KEY")
    supports_native = False
    builtin = True
    model = "command-test"
    api_key = "co-test-very-secret-key-0123456789"

    # Adapter bugs, reported: strict xfails, so that the fix is noticed.
    def wire_messages(self, request: RecordedRequest) -> list[tuple[str, str]]:
        return [(m["role"], content_text(m["content"])) for m in request.json["messages"]]

    # ----------------------------------------------------------------------- turns

    async def test_hybrid_sends_system_and_whole_history(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider(temperature=0.3)
        reply = await provider.send(
            make_request(history=HISTORY, system_prompt="Be terse.", max_tokens=40)
        )
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
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider_emulator.cached_tokens = 2
        _, final = await collect_stream(make_provider(), make_request(history=HISTORY))
        assert final.content == "echo: hello there [earlier messages: 2]"
        assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cached_tokens) == (
            6,
            6,
            2,
        )
        assert final.provider_message_id
        assert provider_emulator.requests[0].json["stream"] is True

    @pytest.mark.parametrize(
        ("bad", "why"),
        [
            (
                {"type": "content-delta", "index": 0,
                 "delta": {"message": {"content": {"text": 5}}}},
                "'content-delta' did not match the API schema",
            ),
            ({"type": "content-delta", "index": 0}, "content-delta without text"),
            ({"type": "message-start", "id": "second"}, "out of sequence: after content"),
            (["not", "an", "object"], "not a JSON object with a type"),
        ],
        ids=["invalid", "no_text", "second_start", "not_an_object"],
    )  # fmt: skip
    async def test_stream_event_the_sdk_would_drop_fails_the_turn(
        self, make_provider: Any, monkeypatch: pytest.MonkeyPatch, bad: Any, why: str
    ) -> None:
        self._replace_third_delta(monkeypatch, ("content-delta", bad))
        provider = make_provider()
        if isinstance(bad, dict) and bad.get("delta"):
            # What the SDK's own iterator makes of it: the event is skipped (logged as a
            # warning), and the reply comes out a word short, without an error.
            events = provider.client().chat_stream(
                model="m", messages=[{"role": "user", "content": "hello there"}]
            )
            text = "".join([e.delta.message.content.text async for e in events
                            if e.type == "content-delta"])  # fmt: skip
            assert text == "echo: hello [earlier messages: 0]"
        with pytest.raises(ProviderBadResponse, match=why):
            await collect_stream(provider, make_request())

    async def test_unknown_stream_event_type_is_skipped(
        self, make_provider: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A newer API's event this SDK has no type for: skipped, as the SDK does.
        self._replace_third_delta(monkeypatch, ("x", {"type": "future-event"}), keep=True)
        _, final = await collect_stream(make_provider(), make_request())
        assert final.content == "echo: hello there [earlier messages: 0]"

    @staticmethod
    def _replace_third_delta(
        monkeypatch: pytest.MonkeyPatch, event: tuple[str, Any], *, keep: bool = False
    ) -> None:
        """Make the emulator send ``event`` instead of (or, ``keep``, before) the reply's
        third content delta."""
        from langswarm_runtime.testing.emulator import cohere as wire

        real = wire._events

        def spoiled(*args: Any) -> Any:
            events = list(real(*args))
            deltas = [i for i, (kind, _) in enumerate(events) if kind == "content-delta"]
            at = deltas[2]
            return [*events[:at], event, *events[at + (0 if keep else 1) :]]

        monkeypatch.setattr(wire, "_events", spoiled)

    async def test_cached_tokens_extra_and_request_options(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider_emulator.cached_tokens = 3
        provider = make_provider(max_tokens=77, extra={"seed": 7})
        reply = await provider.send(make_request(temperature=0.9, system_prompt="one two three"))
        assert reply.usage.cached_tokens == 3
        body = provider_emulator.requests[0].json
        assert (body["max_tokens"], body["temperature"], body["seed"]) == (77, 0.9, 7)

    async def test_summary_goes_as_system_message(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        reply = await make_provider().send(
            make_request(history=[Message(role="summary", content="we met"), *HISTORY])
        )
        assert reply.content.endswith("[earlier messages: 2]")  # the note is not a chat turn
        first = provider_emulator.requests[0].json["messages"][0]
        assert first["role"] == "system" and "we met" in first["content"]

    async def test_unknown_extra_option_is_config_error(self, make_provider: Any) -> None:
        with pytest.raises(ConfigError, match="not_a_cohere_option"):
            await make_provider(extra={"not_a_cohere_option": 1}).send(make_request())

    async def test_base_url_version_suffix_dropped(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        await make_provider(base_url=provider_emulator.url("cohere") + "/v2/").send(make_request())
        assert provider_emulator.requests[0].path == CHAT

    async def test_fault_header_via_request_options(self, make_provider: Any) -> None:
        provider = make_provider(
            extra={"request_options": {"additional_headers": {"x-emulator-fault": "503"}}}
        )
        with pytest.raises(ProviderUnavailable):
            await provider.send(make_request())

    async def test_default_model(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        await make_provider(model=None).send(make_request())
        assert provider_emulator.requests[0].json["model"] == "command-a-03-2025"

    # ----------------------------------------------------------------------- rich turns

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_tool_calls_and_results_on_the_wire(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider()
        user = Message(role="user", content='call weather {"city": "Rome"}\ncall weather {}')
        reply = await provider_turn(provider, rich_request(user, tools=[WEATHER]), streamed)
        assert reply.content == ""
        calls = [p for p in reply.parts if isinstance(p, ToolCall)]
        assert [(c.name, c.arguments) for c in calls] == [("weather", {"city": "Rome"}),
                                                          ("weather", {})]  # fmt: skip
        assert reply.parts == calls  # no tool plan: reasoning was not asked for
        body = provider_emulator.requests[0].json
        assert body["tools"] == [
            {"type": "function", "function": {"name": "weather",
                                              "description": "Current weather for a city.",
                                              "parameters": WEATHER.parameters}}
        ]  # fmt: skip

        # The results, given in two tool messages in the opposite order, go back in call order.
        provider_emulator.clear()
        results = [
            Message(
                role="tool", parts=[ToolResult(call_id=calls[1].id, content="b", name="weather")]
            ),
            Message(
                role="tool", parts=[ToolResult(call_id=calls[0].id, content="a", name="weather")]
            ),
        ]
        request = rich_request(results[1], turn=[user, asking(*calls), results[0]], tools=[WEATHER])
        reply = await provider_turn(provider, request, streamed)
        assert reply.content == "tool weather returned a; tool weather returned b"
        assert reply.parts == []
        sent = provider_emulator.requests[0].json["messages"]
        assert sent[3] == {
            "role": "assistant",
            "tool_calls": [
                {"id": calls[0].id, "type": "function",
                 "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
                {"id": calls[1].id, "type": "function",
                 "function": {"name": "weather", "arguments": "{}"}},
            ],
        }  # fmt: skip
        assert sent[4:] == [
            {"role": "tool", "tool_call_id": calls[0].id, "content": "a"},
            {"role": "tool", "tool_call_id": calls[1].id, "content": "b"},
        ]

    async def test_result_of_an_unknown_call_is_refused_by_the_wire(
        self,
        make_provider: Any,
    ) -> None:
        # The emulator checks what the real API checks: a result must answer a call.
        turn = [Message(role="user", content="x"), asking(ToolCall(id="c1", name="weather"))]
        stray = Message(role="tool", parts=[ToolResult(call_id="other", content="?")])
        with pytest.raises(ProviderBadResponse, match="answers no tool call"):
            await make_provider().send(rich_request(stray, turn=turn, tools=[WEATHER]))

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_thinking_and_tool_plan_kept_and_replayed(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider(extra={"thinking": {"type": "enabled", "token_budget": 100}})
        user = Message(role="user", content='call weather {"city": "Oslo"}')
        reply = await provider_turn(provider, rich_request(user, tools=[WEATHER]), streamed)
        thought, plan, call = reply.parts
        assert isinstance(thought, ReasoningPart) and thought.text.startswith("thought about: call")
        assert (thought.provider, thought.model, thought.data) == ("cohere", "command-test", None)
        assert isinstance(plan, ReasoningPart) and plan.text == "I will call weather."
        assert plan.data == {"kind": "tool_plan"}
        assert isinstance(call, ToolCall) and call.arguments == {"city": "Oslo"}

        provider_emulator.clear()
        answered = Message(role="tool", parts=[ToolResult(call_id=call.id, content="cold")])
        stored = Message(role="assistant", parts=reply.parts)
        await provider_turn(
            provider, rich_request(answered, turn=[user, stored], tools=[WEATHER]), streamed
        )
        sent = provider_emulator.requests[0].json["messages"][3]
        assert sent["tool_plan"] == "I will call weather."
        assert sent["content"] == [{"type": "thinking", "thinking": thought.text}]
        assert sent["tool_calls"][0]["id"] == call.id

    async def test_image_goes_as_a_data_url_and_documents_as_text(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        image = ImagePart.from_bytes(PNG, "image/png")
        notes = FilePart.from_bytes(b"some notes", "text/plain", name="n.txt")
        pdf = FilePart.from_bytes(PDF, "application/pdf", name="a.pdf")
        message = Message(role="user", parts=[TextPart(text="look"), image, notes, pdf])
        reply = await make_provider().send(rich_request(message))
        assert f"[image/png {len(PNG)} bytes]" in reply.content
        content = provider_emulator.requests[0].json["messages"][-1]["content"]
        assert content[1]["type"] == "image_url"
        assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
        assert content[2] == {"type": "text", "text": "[file n.txt]\nsome notes"}
        assert content[3] == {
            "type": "text",
            "text": f"[file a.pdf (application/pdf, {len(PDF)} bytes, not sent)]",
        }

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_structured_output_uses_json_object_and_offers_no_tools(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        schema = {"type": "object", "properties": {"name": {"type": "string"}}}
        fmt = {"name": "Person", "schema": schema, "strict": True}
        request = rich_request(Message(role="user", content="Ada"), tools=[WEATHER],
                               response_format=fmt)  # fmt: skip
        reply = await provider_turn(make_provider(), request, streamed)
        assert reply.content == '{"name":"Ada"}'
        body = provider_emulator.requests[0].json
        assert body["response_format"] == {"type": "json_object", "json_schema": schema}
        assert "tools" not in body  # Cohere takes no tools with a response format
