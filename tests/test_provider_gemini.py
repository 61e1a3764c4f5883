"""The Gemini adapter through the real ``google-genai`` SDK against the loopback emulator:
the provider conformance suite, then what only Gemini has (generateContent shapes for
hybrid, the Interactions API for native, the retry-after cap, options)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import SecretStr

from langswarm_runtime import SessionBackend
from langswarm_runtime.errors import ConfigError, ProviderAuthError
from langswarm_runtime.providers.gemini import STATE_KEY, GeminiConfig, GeminiProvider
from langswarm_runtime.session.models import Message
from langswarm_runtime.testing import ProviderConformance
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


class TestGemini(ProviderConformance):
    rich_turns_pending = "tools, media and structured output are not translated yet"
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
