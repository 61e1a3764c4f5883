"""The Cohere adapter through the real ``cohere`` SDK against the loopback emulator: the
provider conformance suite (hybrid only: Cohere keeps no conversations), then Cohere's v2
chat shapes and options."""

from __future__ import annotations

from typing import Any

import pytest

from langswarm_runtime.errors import ConfigError, ProviderBadResponse, ProviderUnavailable
from langswarm_runtime.session.models import Message
from langswarm_runtime.testing import ProviderConformance
from langswarm_runtime.testing.emulator import ProviderEmulator, RecordedRequest
from langswarm_runtime.testing.provider_helpers import (
    HISTORY,
    collect_stream,
    content_text,
    make_request,
)

CHAT = "/cohere/v2/chat"


class TestCohere(ProviderConformance):
    rich_turns_pending = "tools, media and structured output are not translated yet"
    provider_type = "cohere"
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
