"""The OpenAI adapter through the real ``openai`` SDK against the loopback emulator: the
provider conformance suite, then what only OpenAI has (Responses and Conversations wire
shapes, the chat-completions API, options)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from langswarm_runtime.errors import ProviderBadResponse, ProviderUnavailable
from langswarm_runtime.providers._model_rules import signature_of
from langswarm_runtime.providers.base import ProviderReply, ProviderRequest
from langswarm_runtime.providers.openai import STATE_KEY, as_is
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
from langswarm_runtime.testing._provider_base import ENTRY
from langswarm_runtime.testing._provider_rich import PDF, PNG, weather
from langswarm_runtime.testing.emulator import ProviderEmulator, RecordedRequest
from langswarm_runtime.testing.provider_helpers import (
    HISTORY,
    collect_stream,
    content_text,
    make_request,
    provider_turn,
)
from langswarm_runtime.tools.spec import ToolSpec

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

    def wire_messages(self, request: RecordedRequest) -> list[tuple[str, str]]:
        body = request.json
        items = body.get("input", body.get("messages", []))
        roles = {"developer": "system"}
        return [
            (roles.get(i["role"], i["role"]), content_text(i["content"]))
            for i in items
            if "role" in i  # tool calls and their outputs are items without a role
        ]

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

    # ------------------------------------------------------------------- rich turns

    async def test_function_call_and_output_pair_on_the_wire(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider()
        first = _rich_request('call lookup {"key": "answer"}', tools=[LOOKUP])
        reply = await provider.send(first)
        [call] = reply.parts
        assert isinstance(call, ToolCall) and call.name == "lookup"
        assert (reply.content, call.arguments) == ("", {"key": "answer"})
        assert call.id.startswith("call_")
        sent = provider_emulator.requests[0].json
        assert sent["tools"] == [
            {"type": "function", "name": "lookup", "description": LOOKUP.description,
             "parameters": LOOKUP.parameters, "strict": False}
        ]  # fmt: skip
        asking = Message(role="assistant", parts=[call])
        results = Message(role="tool", parts=[ToolResult(call_id=call.id, content="42")])
        second = _rich_request(tools=[LOOKUP], turn=[first.message, asking], message=results)
        reply = await provider.send(second)
        assert reply.content == "tool lookup returned 42"
        assert provider_emulator.requests[1].json["input"] == [
            {"role": "user", "content": 'call lookup {"key": "answer"}'},
            {"type": "function_call", "call_id": call.id, "name": "lookup",
             "arguments": '{"key":"answer"}'},
            {"type": "function_call_output", "call_id": call.id, "output": "42"},
        ]  # fmt: skip

        # An output without its call, or a call without its output, is refused, as by
        # the real API: the emulator checks the pairing the adapter sends.
        orphan = _rich_request(tools=[LOOKUP], turn=[first.message], message=results)
        with pytest.raises(ProviderBadResponse, match="No tool call found"):
            await provider.send(orphan)
        unanswered = _rich_request("next", tools=[LOOKUP], turn=[first.message, asking])
        with pytest.raises(ProviderBadResponse, match="No tool output found"):
            await provider.send(unanswered)

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_parallel_calls_come_back_in_order(
        self, make_provider: Any, streamed: bool
    ) -> None:
        text = 'call lookup {"key": "a"}\ncall lookup {"key": "b"}'
        reply = await provider_turn(make_provider(), _rich_request(text, tools=[LOOKUP]), streamed)
        assert [(p.name, p.arguments) for p in reply.parts if isinstance(p, ToolCall)] == [
            ("lookup", {"key": "a"}), ("lookup", {"key": "b"}),
        ]  # fmt: skip
        assert reply.content == ""

    async def test_media_go_as_input_image_and_input_file(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        image = ImagePart.from_bytes(PNG, "image/png")
        doc = FilePart.from_bytes(PDF, "application/pdf", name="a.pdf")
        linked = ImagePart.from_url("https://example.test/cat.jpg")
        message = Message(role="user", parts=[TextPart(text="What is this?"), image, doc, linked])
        reply = await make_provider().send(_rich_request(message=message))
        assert reply.content == (
            f"echo: What is this? [image/png {len(PNG)} bytes] [application/pdf {len(PDF)} "
            "bytes] [image/jpeg https://example.test/cat.jpg] [earlier messages: 0]"
        )
        [item] = provider_emulator.requests[0].json["input"]
        png = base64.b64encode(PNG).decode()
        assert item == {"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{png}",
             "detail": "auto"},
            {"type": "input_file", "filename": "a.pdf",
             "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode()},
            {"type": "input_image", "image_url": "https://example.test/cat.jpg",
             "detail": "auto"},
        ]}  # fmt: skip

    @pytest.mark.parametrize("api", ["responses", "chat_completions"])
    async def test_sdk_transform_leaves_the_shaped_lists_as_they_are(
        self, make_provider: Any, provider_emulator: ProviderEmulator, api: str
    ) -> None:
        """The adapter sends ``input`` / ``messages`` as they are (``extra_body``),
        skipping the SDK's transform of its typed parameters: only right while that
        transform changes nothing in them. Checked on every kind of item the
        translators make; an SDK that starts changing one fails here."""
        from openai._utils import maybe_transform
        from openai.types.chat import completion_create_params
        from openai.types.responses import response_create_params

        provider = make_provider(api=api, reasoning={"effort": "low"} if api == "responses"
                                 else None, extra={"extra_body": {"top_p": 0.5}})  # fmt: skip
        call = ToolCall(id="call_1", name="lookup", arguments={"key": "k"})
        other = ToolCall(id="call_2", name="lookup", arguments={"key": "j"})
        thought = ReasoningPart(text="hm", provider="openai", model="gpt-test",
                                data={"id": "rs_1", "encrypted_content": signature_of("hm")})
        history = [
            Message(role="summary", content="earlier: a cat"),
            Message(role="user", parts=[TextPart(text="look"), ImagePart.from_bytes(
                PNG, "image/png"), ImagePart.from_url("https://example.test/cat.jpg"),
                FilePart.from_bytes(PDF, "application/pdf", name="a.pdf")]),
            Message(role="assistant", parts=[thought, TextPart(text="let me see"), call,
                                             other]),
            Message(role="tool", parts=[ToolResult(call_id="call_1", content="v"),
                                        ToolResult(call_id="call_2", content="x",
                                                   is_error=True)]),
            Message(role="assistant", content="a cat"),
        ]  # fmt: skip
        request = _rich_request("and now?", tools=[LOOKUP])
        request.history = history
        request.system_prompt = "be brief"
        if api == "responses":
            params = provider._hybrid(request)
            typed = response_create_params.ResponseCreateParamsNonStreaming
        else:
            params = as_is(provider._options(request, chat=True),
                           messages=provider._chat_messages(request))  # fmt: skip
            typed = completion_create_params.CompletionCreateParamsNonStreaming
        body = {k: v for k, v in params.items() if k != "extra_body"} | params["extra_body"]
        key = "input" if api == "responses" else "messages"
        assert len(body[key]) >= 6 and body["top_p"] == 0.5  # the caller's extra_body kept
        assert maybe_transform(body, typed) == body
        if api == "responses":  # the same items seed a native conversation
            from openai.types.conversations import conversation_create_params

            seed = {"items": body["input"]}
            assert maybe_transform(seed, conversation_create_params.ConversationCreateParams) == seed
        # And on the wire: the lists as shaped, the caller's extra_body beside them.
        await provider.send(request)
        sent = provider_emulator.requests[-1].json
        assert sent["top_p"] == 0.5 and sent[key][-1]["content"] == "and now?"

    async def test_structured_output_goes_as_text_format(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        schema = {"type": "object", "properties": {"customer": {"type": "string"}},
                  "required": ["customer"]}  # fmt: skip
        provider = make_provider()
        invoice = {"name": "Invoice", "schema": schema, "strict": True}
        reply = await provider.send(_rich_request("ACME", response_format=invoice))
        assert reply.content == '{"customer":"ACME"}'
        assert provider_emulator.requests[0].json["text"] == {"format": {
            "type": "json_schema", "name": "Invoice", "strict": True,
            "schema": {**schema, "additionalProperties": False},  # strict form
        }}  # fmt: skip
        # A property it does not require: strict mode cannot take it, so not strict.
        loose = {**schema, "properties": {**schema["properties"], "note": {"type": "string"}}}
        loose_format = {"name": "my invoice!", "schema": loose, "strict": True}
        await provider.send(_rich_request("ACME", response_format=loose_format))
        fmt = provider_emulator.requests[1].json["text"]["format"]
        assert (fmt["name"], fmt["strict"], fmt["schema"]) == ("my_invoice_", False, loose)

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_reasoning_comes_back_with_its_encrypted_content(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider(reasoning={"effort": "low", "summary": "auto"})
        first = _rich_request('call lookup {"key": "k"}', tools=[LOOKUP])
        reply = await provider_turn(provider, first, streamed)
        body = provider_emulator.requests[0].json
        assert body["reasoning"] == {"effort": "low", "summary": "auto"}
        assert body["include"] == ["reasoning.encrypted_content"]
        thought, call = reply.parts
        assert isinstance(thought, ReasoningPart) and isinstance(call, ToolCall)
        assert thought.text == 'thought about: call lookup {"key": "k"}'
        assert (thought.provider, thought.model) == ("openai", "gpt-test")
        assert thought.data is not None
        assert thought.data["encrypted_content"] == signature_of(thought.text)
        assert thought.data["id"].startswith("rs_")

        # Replayed ahead of the call it led to, as OpenAI wants it.
        asking = Message(role="assistant", parts=[thought, call])
        results = Message(role="tool", parts=[ToolResult(call_id=call.id, content="v")])
        second = _rich_request(tools=[LOOKUP], turn=[first.message, asking], message=results)
        reply = await provider_turn(provider, second, streamed)
        assert reply.content == "tool lookup returned v"
        kinds = [i.get("type", "message") for i in provider_emulator.requests[1].json["input"]]
        assert kinds == ["message", "reasoning", "function_call", "function_call_output"]

        # The emulator checks the encrypted content it gave: a forged one is refused.
        forged = thought.model_copy(update={"data": {**thought.data, "encrypted_content": "x"}})
        bad = Message(role="assistant", parts=[forged, call])
        with pytest.raises(ProviderBadResponse, match="could not be verified"):
            await provider.send(
                _rich_request(tools=[LOOKUP], turn=[first.message, bad], message=results)
            )

    async def test_reasoning_is_replayed_only_to_its_model_family(
        self, manager: Any, provider_emulator: ProviderEmulator
    ) -> None:
        def replayed() -> list[str]:
            items = provider_emulator.requests[-1].json["input"]
            return [i["id"] for i in items if i.get("type") == "reasoning"]

        async with manager(reasoning={"effort": "low"}) as mgr:
            session = await mgr.create_session(user_id="u")
            first = await session.send_message("one")
            [thought] = [p for p in first.parts if isinstance(p, ReasoningPart)]
            assert first.content == "echo: one [earlier messages: 0]"
            assert thought.data is not None
            await session.send_message("two")
            assert replayed() == [thought.data["id"]]
            await session.switch_provider(ENTRY, model="gpt-test-2025-08-07")  # same family
            await session.send_message("three")
            assert len(replayed()) == 2  # turns one and two
            await session.switch_provider(ENTRY, model="gpt-test-mini")  # another family
            reply = await session.send_message("four")
            assert replayed() == []
            assert reply.content == "echo: four [earlier messages: 6]"

    async def test_native_conversation_holds_calls_and_reseeds_mid_turn(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider()
        first = _rich_request('call lookup {"key": "k"}', tools=[LOOKUP], backend=NATIVE)
        reply = await provider.send(first)
        [call] = reply.parts
        assert isinstance(call, ToolCall) and reply.state is not None
        conv_id = reply.state[STATE_KEY]
        asking = Message(role="assistant", parts=[call])
        results = Message(role="tool", parts=[ToolResult(call_id=call.id, content="42")])
        second = _rich_request(tools=[LOOKUP], turn=[first.message, asking], message=results,
                               backend=NATIVE, state=reply.state)  # fmt: skip
        provider_emulator.clear()
        reply = await provider.send(second)
        assert reply.content == "tool lookup returned 42"
        [turn] = provider_emulator.requests  # only the outputs: the conversation has the call
        assert turn.json["input"] == [
            {"type": "function_call_output", "call_id": call.id, "output": "42"}
        ]
        items = provider_emulator.provider_state("openai")["conversations"][conv_id]["items"]
        assert [i["type"] for i in items] == [
            "message",
            "function_call",
            "function_call_output",
            "message",
        ]

        # The conversation is lost between the call and its results: the new one is
        # seeded with the turn so far (the user message and the call), then the outputs.
        provider_emulator.forget_conversations()
        provider_emulator.clear()
        reply = await provider.send(second)
        assert reply.content == "tool lookup returned 42"
        assert reply.state and reply.state[STATE_KEY] != conv_id
        _, seed, again = provider_emulator.requests
        assert [i.get("type", "message") for i in seed.json["items"]] == [
            "message",
            "function_call",
        ]
        assert again.json["input"] == turn.json["input"]

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_chat_completions_tool_loop(
        self, manager: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        async with manager(api="chat_completions") as mgr:
            session = await mgr.create_session(user_id="u", tools=[weather])
            text = 'call weather {"city": "Rome"}\ncall weather {"city": "Oslo"}'
            reply = await _session_turn(session, text, streamed)
            assert reply.content == (
                "tool weather returned Sunny in Rome; tool weather returned Sunny in Oslo"
            )
            history = await session.get_history()
        asking, second = provider_emulator.requests
        assert asking.path == second.path == "/openai/v1/chat/completions"
        assert asking.json["tools"] == [
            {"type": "function", "function": {"name": "weather",
             "description": weather.spec.description, "parameters": weather.spec.parameters}}
        ]  # fmt: skip
        calls = history[1].tool_calls
        assert [c.arguments for c in calls] == [{"city": "Rome"}, {"city": "Oslo"}]
        assert second.json["messages"][1:] == [
            {"role": "assistant", "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": "weather", "arguments": json.dumps(
                     c.arguments, separators=(",", ":"))}}
                for c in calls
            ]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny in Rome"},
            {"role": "tool", "tool_call_id": calls[1].id, "content": "Sunny in Oslo"},
        ]  # fmt: skip

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_chat_completions_media_and_structured_output(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider(api="chat_completions")
        image = ImagePart.from_bytes(PNG, "image/png")
        doc = FilePart.from_bytes(PDF, "application/pdf", name="a.pdf")
        message = Message(role="user", parts=[TextPart(text="What?"), image, doc])
        reply = await provider_turn(provider, _rich_request(message=message), streamed)
        assert f"[image/png {len(PNG)} bytes] [application/pdf {len(PDF)} bytes]" in (reply.content)
        [user] = provider_emulator.requests[0].json["messages"]
        assert [p["type"] for p in user["content"]] == ["text", "image_url", "file"]
        schema = {"type": "object", "properties": {"total": {"type": "integer"}},
                  "required": ["total"]}  # fmt: skip
        total = {"name": "Sum", "schema": schema, "strict": True}
        request = _rich_request("one two", response_format=total)
        reply = await provider_turn(provider, request, streamed)
        assert reply.content == '{"total":2}'
        assert provider_emulator.requests[1].json["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "Sum", "strict": True,
                            "schema": {**schema, "additionalProperties": False}},
        }  # fmt: skip


LOOKUP = ToolSpec(
    name="lookup",
    description="Look a key up.",
    parameters={"type": "object", "properties": {"key": {"type": "string"}},
                "required": ["key"]},
)  # fmt: skip


def _rich_request(
    text: str = "",
    *,
    message: Message | None = None,
    turn: list[Message] | None = None,
    tools: list[ToolSpec] | None = None,
    response_format: dict[str, Any] | None = None,
    backend: SessionBackend = SessionBackend.HYBRID,
    state: dict[str, Any] | None = None,
) -> ProviderRequest:
    """A request as the session builds it for one step of a rich turn."""
    request = make_request(text or "unused", backend=backend, state=state)
    if message is not None:
        request.message = message
    request.turn = list(turn or [])
    request.tools = list(tools or [])
    request.response_format = response_format
    return request


async def _session_turn(session: Any, text: str, streamed: bool) -> Any:
    if not streamed:
        return await session.send_message(text)
    final = None
    async for event in session.stream_events(text):
        if event.type == "done":
            final = event.message
    return final
