"""The Mistral adapter through the real ``mistralai`` SDK against the loopback emulator:
the provider conformance suite, then what only Mistral has (chat completions for hybrid,
the Conversations API for native, the retry-after cap, options)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import SessionBackend
from langswarm_runtime.errors import ConfigError, ProviderBadResponse, ProviderUnavailable
from langswarm_runtime.providers.base import ProviderRequest
from langswarm_runtime.providers.mistral import STATE_KEY, TOOLS_KEY, MistralProvider
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
from langswarm_runtime.testing._provider_rich import PDF, PNG, weather
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
HYBRID = SessionBackend.HYBRID
NINE = re.compile(r"[a-zA-Z0-9]{9}")
WEATHER = weather.spec
OTHER = WEATHER.model_copy(update={"name": "forecast"})


def rich_request(
    message: Message,
    *,
    backend: SessionBackend = HYBRID,
    turn: list[Message] | None = None,
    tools: list[Any] | None = None,
    response_format: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    mirror: list[Message] | None = None,
) -> ProviderRequest:
    seed = list(mirror if mirror is not None else HISTORY)

    async def load_history() -> list[Message]:
        return list(seed)

    return ProviderRequest(
        message=message,
        model=None,
        backend=backend,
        history=list(HISTORY) if backend is HYBRID else [],
        state=dict(state or {}),
        load_history=load_history,
        turn=list(turn or []),
        tools=list(tools or []),
        response_format=response_format,
    )


def results(*pairs: tuple[str, str]) -> Message:
    parts: list[Any] = [ToolResult(call_id=i, content=c, name="weather") for i, c in pairs]
    return Message(role="tool", parts=parts)


class TestMistral(ProviderConformance):
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

    # ----------------------------------------------------------------------- rich turns

    def test_call_ids_are_nine_letters_and_digits(self, make_provider: Any) -> None:
        provider: MistralProvider = make_provider()
        assert provider.call_id_pattern == r"^[a-zA-Z0-9]{9}$"
        assert provider.wire_call_id("abcDEF123") == "abcDEF123"  # already fits: kept
        new = provider.wire_call_id("toolu_01A09q90qw90lq917835lq9")
        assert NINE.fullmatch(new) and new == provider.wire_call_id("toolu_01A09q90qw90lq917835lq9")

    async def test_switch_brings_foreign_call_ids_in_mistral_form(
        self,
        tmp_path: Path,
        provider_config: dict[str, Any],
        provider_emulator: ProviderEmulator,
        backend: SessionBackend,
    ) -> None:
        """A tool turn made by another provider (ids ``call_...``) reaches Mistral with
        9-character ids, call and result alike; the stored history keeps the originals.
        The emulator refuses other ids, as the real API does."""
        async with self._two_entries(tmp_path, provider_config) as mgr:
            session = await mgr.create_session(user_id="u", provider="echo", tools=[weather])
            reply = await session.send_message('call weather {"city": "Paris"}')
            assert reply.content == "tool weather returned Sunny in Paris"
            [original] = (await session.get_history())[1].tool_calls
            assert not NINE.fullmatch(original.id)
            await session.switch_provider("subject", backend=backend)
            reply = await session.send_message("and now?")
            assert reply.content.startswith("echo: and now?")
            history = await session.get_history()
        assert history[1].tool_calls == [original]
        body = provider_emulator.requests[-1].json
        if backend is HYBRID:
            [call] = body["messages"][1]["tool_calls"]
            [result] = [m for m in body["messages"] if m["role"] == "tool"]
            assert NINE.fullmatch(call["id"]) and result["tool_call_id"] == call["id"]
            assert result["name"] == "weather"
        else:
            call, result = (e for e in body["inputs"] if e["type"].startswith("function."))
            assert (call["type"], result["type"]) == ("function.call", "function.result")
            assert NINE.fullmatch(call["tool_call_id"])
            assert result["tool_call_id"] == call["tool_call_id"]
            assert body["tools"][0]["function"]["name"] == "weather"

    @staticmethod
    @asynccontextmanager
    async def _two_entries(tmp_path: Path, subject: dict[str, Any]) -> AsyncIterator[Any]:
        from langswarm_runtime.session.manager import SessionManager

        doc = {
            "version": 1,
            "storage": {"type": "sqlite", "path": str(tmp_path / "s.db")},
            "defaults": {"provider": "echo"},
            "providers": {"echo": {"type": "echo"},
                          "subject": {**subject, "max_retries": 0, "timeout": 5}},
        }  # fmt: skip
        path = tmp_path / "swarm.yaml"
        path.write_text(json.dumps(doc), encoding="utf-8")
        async with SessionManager.from_config(path) as mgr:
            yield mgr

    async def test_foreign_call_id_is_refused_by_the_wire(self, make_provider: Any) -> None:
        turn = [
            Message(role="user", content="x"),
            Message(role="assistant", parts=[ToolCall(id="call_0123456789", name="w")]),
        ]
        with pytest.raises(ProviderBadResponse, match="must be a-z, A-Z, 0-9"):
            await make_provider().send(rich_request(results(("call_0123456789", "1")),
                                                    turn=turn, tools=[WEATHER]))  # fmt: skip

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_hybrid_tool_turn_on_the_wire(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider()
        user = Message(role="user", content='call weather {"city": "Rome"}\ncall weather {}')
        reply = await provider_turn(provider, rich_request(user, tools=[WEATHER]), streamed)
        calls = [p for p in reply.parts if isinstance(p, ToolCall)]
        assert reply.parts == calls and reply.content == ""
        assert [c.arguments for c in calls] == [{"city": "Rome"}, {}]
        assert all(NINE.fullmatch(c.id) for c in calls) and calls[0].id != calls[1].id
        body = provider_emulator.requests[0].json
        assert body["tools"] == [{"type": "function", "function": {
            "name": "weather", "description": WEATHER.description,
            "parameters": WEATHER.parameters}}]  # fmt: skip

        provider_emulator.clear()
        asking = Message(role="assistant", parts=list(calls))
        first, second = results((calls[1].id, "b")), results((calls[0].id, "a"))
        request = rich_request(second, turn=[user, asking, first], tools=[WEATHER])
        reply = await provider_turn(provider, request, streamed)
        assert reply.content == "tool weather returned a; tool weather returned b"
        sent = provider_emulator.requests[0].json["messages"]
        assert sent[3]["tool_calls"][0] == {
            "id": calls[0].id, "type": "function", "index": 0,
            "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
        }  # fmt: skip
        assert sent[4:] == [  # in call order, with the tool's name
            {"role": "tool", "tool_call_id": calls[0].id, "name": "weather", "content": "a"},
            {"role": "tool", "tool_call_id": calls[1].id, "name": "weather", "content": "b"},
        ]

    async def test_image_and_document_chunks(
        self, make_provider: Any, provider_emulator: ProviderEmulator, backend: SessionBackend
    ) -> None:
        image = ImagePart.from_bytes(PNG, "image/png")
        doc = FilePart.from_bytes(PDF, "application/pdf", name="a.pdf")
        message = Message(role="user", parts=[TextPart(text="look"), image, doc])
        reply = await make_provider().send(rich_request(message, backend=backend))
        assert f"[image/png {len(PNG)} bytes] [application/pdf {len(PDF)} bytes]" in reply.content
        body = provider_emulator.requests[0].json
        content = (body["messages"] if backend is HYBRID else body["inputs"])[-1]["content"]
        assert content[0] == {"type": "text", "text": "look"}
        assert content[1]["type"] == "image_url"
        assert content[1]["image_url"].startswith("data:image/png;base64,iVBOR")
        assert content[2]["type"] == "document_url" and content[2]["document_name"] == "a.pdf"
        assert content[2]["document_url"].startswith("data:application/pdf;base64,")

    async def test_structured_output_is_json_schema_mode(
        self, make_provider: Any, provider_emulator: ProviderEmulator, backend: SessionBackend
    ) -> None:
        schema = {"type": "object", "properties": {"name": {"type": "string"}}}
        fmt = {"name": "Person", "schema": schema, "strict": True}
        request = rich_request(Message(role="user", content="Ada"), backend=backend,
                               response_format=fmt)  # fmt: skip
        reply = await make_provider().send(request)
        assert reply.content == '{"name":"Ada"}'
        body = provider_emulator.requests[0].json
        sent = body["response_format"] if backend is HYBRID else (
            body["completion_args"]["response_format"])  # fmt: skip
        assert sent == {"type": "json_schema", "json_schema": fmt}

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_native_tool_loop_uses_function_entries(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider()
        user = Message(role="user", content='call weather {"city": "Oslo"}')
        reply = await provider_turn(
            provider, rich_request(user, backend=NATIVE, tools=[WEATHER]), streamed
        )
        [call] = reply.parts
        assert isinstance(call, ToolCall) and NINE.fullmatch(call.id)
        assert call.arguments == {"city": "Oslo"}
        assert reply.state and reply.state[TOOLS_KEY]
        start = provider_emulator.requests[0].json
        assert start["tools"][0]["function"]["name"] == "weather"

        provider_emulator.clear()
        asking = Message(role="assistant", parts=[call])
        request = rich_request(results((call.id, "cold")), backend=NATIVE, turn=[user, asking],
                               tools=[WEATHER], state=reply.state)  # fmt: skip
        final = await provider_turn(provider, request, streamed)
        assert final.content == "tool weather returned cold"
        assert final.state == reply.state  # the same conversation
        [append] = provider_emulator.requests
        assert append.path == f"{CONVS}/{reply.state[STATE_KEY]}"
        assert append.json["inputs"] == [
            {"object": "entry", "type": "function.result", "tool_call_id": call.id,
             "result": "cold"}
        ]  # fmt: skip

    async def test_native_turn_with_other_tools_starts_a_new_conversation(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider()
        first = await provider.send(rich_request(Message(role="user", content="hi"),
                                                 backend=NATIVE, tools=[WEATHER]))  # fmt: skip
        assert first.state is not None
        provider_emulator.clear()
        second = Message(role="user", content="call forecast {}")
        again = await provider.send(
            rich_request(second, backend=NATIVE, tools=[OTHER], state=first.state)
        )
        [call] = again.parts
        assert isinstance(call, ToolCall) and call.name == "forecast"  # the new tool is known
        assert again.state and again.state[STATE_KEY] != first.state[STATE_KEY]
        assert [r.path for r in provider_emulator.requests] == [CONVS]  # started, seeded
        assert provider_emulator.requests[0].json["tools"][0]["function"]["name"] == "forecast"

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_thinking_kept_with_its_signature_and_replayed(
        self,
        make_provider: Any,
        provider_emulator: ProviderEmulator,
        backend: SessionBackend,
        streamed: bool,
    ) -> None:
        provider = make_provider(extra={"reasoning_effort": "high"})
        user = Message(role="user", content="ponder")
        reply = await provider_turn(provider, rich_request(user, backend=backend), streamed)
        assert reply.content == "echo: ponder [earlier messages: 2]"
        thought, text = reply.parts
        assert isinstance(thought, ReasoningPart) and thought.text == "thought about: ponder"
        assert (thought.provider, thought.model) == ("mistral", "mistral-test")
        assert thought.data and thought.data["signature"].startswith("sig-")
        assert text == TextPart(text=reply.content)
        if backend is NATIVE:
            return  # the conversation holds it server-side
        answered = Message(role="assistant", parts=reply.parts)
        provider_emulator.clear()
        next_turn = rich_request(Message(role="user", content="more"), turn=[user, answered])
        await provider_turn(provider, next_turn, streamed)
        sent = provider_emulator.requests[0].json["messages"][3]["content"]
        assert sent[0]["type"] == "thinking" and sent[0]["signature"] == thought.data["signature"]
        forged = ReasoningPart(text=thought.text, provider="mistral", data={"signature": "x"})
        bad = Message(role="assistant", parts=[forged, text])
        with pytest.raises(ProviderBadResponse, match="signature"):
            await provider.send(rich_request(Message(role="user", content="m"), turn=[user, bad]))


def _every_kind_of_message() -> list[dict[str, Any]]:
    """The chat translator's wire dicts for every kind of message it makes."""
    from langswarm_runtime.providers._mistral_parts import chat_arguments

    call = ToolCall(id="abcdefghi", name="weather", arguments={"city": "Oslo"})
    thought = ReasoningPart(text="hm", provider="mistral", model="mistral-test",
                            data={"signature": "s1"})
    conversation = [
        Message(role="summary", content="earlier: a cat"),
        Message(role="user", content="hello"),
        Message(role="user", parts=[TextPart(text="look"), ImagePart.from_bytes(PNG, "image/png"),
                                    FilePart.from_bytes(PDF, "application/pdf", name="a.pdf")]),
        Message(role="assistant", parts=[thought, TextPart(text="let me see"), call]),
        Message(role="tool", parts=[ToolResult(call_id="abcdefghi", content="sunny",
                                               name="weather")]),
        Message(role="assistant", content="sunny in Oslo"),
    ]  # fmt: skip
    messages: list[dict[str, Any]] = chat_arguments("be brief", conversation, [WEATHER], None)[
        "messages"
    ]
    return messages


