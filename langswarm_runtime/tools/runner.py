"""Running a model's tool calls: concurrently, each bounded in time, results in call order.

A tool that raises, times out or gets arguments that do not match its schema gives an
error result the model can read; it never fails the turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from langswarm_runtime.session.parts import ToolCall, ToolResult
from langswarm_runtime.tools.spec import Tool, ToolArgumentsError, ToolFailed

__all__ = ["run_tool_calls"]


async def run_tool_calls(
    calls: Sequence[ToolCall], tools: Mapping[str, Tool], *, timeout: float = 30.0
) -> list[ToolResult]:
    """Run every call (all of them must name a tool in ``tools``) at once; one result per
    call, in the order of ``calls``. A single call runs in the caller's task (no task of
    its own: most rounds have one call, and each task costs the loop a few iterations)."""
    if len(calls) == 1:
        return [await _run_one(calls[0], tools[calls[0].name], timeout)]
    return list(await asyncio.gather(*(_run_one(c, tools[c.name], timeout) for c in calls)))


async def _run_one(call: ToolCall, tool: Tool, timeout: float) -> ToolResult:
    try:
        # asyncio.timeout, not wait_for: no extra task; a cancellation from outside still
        # propagates as CancelledError, only the deadline becomes TimeoutError.
        async with asyncio.timeout(timeout):
            content = await tool.run(call.arguments)
    except (ToolArgumentsError, ToolFailed) as exc:
        return _error(call, str(exc) or f"tool {call.name} failed")
    except TimeoutError:
        return _error(call, f"tool {call.name} timed out after {timeout:g}s")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the model, not raised
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"tool {call.name} failed: {type(exc).__name__}"
        return _error(call, f"{message}: {detail}" if detail else message)
    return ToolResult(call_id=call.id, content=content, name=call.name)


def _error(call: ToolCall, text: str) -> ToolResult:
    return ToolResult(call_id=call.id, content=text, is_error=True, name=call.name)
