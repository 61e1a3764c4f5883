"""One session with tool calls and an image walks through all five providers and back,
with a restart at every switch, through the real SDKs against the emulator. Each request
is checked against the provider's own wire shape: the earlier tool calls and results
travel paired (ids in the provider's form, the same id on both sides) and the image's
bytes go along. The emulator itself refuses unpaired tool blocks, as the real APIs do."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import ImagePart, SessionManager, tool
from langswarm_runtime.session.models import SessionBackend
from langswarm_runtime.testing.emulator import ProviderEmulator

NATIVE, HYBRID = SessionBackend.NATIVE, SessionBackend.HYBRID
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_B64 = base64.b64encode(PNG).decode()
PNG_URLSAFE = base64.urlsafe_b64encode(PNG).decode()
ENTRIES = {"gpt": "openai", "claude": "anthropic", "gemini": "gemini", "cohere": "cohere",
           "mistral": "mistral"}  # fmt: skip
NATIVE_ENTRIES = ("gpt", "claude", "gemini", "mistral")


@tool
async def weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}"


@pytest.fixture
def swarm(five_provider_swarm: Path) -> Path:
    return five_provider_swarm


def _pairs(kind: str, body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(tool-call ids, ids the tool results answer) in one request body, in order."""
    calls: list[str] = []
    results: list[str] = []
    if kind == "openai":
        for item in body.get("input") or []:
            if item.get("type") == "function_call":
                calls.append(item["call_id"])
            elif item.get("type") == "function_call_output":
                results.append(item["call_id"])
    elif kind == "anthropic":
        for message in body["messages"]:
            for block in message["content"] if isinstance(message["content"], list) else []:
                if block.get("type") == "tool_use":
                    calls.append(block["id"])
                elif block.get("type") == "tool_result":
                    results.append(block["tool_use_id"])
    elif kind == "gemini":
        for content in body["contents"]:
            for part in content.get("parts") or []:
                call = part.get("functionCall") or part.get("function_call")
                response = part.get("functionResponse") or part.get("function_response")
                if call:
                    calls.append(call.get("id") or call["name"])
                if response:
                    results.append(response.get("id") or response["name"])
    else:  # cohere, mistral: the OpenAI-style chat shape
        for message in body["messages"]:
            for call in message.get("tool_calls") or []:
                calls.append(call["id"])
            if message.get("role") == "tool":
                results.append(message["tool_call_id"])
    return calls, results


ID_FORMS = {"anthropic": r"^[a-zA-Z0-9_-]+$", "mistral": r"^[a-zA-Z0-9]{9}$"}


def _check_request(kind: str, body: dict[str, Any], tool_calls_so_far: int) -> None:
    calls, results = _pairs(kind, body)
    assert len(calls) == tool_calls_so_far, f"{kind}: {calls}"
    assert sorted(calls) == sorted(results), f"{kind}: calls and results do not pair"
    if kind in ID_FORMS:
        assert all(re.fullmatch(ID_FORMS[kind], c) for c in calls), f"{kind}: {calls}"
    text = json.dumps(body)  # the Gemini SDK sends URL-safe base64
    assert PNG_B64 in text or PNG_URLSAFE in text, f"{kind}: the image did not go along"


