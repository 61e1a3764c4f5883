"""Tool specs derived from callables, and the runner of a model's tool calls."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

import pytest
from pydantic import ValidationError

from langswarm_runtime.session.parts import ToolCall
from langswarm_runtime.tools import ToolSpec, run_tool_calls, tool


@tool
async def weather(city: str, unit: Literal["c", "f"] = "c") -> str:
    """Current weather for a city.

    Args:
        city: The city name,
            as people write it.
        unit: Temperature unit.
    """
    return f"sunny in {city} ({unit})"


@tool(name="add_numbers", description="Adds two integers.")
def add(a: int, b: int = 2) -> dict[str, int]:
    return {"sum": a + b}


def test_schema_comes_from_the_signature_and_docstring() -> None:
    spec = weather.spec
    assert spec.name == "weather"
    assert spec.description == "Current weather for a city."
    params = spec.parameters
    assert params["type"] == "object" and params["required"] == ["city"]
    assert params["properties"]["city"] == {
        "type": "string", "description": "The city name, as people write it."
    }
    assert params["properties"]["unit"]["enum"] == ["c", "f"]
    assert "title" not in params and "title" not in params["properties"]["city"]


def test_name_and_description_can_be_overridden() -> None:
    assert (add.spec.name, add.spec.description) == ("add_numbers", "Adds two integers.")
    assert add(1, 1) == {"sum": 2}  # still the function


def test_tool_spec_names_are_checked() -> None:
    with pytest.raises(ValidationError):
        ToolSpec(name="has space")
    assert ToolSpec(name="lookup").parameters == {"type": "object", "properties": {}}


def test_star_args_cannot_be_described() -> None:
    def f(*items: int) -> None: ...

    with pytest.raises(TypeError, match=r"\*args"):
        tool(f)


async def test_results_come_back_in_call_order_and_calls_run_concurrently() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @tool
    async def first() -> str:
        started.set()
        await release.wait()
        return "first"

    @tool
    async def second() -> str:
        await started.wait()  # only possible if both run at once
        release.set()
        return "second"

    calls = [ToolCall(id="1", name="first"), ToolCall(id="2", name="second")]
    results = await asyncio.wait_for(
        run_tool_calls(calls, {"first": first, "second": second}), 5
    )
    assert [(r.call_id, r.content) for r in results] == [("1", "first"), ("2", "second")]


async def test_a_sync_tool_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()

    @tool
    def where() -> str:
        time.sleep(0.01)
        return "worker" if threading.get_ident() != loop_thread else "loop"

    (result,) = await run_tool_calls([ToolCall(id="1", name="where")], {"where": where})
    assert result.content == "worker"


async def test_failures_are_error_results_not_exceptions() -> None:
    @tool
    def boom() -> None:
        raise RuntimeError("disk on fire\nstack details")

    @tool
    async def slow() -> str:
        await asyncio.sleep(10)
        return "late"

    tools = {"boom": boom, "slow": slow, "add_numbers": add}
    calls = [
        ToolCall(id="a", name="boom"),
        ToolCall(id="b", name="slow"),
        ToolCall(id="c", name="add_numbers", arguments={"a": "not a number"}),
        ToolCall(id="d", name="add_numbers", arguments={"a": 1, "extra": 2}),
        ToolCall(id="e", name="add_numbers", arguments={"a": 40}),
    ]
    results = await run_tool_calls(calls, tools, timeout=0.2)
    assert [r.is_error for r in results] == [True, True, True, True, False]
    assert results[0].content == "tool boom failed: RuntimeError: disk on fire"
    assert results[1].content == "tool slow timed out after 0.2s"
    assert results[2].content.startswith("invalid arguments: a:")
    assert "extra" in results[3].content
    assert results[4].content == '{"sum": 42}'
    assert all(r.name == c.name for r, c in zip(results, calls, strict=True))


async def test_a_single_call_keeps_its_timeout_and_errors() -> None:
    @tool
    async def slow() -> str:
        await asyncio.sleep(10)
        return "late"

    @tool
    def boom() -> None:
        raise ValueError("bad input")

    (late,) = await run_tool_calls([ToolCall(id="1", name="slow")], {"slow": slow}, timeout=0.05)
    assert (late.is_error, late.content) == (True, "tool slow timed out after 0.05s")
    (failed,) = await run_tool_calls([ToolCall(id="2", name="boom")], {"boom": boom})
    assert (failed.is_error, failed.content) == (True, "tool boom failed: ValueError: bad input")


async def test_cancelling_the_caller_cancels_a_running_tool_and_is_not_a_timeout() -> None:
    """A single call runs in the caller's task: cancelling that task must reach the
    tool and come out as CancelledError, never as a 'timed out' result."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @tool
    async def wait_forever() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    calls = [ToolCall(id="1", name="wait_forever")]
    task = asyncio.create_task(run_tool_calls(calls, {"wait_forever": wait_forever}, timeout=5))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
