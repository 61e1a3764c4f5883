"""The Gemini adapter through the real ``google-genai`` SDK against the loopback emulator:
the provider conformance suite, then what only Gemini has (generateContent shapes for
hybrid, the Interactions API for native, the retry-after cap, options)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from pydantic import SecretStr

from langswarm_runtime import SessionBackend
from langswarm_runtime.errors import ConfigError, ProviderAuthError, ProviderBadResponse
from langswarm_runtime.providers._gemini_parts import SYNTHETIC_PREFIX
from langswarm_runtime.providers._model_rules import reasoning_for, signature_of
from langswarm_runtime.providers.gemini import STATE_KEY, GeminiConfig, GeminiProvider
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
    content_text,
    make_request,
    provider_turn,
)

GENERATE = "/gemini/v1beta/models/gemini-test:generateContent"
STREAM = "/gemini/v1beta/models/gemini-test:streamGenerateContent"
INTERACTIONS = "/gemini/v1beta/interactions"
HYBRID, NATIVE = SessionBackend.HYBRID, SessionBackend.NATIVE
STREAMED = pytest.mark.parametrize("streamed", [False, True])
_ROLES = {"model": "assistant", "user_input": "user", "model_output": "assistant"}
INVOICE = Invoice.model_json_schema()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _signed(body: dict[str, Any]) -> int:
    """How many parts of a generateContent request carry a thought signature."""
    return sum("thoughtSignature" in p for c in body["contents"] for p in c["parts"])


class TestGemini(ProviderConformance):
    provider_type = "gemini"
    plugin_module = "langswarm_runtime.providers.gemini"
    sdk_module = "google.genai"
    api_key_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    supports_native = True
    builtin = True
    model = "gemini-test"
    api_key = "AIzaSyTest-very-secret-key-0123456789"
    sdk_context_cleared = False  # ``raise ... from None``: kept, never printed
    missing_key_hint = "API key"  # the SDK's text; it names no variable

    def wire_messages(self, request: RecordedRequest) -> list[tuple[str, str]]:
        body = request.json
        if "contents" in body:  # generateContent (hybrid)
            system = content_text((body.get("systemInstruction") or {}).get("parts"))
            turns = [(c["role"], content_text(c["parts"])) for c in body["contents"]]
        else:  # interactions (native)
            system = body.get("system_instruction") or ""
            steps = body["input"]
            if isinstance(steps, str):
                steps = [{"type": "user_input", "content": steps}]
            turns = [(s["type"], content_text(s["content"])) for s in steps]
        out = [("system", system)] if system else []
        return out + [(_ROLES.get(role, role), text) for role, text in turns]

    # ----------------------------------------------------------------------- turns

    @STREAMED
    async def test_hybrid_roles_system_instruction_and_usage(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider_emulator.cached_tokens = 2
        request = make_request(
            history=HISTORY, system_prompt="Be terse.", max_tokens=40, temperature=0.3
        )
        reply = await provider_turn(make_provider(), request, streamed)
        assert reply.content == "echo: hello there [earlier messages: 2]"
        assert reply.state is None and reply.provider_message_id
        # words seen: system 2 + history 2 + 2 + message 2
        assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.cached_tokens) == (
            8,
            6,
            2,
        )
        [rec] = provider_emulator.requests
        assert rec.path == (STREAM if streamed else GENERATE)
        body = rec.json
        assert [(c["role"], c["parts"][0]["text"]) for c in body["contents"]] == [
            ("user", "first question"),
            ("model", "first answer"),
            ("user", "hello there"),
        ]
        assert body["systemInstruction"]["parts"] == [{"text": "Be terse."}]
        assert body["generationConfig"] == {"maxOutputTokens": 40, "temperature": 0.3}
        assert "tools" not in body  # no automatic function calling
        assert rec.headers["x-goog-api-key"] == "<redacted>"

    @STREAMED
    async def test_native_interactions_seed_then_continue(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider_emulator.cached_tokens = 1
        provider = make_provider(max_tokens=50)
        first = await provider_turn(
            provider,
            make_request("one", backend=NATIVE, history=HISTORY, system_prompt="Sys."),
            streamed,
        )
        assert first.content == "echo: one [earlier messages: 2]"  # seeded from the mirror
        assert first.state == {STATE_KEY: first.provider_message_id}
        assert first.usage.cached_tokens == 1 and first.usage.input_tokens == 6
        second = await provider_turn(
            provider,
            make_request("two", backend=NATIVE, state=first.state, system_prompt="Sys."),
            streamed,
        )
        assert second.content == "echo: two [earlier messages: 4]"  # the server kept the rest
        assert second.state == {STATE_KEY: second.provider_message_id} != first.state
        seed, cont = provider_emulator.requests
        assert seed.path == cont.path == INTERACTIONS
        assert [(s["type"], s["content"][0]["text"]) for s in seed.json["input"]] == [
            ("user_input", "first question"),
            ("model_output", "first answer"),
            ("user_input", "one"),
        ]
        assert "previous_interaction_id" not in seed.json
        assert cont.json["previous_interaction_id"] == first.provider_message_id
        assert [s["content"][0]["text"] for s in cont.json["input"]] == ["two"]
        for rec in (seed, cont):
            assert rec.json["store"] is True and rec.json["system_instruction"] == "Sys."
            assert rec.json["generation_config"] == {"max_output_tokens": 50}
            assert rec.json.get("stream", False) is streamed

    async def test_summary_joins_the_system_instruction(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        history = [Message(role="summary", content="we met"), *HISTORY]
        reply = await make_provider().send(make_request(history=history))
        assert reply.content.endswith("[earlier messages: 2]")
        body = provider_emulator.requests[0].json
        assert "we met" in body["systemInstruction"]["parts"][0]["text"]
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]

    async def test_extra_passthrough_and_version_in_base_url(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider(
            base_url=provider_emulator.url("gemini") + "/v1alpha/",
            extra={"stop_sequences": ["zzz"]},
        )
        await provider.send(make_request())
        rec = provider_emulator.requests[0]
        assert rec.path == "/gemini/v1alpha/models/gemini-test:generateContent"
        assert rec.json["generationConfig"]["stopSequences"] == ["zzz"]

    async def test_unknown_extra_option_is_config_error(
        self, make_provider: Any, provider_emulator: ProviderEmulator, backend: SessionBackend
    ) -> None:
        with pytest.raises(ConfigError, match="not_an_option"):
            await make_provider(extra={"not_an_option": 1}).send(make_request(backend=backend))
        assert provider_emulator.requests == []

    async def test_each_call_sends_its_own_config(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        """The checked config is kept between the calls of a tool loop: a call that
        differs in any of what makes it (system text, limits, tools, schema) must still
        send its own, and a repeated one the same as the first time."""
        provider = make_provider()
        plain = make_request()
        shaped = [
            plain,
            make_request(system_prompt="be brief"),
            make_request(system_prompt="be brief", max_tokens=7, temperature=0.5),
            make_request(),
            make_request(),
            make_request(),
        ]
        shaped[3].tools = [LOOKUP]
        shaped[4].response_format = {"name": "Invoice", "schema": INVOICE, "strict": True}
        shaped[5].response_format = {"name": "Invoice", "schema": {**INVOICE, "title": "B"},
                                     "strict": True}  # fmt: skip
        for request in [*shaped, plain]:
            await provider.send(request)
        bodies = [r.json for r in provider_emulator.requests]
        system = [(b.get("systemInstruction") or {}).get("parts") for b in bodies]
        assert system[0] is None and system[1] == system[2] == [{"text": "be brief"}]
        assert "maxOutputTokens" not in bodies[1].get("generationConfig", {})
        assert bodies[2]["generationConfig"]["maxOutputTokens"] == 7
        assert [len(b.get("tools", [])) for b in bodies] == [0, 0, 0, 1, 0, 0, 0]
        schemas = [b.get("generationConfig", {}).get("responseJsonSchema") for b in bodies]
        assert schemas[4] == INVOICE and schemas[5]["title"] == "B"
        assert bodies[-1] == bodies[0]  # the first call's config, kept, is the same

    async def test_contents_sent_as_is_are_what_the_sdk_sends(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        """The adapter puts the contents in the body itself (``rest_contents``, through
        ``http_options.extra_body``): they must be exactly what the SDK's own conversion
        sends for the same contents, for every kind of part the translator makes."""
        from langswarm_runtime.providers._gemini_parts import rest_contents, to_contents

        def signed(key: str) -> dict[str, Any]:  # the signature the emulator checks
            return {"thought_signature": _b64(signature_of(key))}

        args = {"some_key": {"nested_key": [1]}}
        call_key = "call lookup " + json.dumps(args, sort_keys=True, separators=(",", ":"))
        conversation = [
            Message(role="summary", content="earlier: a cat"),
            Message(role="user", parts=[
                TextPart(text="look"), ImagePart.from_bytes(PNG, "image/png"),
                ImagePart.from_url("https://example.test/cat.jpg"),
                FilePart.from_bytes(b"%PDF-1.4", "application/pdf", name="a.pdf")]),
            Message(role="assistant", parts=[
                ReasoningPart(text="hm", provider="gemini", model=self.model, data=signed("hm")),
                ReasoningPart(text="", provider="gemini", model=self.model,
                              data={**signed(call_key), "on": "function_call"}),
                ToolCall(id="c1", name="lookup", arguments=args),
                ToolCall(id=f"{SYNTHETIC_PREFIX}x", name="lookup", arguments={})]),
            Message(role="tool", parts=[
                ToolResult(call_id="c1", name="lookup", content="v"),
                ToolResult(call_id=f"{SYNTHETIC_PREFIX}x", name="lookup", content="no",
                           is_error=True)]),
            Message(role="assistant", parts=[
                ReasoningPart(text="", provider="gemini", model=self.model,
                              data={**signed("a cat"), "on": "text"}),
                TextPart(text="a cat")]),
            Message(role="user", content="and now?"),
        ]  # fmt: skip
        _, contents = to_contents(conversation)
        kinds = {k for c in contents for p in c["parts"] for k in p}
        assert kinds >= {"text", "thought", "thought_signature", "inline_data", "file_data",
                         "function_call", "function_response"}  # fmt: skip
        provider = make_provider()
        client = provider.client()
        await client.aio.models.generate_content(model=self.model, contents=contents)
        sdk = provider_emulator.requests[-1].json["contents"]
        assert rest_contents(contents) == sdk
        # And through the adapter, from the messages, on the wire:
        request = make_request("and now?", history=conversation[:-1])
        await provider.send(request)
        assert provider_emulator.requests[-1].json["contents"] == sdk

    async def test_a_callers_own_extra_body_goes_along(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        extra = {"http_options": {"extra_body": {"generationConfig": {"topK": 3}}}}
        await make_provider(extra=extra).send(make_request("hello", history=HISTORY))
        body = provider_emulator.requests[-1].json
        assert body["generationConfig"]["topK"] == 3
        assert [content_text(c["parts"]) for c in body["contents"]][-1] == "hello"
        assert len(body["contents"]) == len(HISTORY) + 1

    async def test_unknown_extra_option_fails_every_call(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider(extra={"not_an_option": 1})
        for _ in range(2):  # a refused config is never kept
            with pytest.raises(ConfigError, match="not_an_option"):
                await provider.send(make_request())
        assert provider_emulator.requests == []

    @pytest.mark.parametrize("how", ["forget", "fault"])
    @STREAMED
    async def test_lost_interaction_is_reseeded_from_the_mirror(
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
        request = make_request("two", backend=NATIVE, history=mirror, state=first.state)
        reply = await provider_turn(provider, request, streamed)
        assert reply.content == "echo: two [earlier messages: 4]"  # no error, mirror replayed
        assert reply.state == {STATE_KEY: reply.provider_message_id}
        lost, seeded = provider_emulator.requests[1:]
        assert lost.json["previous_interaction_id"] == first.provider_message_id
        assert "previous_interaction_id" not in seeded.json and len(seeded.json["input"]) == 5

    async def test_retry_after_wait_is_capped(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        provider = make_provider(max_retries=1)
        provider.retry_after_cap = 0.2  # 60 s by default: lowered so the test stays quick
        provider_emulator.inject("429", retry_after=30)
        started = time.monotonic()
        assert (await provider.send(make_request())).content.startswith("echo:")
        assert time.monotonic() - started < 10
        assert GeminiProvider(GeminiConfig()).retry_after_cap == 60.0

    async def test_refused_key_is_auth_error(
        self, make_provider: Any, backend: SessionBackend
    ) -> None:
        with pytest.raises(ProviderAuthError) as info:
            await make_provider(api_key=SecretStr("invalid-key-0123456789")).send(
                make_request(backend=backend)
            )
        assert info.value.status_code == 401

    def test_emulator_keeps_the_wire_rules(self, provider_emulator: ProviderEmulator) -> None:
        import httpx

        root = provider_emulator.url("gemini") + "/v1beta"
        with httpx.Client(timeout=5) as http:
            r = http.post(f"{root}/models/m:generateContent", json={"contents": []})
            assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
            bad_role = {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}
            assert http.post(f"{root}/models/m:generateContent", json=bad_role).status_code == 400
            first = http.post(f"{root}/interactions", json={"model": "m", "input": "a b"}).json()
            unstored = {
                "model": "m",
                "input": "c",
                "previous_interaction_id": first["id"],
                "store": False,
            }
            second = http.post(f"{root}/interactions", json=unstored).json()
            assert second["steps"][0]["content"][0]["text"] == "echo: c [earlier messages: 2]"
            gone = {"model": "m", "input": "d", "previous_interaction_id": second["id"]}
            r = http.post(f"{root}/interactions", json=gone)  # store=False kept nothing
            assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"

    # ----------------------------------------------------------------- rich turns

    @STREAMED
    async def test_function_calls_without_ids_and_responses_in_call_order(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider()
        request = make_request('call lookup {"key": "a"}\ncall lookup {"key": "b"}')
        request.tools = [LOOKUP]
        first = await provider_turn(provider, request, streamed)
        calls = [p for p in first.parts if isinstance(p, ToolCall)]
        assert [c.arguments for c in calls] == [{"key": "a"}, {"key": "b"}]
        assert all(c.id.startswith(SYNTHETIC_PREFIX) for c in calls)  # the API gave none
        assert len({c.id for c in calls}) == 2
        tools = provider_emulator.requests[-1].json["tools"]
        assert tools == [{"functionDeclarations": [{
            "description": LOOKUP.description, "name": "lookup",
            "parameters_json_schema": LOOKUP.parameters}]}]  # fmt: skip
        results = make_request()
        results.turn = [
            request.message,
            Message(role="assistant", parts=first.parts),
            Message(role="tool", parts=[ToolResult(call_id=calls[1].id, content="B",
                                                   is_error=True)]),
        ]  # fmt: skip
        results.message = Message(role="tool", parts=[ToolResult(call_id=calls[0].id, content="A")])
        results.tools = [LOOKUP]
        reply = await provider_turn(provider, results, streamed)
        assert reply.content == "tool lookup returned A; tool lookup returned B"
        contents = provider_emulator.requests[-1].json["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"]
        assert contents[1]["parts"] == [
            {"functionCall": {"args": {"key": "a"}, "name": "lookup"}},
            {"functionCall": {"args": {"key": "b"}, "name": "lookup"}},
        ]  # our ids never go out: calls and responses pair by name and order
        assert contents[2]["parts"] == [
            {"functionResponse": {"name": "lookup", "response": {"output": "A"}}},
            {"functionResponse": {"name": "lookup", "response": {"error": "B"}}},
        ]

    async def test_emulator_refuses_unanswered_calls(
        self, make_provider: Any, provider_emulator: ProviderEmulator
    ) -> None:
        request = make_request()
        request.turn = [
            Message(role="user", content="x"),
            Message(role="assistant", parts=[ToolCall(id="c1", name="lookup"),
                                             ToolCall(id="c2", name="lookup")]),
        ]  # fmt: skip
        request.message = Message(role="tool", parts=[ToolResult(call_id="c1", content="1")])
        with pytest.raises(ProviderBadResponse, match="number of function response parts"):
            await make_provider().send(request)
        sent = provider_emulator.requests[-1].json["contents"]
        assert sent[1]["parts"][0]["functionCall"]["id"] == "c1"  # an API's own id goes back
        assert sent[2]["parts"][0]["functionResponse"]["id"] == "c1"

    @STREAMED
    async def test_thought_signatures_are_kept_and_replayed(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider(extra={"thinking_config": {"include_thoughts": True}})
        request = make_request('call lookup {"key": "k"}')
        request.tools = [LOOKUP]
        first = await provider_turn(provider, request, streamed)
        thought, signature = reasoning_for('call lookup {"key": "k"}')
        [reasoning, marker, call] = first.parts
        assert reasoning == ReasoningPart(
            text=thought, provider="gemini", model=self.model,
            data={"thought_signature": _b64(signature)},
        )  # fmt: skip
        # The signature that came on the call goes back on the call.
        assert marker.type == "reasoning" and marker.text == ""
        assert marker.data is not None and marker.data["on"] == "function_call"
        assert isinstance(call, ToolCall) and call.name == "lookup"
        results = make_request()
        results.turn = [request.message, Message(role="assistant", parts=first.parts)]
        results.message = Message(role="tool", parts=[ToolResult(call_id=call.id, content="v")])
        results.tools = [LOOKUP]
        reply = await provider_turn(provider, results, streamed)
        assert reply.content == "tool lookup returned v"
        model_parts = provider_emulator.requests[-1].json["contents"][1]["parts"]
        assert [sorted(p) for p in model_parts] == [
            ["text", "thought", "thoughtSignature"],
            ["functionCall", "thoughtSignature"],
        ]
        assert base64.urlsafe_b64decode(model_parts[0]["thoughtSignature"]) == signature.encode()
        forged = ReasoningPart(text="other", provider="gemini", model=self.model,
                               data=reasoning.data)  # fmt: skip
        results.turn[1] = Message(role="assistant", parts=[forged, call])
        with pytest.raises(ProviderBadResponse, match="signature is not valid"):
            await provider_turn(provider, results, streamed)

    async def test_reasoning_goes_back_to_the_same_model_family_only(
        self, manager: Any, provider_emulator: ProviderEmulator
    ) -> None:
        thinking = {"thinking_config": {"include_thoughts": True}}
        async with manager(extra=thinking) as mgr:
            session = await mgr.create_session(user_id="u", tools=[weather])
            reply = await session.send_message('call weather {"city": "Oslo"}')
            assert reply.content == "tool weather returned Sunny in Oslo"
            await session.send_message("again")
            assert _signed(provider_emulator.requests[-1].json) == 3  # thought, call, thought
            await session.switch_provider("subject", model="gemini-other")
            reply = await session.send_message("elsewhere")
            assert reply.content.startswith("echo: elsewhere")
            body = provider_emulator.requests[-1].json
            assert provider_emulator.requests[-1].path.endswith("gemini-other:generateContent")
            assert _signed(body) == 0  # another model's signatures are left out
            assert any("functionCall" in p for c in body["contents"] for p in c["parts"])

    async def test_media_parts(
        self, make_provider: Any, provider_emulator: ProviderEmulator, backend: SessionBackend
    ) -> None:
        parts = [
            TextPart(text="look"),
            ImagePart.from_bytes(PNG, "image/png"),
            ImagePart.from_url("https://example.com/cat.jpg"),
            FilePart.from_bytes(b"%PDF-1.4", "application/pdf", name="a.pdf"),
        ]
        request = make_request(backend=backend)
        request.message = Message(role="user", parts=parts)
        reply = await make_provider().send(request)
        assert reply.content == (
            f"echo: look [image/png {len(PNG)} bytes] [image/jpeg https://example.com/cat.jpg] "
            "[application/pdf 8 bytes] [earlier messages: 0]"
        )
        body = provider_emulator.requests[-1].json
        if backend is HYBRID:
            wire = body["contents"][0]["parts"]
            assert wire[1]["inlineData"]["mime_type"] == "image/png"
            assert base64.urlsafe_b64decode(wire[1]["inlineData"]["data"]) == PNG
            assert wire[2] == {"fileData": {"file_uri": "https://example.com/cat.jpg",
                                            "mime_type": "image/jpeg"}}  # fmt: skip
        else:
            wire = body["input"][0]["content"]
            assert wire[1] == {"type": "image", "mime_type": "image/png",
                               "data": base64.b64encode(PNG).decode()}  # fmt: skip
            assert wire[2] == {"type": "image", "mime_type": "image/jpeg",
                               "uri": "https://example.com/cat.jpg"}  # fmt: skip
            assert wire[3]["type"] == "document" and wire[3]["mime_type"] == "application/pdf"

    async def test_structured_output_wire(
        self, make_provider: Any, provider_emulator: ProviderEmulator, backend: SessionBackend
    ) -> None:
        request = make_request("ACME", backend=backend)
        request.response_format = {"name": "Invoice", "schema": INVOICE, "strict": True}
        reply = await make_provider().send(request)
        assert json.loads(reply.content) == {"customer": "ACME", "total": 1}
        body = provider_emulator.requests[-1].json
        if backend is HYBRID:
            config = body["generationConfig"]
            assert config["responseMimeType"] == "application/json"
            assert config["responseJsonSchema"] == INVOICE
        else:
            assert body["response_format"] == {"type": "text", "mime_type": "application/json",
                                               "schema": INVOICE}  # fmt: skip

    @STREAMED
    async def test_native_function_steps_and_thoughts(
        self, make_provider: Any, provider_emulator: ProviderEmulator, streamed: bool
    ) -> None:
        provider = make_provider(extra={"generation_config": {"thinking_summaries": "auto"}},
                                 max_tokens=99)  # fmt: skip
        request = make_request('call lookup {"key": "k"}', backend=NATIVE, system_prompt="S.")
        request.tools = [LOOKUP]
        first = await provider_turn(provider, request, streamed)
        [reasoning, call] = first.parts
        thought, signature = reasoning_for('call lookup {"key": "k"}')
        assert isinstance(reasoning, ReasoningPart) and reasoning.text == thought
        assert reasoning.data == {"thought_signature": _b64(signature)}
        assert isinstance(call, ToolCall) and call.id.startswith("call_")
        assert call.arguments == {"key": "k"}
        results = make_request(backend=NATIVE, state=first.state, system_prompt="S.")
        results.turn = [request.message, Message(role="assistant", parts=first.parts)]
        results.message = Message(role="tool", parts=[ToolResult(call_id=call.id, content="v")])
        results.tools = [LOOKUP]
        second = await provider_turn(provider, results, streamed)
        assert second.content == "tool lookup returned v"
        seed, cont = provider_emulator.requests
        for rec in (seed, cont):  # interaction-scoped: with every turn
            assert rec.json["tools"] == [{"type": "function", "name": "lookup",
                                          "description": LOOKUP.description,
                                          "parameters": LOOKUP.parameters}]  # fmt: skip
            assert rec.json["generation_config"] == {"max_output_tokens": 99,
                                                     "thinking_summaries": "auto"}  # fmt: skip
        assert cont.json["previous_interaction_id"] == first.provider_message_id
        assert cont.json["input"] == [{"type": "function_result", "call_id": call.id,
                                       "name": "lookup", "result": "v"}]  # fmt: skip
        # Lost: the mirror and the running turn are replayed, thought and call included.
        provider_emulator.forget_conversations()
        reply = await provider_turn(provider, results, streamed)
        assert reply.content == "tool lookup returned v"
        assert [s["type"] for s in provider_emulator.requests[-1].json["input"]] == [
            "user_input",
            "thought",
            "function_call",
            "function_result",
        ]
        assert provider_emulator.requests[-1].json["input"][1]["signature"] == _b64(signature)


def test_signatures_on_text_parts_go_back_on_them() -> None:
    # What Gemini 3 sends when it answers in text: the signature on a text part, or on an
    # empty text part at the end of a stream.
    from langswarm_runtime.providers._gemini_parts import parts_from_candidate, to_contents

    raw = [{"text": "hi", "thought_signature": b"x"}, {"text": "", "thought_signature": b"y"}]
    text, parts = parts_from_candidate(raw, model="m", response_id="r")
    assert text == "hi"
    assert [p.type for p in parts] == ["reasoning", "text", "reasoning"]
    _, contents = to_contents([Message(role="user", content="q"),
                               Message(role="assistant", parts=parts)])  # fmt: skip
    assert contents[1]["parts"] == raw


def test_streamed_thought_pieces_join_until_signed() -> None:
    from langswarm_runtime.providers._gemini_parts import CandidateStream

    stream = CandidateStream()
    pieces = [{"text": "a", "thought": True}, {"text": "b", "thought": True,
              "thought_signature": b"s"}, {"text": "x"}, {"text": "y"}]  # fmt: skip
    assert [stream.add(p) for p in pieces] == [None, None, "x", "y"]
    text, parts = stream.parts(model="m", response_id="r")
    assert text == "xy"
    assert parts == [
        ReasoningPart(text="ab", provider="gemini", model="m",
                      data={"thought_signature": _b64("s")}),
        TextPart(text="xy"),
    ]  # fmt: skip


def test_rest_forms_are_kept_by_content_object_but_not_for_media() -> None:
    from langswarm_runtime.providers import _gemini_parts as parts

    with_image = Message(role="user", parts=[TextPart(text="look"),
                                             ImagePart.from_bytes(PNG, "image/png")])
    _, contents = parts.to_contents([*HISTORY, with_image])
    first, again = parts.rest_contents(contents), parts.rest_contents(contents)
    assert [a is b for a, b in zip(first, again, strict=True)] == [
        "inline_data" not in str(c) for c in contents]
    assert parts.rest_contents([dict(contents[0])])[0] is not first[0]  # another object