def test_typed_messages_are_what_the_sdk_makes_of_the_dicts() -> None:
    """The adapter hands the SDK its own message models, made from the wire dicts with
    the SDK's own type: they must equal what the SDK makes of the dicts itself, for
    every kind of message (and serialize to the same JSON)."""
    from mistralai.client import models
    from mistralai.client.utils.serializers import get_pydantic_model

    from langswarm_runtime.providers.mistral import typed_messages

    messages = _every_kind_of_message()
    assert {m["role"] for m in messages} == {"system", "user", "assistant", "tool"}
    ours = typed_messages(messages)
    sdk = get_pydantic_model(messages, list[models.ChatCompletionRequestMessage])
    assert ours == sdk
    dump = [m.model_dump(by_alias=True, mode="json") for m in ours]
    assert dump == [m.model_dump(by_alias=True, mode="json") for m in sdk]


def test_typed_messages_are_made_once_per_kept_dict_and_never_for_media() -> None:
    from langswarm_runtime.providers import mistral

    messages = _every_kind_of_message()
    first, again = mistral.typed_messages(messages), mistral.typed_messages(messages)
    media = [i for i, m in enumerate(messages) if isinstance(m["content"], list)
             and any(c.get("type") == "image_url" for c in m["content"])]  # fmt: skip
    assert len(media) == 1
    for i, (a, b) in enumerate(zip(first, again, strict=True)):
        assert (a is b) == (i not in media)  # the same dict: the same model, but media
    assert all(m in mistral._TYPED for i, m in enumerate(messages) if i not in media)
    assert not any(m in mistral._TYPED for i, m in enumerate(messages) if i in media)
    copy = dict(messages[1])
    assert mistral.typed_messages([copy])[0] is not first[1]  # another dict: made anew


async def test_a_message_the_sdk_type_refuses_is_a_provider_error(
    provider_emulator: ProviderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langswarm_runtime.errors import ProviderError
    from langswarm_runtime.providers import mistral

    def bad(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": 5}]}

    monkeypatch.setattr(mistral, "chat_arguments", bad)
    provider = MistralProvider(mistral.MistralConfig(
        model="mistral-test", api_key="test-key", base_url=provider_emulator.url("mistral")))
    with pytest.raises(ProviderError, match="did not fit the SDK's message type") as caught:
        await provider.send(make_request())
    assert caught.value.__cause__ is None and provider_emulator.requests == []
