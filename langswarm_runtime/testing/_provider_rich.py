"""Rich-turn checks of the provider conformance suite: tool loops (runtime-run and
caller-run), media, structured output, through the official SDK and the emulator, in
every backend the provider has, plain and streamed, across restarts.

The emulator's model follows fixed rules (see ``testing/emulator/_wire.py``): with tools
offered, a line ``call NAME {json}`` asks for that tool; tool results are answered
``tool NAME returned CONTENT``; media are acknowledged as ``[image/png 68 bytes]``.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from langswarm_runtime.errors import ProviderBadResponse, ProviderError
from langswarm_runtime.session.models import MessageStatus, SessionBackend
from langswarm_runtime.session.parts import FilePart, ImagePart, ToolCall, ToolResult
from langswarm_runtime.testing._provider_base import NATIVE, ProviderSuiteBase
from langswarm_runtime.tools.spec import ToolSpec, tool

#: A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@tool
async def weather(city: str) -> str:
    """Current weather for a city.

    Args:
        city: The city's name.
    """
    return f"Sunny in {city}"


LOOKUP = ToolSpec(
    name="lookup",
    description="Look a key up in the caller's table.",
    parameters={"type": "object", "properties": {"key": {"type": "string"}},
                "required": ["key"]},
)  # fmt: skip


class Invoice(BaseModel):
    customer: str
    total: int


async def _turn(session: Any, content: Any, streamed: bool, **options: Any) -> Any:
    """One turn, plain or through ``stream_events``; returns the final reply."""
    if not streamed:
        return await session.send_message(content, **options)
    final = None
    async for event in session.stream_events(content, **options):
        if event.type == "done":
            final = event.message
    assert final is not None, "stream_events ended without a done event"
    return final


def _shape(history: list[Any]) -> list[tuple[str, ...]]:
    """(role, kinds of parts or 'text') per message; reasoning parts (which some APIs
    always send, such as Cohere's tool plan) are left out."""
    out = []
    for m in history:
        kinds = [p.type for p in m.parts if p.type != "reasoning"]
        out.append((m.role, *kinds) if kinds else (m.role, "text"))
    return out


class RichTurnChecks(ProviderSuiteBase):
    #: Whether the provider's API takes documents (PDF) as message parts.
    supports_files: ClassVar[bool] = True

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_tool_loop_survives_restart(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend, streamed: bool
    ) -> None:
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend, tools=[weather])
            reply = await _turn(session, 'call weather {"city": "Paris"}', streamed)
            assert reply.content == "tool weather returned Sunny in Paris"
            assert reply.tool_calls == []
            sid = session.session_id
        async with manager() as mgr:
            again = await mgr.get_session(sid, user_id="u", tools=[weather])
            assert again is not None
            both = 'call weather {"city": "Rome"}\ncall weather {"city": "Oslo"}'
            reply = await _turn(again, both, streamed)
            assert reply.content == (
                "tool weather returned Sunny in Rome; tool weather returned Sunny in Oslo"
            )
            history = await again.get_history()
        assert _shape(history) == [
            ("user", "text"), ("assistant", "tool_call"), ("tool", "tool_result"),
            ("assistant", "text"),
            ("user", "text"), ("assistant", "tool_call", "tool_call"),
            ("tool", "tool_result", "tool_result"), ("assistant", "text"),
        ]  # fmt: skip
        calls = history[5].tool_calls
        results = history[6].tool_results
        assert [c.arguments for c in calls] == [{"city": "Rome"}, {"city": "Oslo"}]
        assert [r.call_id for r in results] == [c.id for c in calls]  # results in call order
        assert all(m.status is MessageStatus.COMMITTED for m in history)
        seqs = [m.seq for m in history]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_caller_run_tool_across_restart(
        self, manager: Any, backend: SessionBackend, streamed: bool
    ) -> None:
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            reply = await _turn(session, 'call lookup {"key": "answer"}', streamed,
                                tools=[LOOKUP])  # fmt: skip
            [call] = reply.tool_calls
            assert isinstance(call, ToolCall) and call.name == "lookup"
            assert call.arguments == {"key": "answer"}
            sid = session.session_id
        async with manager() as mgr:
            again = await mgr.get_session(sid, user_id="u")
            assert again is not None
            with pytest.raises(Exception, match=call.id):  # results are owed
                await again.send_message("something else")
            final = await again.send_tool_results([ToolResult(call_id=call.id, content="42")])
            assert final.content == "tool lookup returned 42"
            reply = await again.send_message("after")
            assert reply.content.startswith("echo: after")
            history = await again.get_history()
        assert _shape(history)[:4] == [
            ("user", "text"), ("assistant", "tool_call"), ("tool", "tool_result"),
            ("assistant", "text"),
        ]  # fmt: skip

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_three_rounds_in_one_turn(
        self, manager: Any, backend: SessionBackend, streamed: bool
    ) -> None:
        @tool
        def hop(n: int) -> str:
            """One hop; its result asks for the next."""
            return f'call hop {{"n": {n + 1}}}' if n < 3 else "arrived"

        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend, tools=[hop])
            reply = await _turn(session, 'call hop {"n": 1}', streamed)
            assert reply.content == "tool hop returned arrived"
            history = await session.get_history()
        assert _shape(history) == [("user", "text"),
                                   *[("assistant", "tool_call"), ("tool", "tool_result")] * 3,
                                   ("assistant", "text")]  # fmt: skip
        assert [c.arguments for m in history for c in m.tool_calls] == [
            {"n": 1}, {"n": 2}, {"n": 3}
        ]

    async def test_tool_error_goes_back_to_the_model(
        self, manager: Any, backend: SessionBackend
    ) -> None:
        @tool
        def broken(n: int) -> str:
            """Always fails."""
            raise RuntimeError("no luck")

        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend,
                                               tools=[broken])  # fmt: skip
            reply = await session.send_message('call broken {"n": "not a number"}')
            assert reply.content.startswith("tool broken returned ")
            reply = await session.send_message('call broken {"n": 3}')
            assert reply.content == "tool broken returned tool broken failed: RuntimeError: no luck"
            history = await session.get_history()
        errors = [r for m in history for r in m.tool_results]
        assert len(errors) == 2 and all(r.is_error for r in errors)

    async def test_fault_mid_loop_fails_the_whole_turn(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend
    ) -> None:
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend, tools=[weather])
            await session.send_message("kept")
            provider_emulator.inject("500", after=1)  # the call that carries the results
            with pytest.raises(ProviderError):
                await session.send_message('call weather {"city": "Paris"}')
            everything = await session.get_history(include_failed=True)
            history = await session.get_history()
            assert [m.content for m in history] == ["kept", history[1].content]
            steps = [m for m in everything if m.status is MessageStatus.FAILED]
            assert _shape(steps) == [
                ("user", "text"), ("assistant", "tool_call"), ("tool", "tool_result")
            ]
            reply = await session.send_message('call weather {"city": "Rome"}')
            assert reply.content == "tool weather returned Sunny in Rome"

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_image_reaches_the_wire_and_survives_restart(
        self, manager: Any, backend: SessionBackend, streamed: bool
    ) -> None:
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            image = ImagePart.from_bytes(PNG, "image/png")
            reply = await _turn(session, ["What is this?", image], streamed)
            assert f"[image/png {len(PNG)} bytes]" in reply.content
            sid = session.session_id
        async with manager() as mgr:
            again = await mgr.get_session(sid, user_id="u")
            assert again is not None
            [user, _] = await again.get_history()
            assert user.content == "What is this?"
            [stored] = [p for p in user.parts if isinstance(p, ImagePart)]
            assert stored.sha256 == image.sha256 and stored.size == len(PNG)
            reply = await again.send_message("and now?")
            assert reply.content.startswith("echo: and now?")

    async def test_file_reaches_the_wire(self, manager: Any, backend: SessionBackend) -> None:
        if not self.supports_files:
            pytest.skip(f"{self.provider_type} takes no documents")
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            doc = FilePart.from_bytes(PDF, "application/pdf", name="a.pdf")
            reply = await session.send_message(["Summarise", doc])
            assert f"[application/pdf {len(PDF)} bytes]" in reply.content

    @pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
    async def test_structured_output(
        self, manager: Any, provider_emulator: Any, backend: SessionBackend, streamed: bool
    ) -> None:
        async with manager() as mgr:
            session = await mgr.create_session(user_id="u", backend=backend)
            reply = await _turn(session, "ACME", streamed, response_format=Invoice)
            assert isinstance(reply.parsed, Invoice)
            assert reply.parsed == Invoice(customer="ACME", total=1)
            with pytest.raises(ProviderBadResponse):
                await _turn(session, 'json {"customer": 3}', streamed, response_format=Invoice)
            history = await session.get_history()
            assert len(history) == 2
            failed = await session.get_history(include_failed=True)
            assert failed[-1].status is MessageStatus.FAILED
        if backend is NATIVE:
            return
        body = provider_emulator.requests[0].json
        assert "customer" in repr(body), "the schema went out with the request"