async def test_tool_turns_and_an_image_walk_through_every_provider_and_back(
    swarm: Path, provider_emulator: ProviderEmulator
) -> None:
    walk = [*ENTRIES, "gpt"]  # and back to the first
    async with SessionManager.from_config(swarm) as mgr:
        session = await mgr.create_session(user_id="u", provider="gpt", backend=HYBRID,
                                           tools=[weather])  # fmt: skip
        reply = await session.send_message(["What is in it?", ImagePart.from_bytes(PNG, "image/png")])
        assert f"[image/png {len(PNG)} bytes]" in reply.content
        sid = session.session_id
    calls = 0
    for i, entry in enumerate(walk):
        kind = ENTRIES[entry]
        async with SessionManager.from_config(swarm) as mgr:  # a restart at every step
            session = await mgr.get_session(sid, user_id="u", tools=[weather])
            assert session is not None
            if i:
                await session.switch_provider(entry, backend=HYBRID)
            mark = len(provider_emulator.requests)
            city = f"City{i}"
            reply = await session.send_message(f'call weather {{"city": "{city}"}}')
            assert reply.content == f"tool weather returned Sunny in {city}", (kind, reply.content)
            sent = provider_emulator.requests[mark:]
            assert {r.provider for r in sent} == {kind}
            # The first request of the turn carries the history so far; the second also
            # this turn's own call and result.
            _check_request(kind, sent[0].json, calls)
            _check_request(kind, sent[-1].json, calls + 1)
            calls += 1
    async with SessionManager.from_config(swarm) as mgr:
        session = await mgr.get_session(sid, user_id="u")
        assert session is not None
        history = await session.get_history()
    assert [m.role for m in history][:2] == ["user", "assistant"]
    assert sum(len(m.tool_calls) for m in history) == calls == len(walk)
    produced = {m.metadata.get("provider") for m in history if m.role == "assistant"}
    assert produced == set(ENTRIES), "every provider answered a part of the walk"


@pytest.mark.parametrize("entry", NATIVE_ENTRIES)
async def test_native_conversation_seeded_from_a_tool_history(
    swarm: Path, provider_emulator: ProviderEmulator, entry: str
) -> None:
    """A tool history made elsewhere seeds a provider's native conversation, which then
    keeps the next tool turn (the emulator refuses unpaired or unknown tool items)."""
    async with SessionManager.from_config(swarm) as mgr:
        session = await mgr.create_session(user_id="u", provider="cohere", tools=[weather])
        await session.send_message(["look", ImagePart.from_bytes(PNG, "image/png")])
        await session.send_message('call weather {"city": "Oslo"}')
        sid = session.session_id
    async with SessionManager.from_config(swarm) as mgr:
        session = await mgr.get_session(sid, user_id="u", tools=[weather])
        assert session is not None
        await session.switch_provider(entry, backend=NATIVE)
        reply = await session.send_message('call weather {"city": "Rome"}')
        assert reply.content == "tool weather returned Sunny in Rome"
    async with SessionManager.from_config(swarm) as mgr:
        session = await mgr.get_session(sid, user_id="u", tools=[weather])
        assert session is not None
        mark = len(provider_emulator.requests)
        reply = await session.send_message('call weather {"city": "Lima"}')
        assert reply.content == "tool weather returned Sunny in Lima"
        # The remote conversation holds the history: no re-seed, nothing resent.
        sent = json.dumps([r.json for r in provider_emulator.requests[mark:]])
        assert PNG_B64 not in sent and PNG_URLSAFE not in sent
        assert sum(len(m.tool_calls) for m in await session.get_history()) == 3


@pytest.mark.parametrize("entry", NATIVE_ENTRIES)
async def test_native_round_with_our_tool_and_the_callers(
    swarm: Path, provider_emulator: ProviderEmulator, entry: str
) -> None:
    """The runtime runs its tool, the caller owes the other; after a restart the
    caller's result goes to the remote conversation together with ours (the emulator,
    like the APIs, refuses a call left without its output)."""
    from langswarm_runtime import ToolResult, ToolSpec

    lookup = ToolSpec(name="lookup")
    async with SessionManager.from_config(swarm) as mgr:
        session = await mgr.create_session(user_id="u", provider=entry, backend=NATIVE,
                                           tools=[weather, lookup])  # fmt: skip
        reply = await session.send_message('call weather {"city": "Oslo"}\ncall lookup {}')
        [owed] = reply.tool_calls
        sid = session.session_id
    async with SessionManager.from_config(swarm) as mgr:
        session = await mgr.get_session(sid, user_id="u", tools=[weather])
        assert session is not None
        final = await session.send_tool_results([ToolResult(call_id=owed.id, content="7")])
        assert final.content == "tool weather returned Sunny in Oslo; tool lookup returned 7"
        reply = await session.send_message('call weather {"city": "Rome"}')
        assert reply.content == "tool weather returned Sunny in Rome"
