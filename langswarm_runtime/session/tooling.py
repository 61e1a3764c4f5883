"""A session's tools: the specs it offers (recorded with it), the implementations this
process has, the caller-run calls it waits for, and ``send_tool_results``, which resumes
the turn those calls paused. A mixin of ``Session``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from langswarm_runtime.errors import InvalidMessage, ToolResultsOwed
from langswarm_runtime.session.middleware import run_tool_results_chain
from langswarm_runtime.session.models import Message, MessageStatus, SessionBackend, SessionRecord
from langswarm_runtime.session.parts import ToolCall, ToolResult
from langswarm_runtime.session.text import check_text
from langswarm_runtime.session.turns import TurnEvent, answered_results, owed_calls
from langswarm_runtime.tools.spec import Tool, ToolSpec, as_tool

if TYPE_CHECKING:
    from langswarm_runtime.session.storage.base import ISessionStorage

__all__ = ["ToolCalls"]

_COMMITTED = (MessageStatus.COMMITTED,)


class ToolCalls:
    """Tools of ``Session`` (which sets these attributes and runs the turns)."""

    _record: SessionRecord
    _storage: ISessionStorage
    _lock: asyncio.Lock
    _chain: list[object]
    _pending_seq: int | None
    #: Tools the runtime runs, by name; the specs of all tools come from the record.
    _impls: dict[str, Tool]
    #: Caller-run calls the committed history owes results for (None: not read yet).
    _owed: list[ToolCall] | None
    _specs: tuple[list[dict[str, Any]], list[ToolSpec]] | None
    #: Call ids of the round a resumed turn answers, in call order.
    _round_order: list[str]

    if TYPE_CHECKING:

        @property
        def session_id(self) -> str: ...

        @property
        def provider(self) -> str: ...

        def _turn(
            self,
            message: Message,
            pending: list[int],
            *,
            streamed: bool,
            response_format: object = None,
            carried: Sequence[ToolResult] = (),
        ) -> AsyncGenerator[TurnEvent, None]: ...

        async def _append_pending(self, message: Message) -> int: ...

        async def _fail(self, pending: list[int], exc: BaseException) -> None: ...

    @property
    def tools(self) -> list[ToolSpec]:
        """The specs of the tools offered to the model (recorded with the session)."""
        recorded = self._record.tools
        if self._specs is None or self._specs[0] is not recorded:
            self._specs = (recorded, [ToolSpec.model_validate(t) for t in recorded])
        return list(self._specs[1])

    async def open_tool_calls(self) -> list[ToolCall]:
        """The caller-run tool calls whose results the session waits for."""
        return list(await self._owed_calls())

    def _adopt_tool(self, item: object) -> bool:
        """Take a tool (callable, ``Tool``, ``ToolSpec``, or anything with ``spec`` and
        ``async run(arguments)``): its implementation for this process, and whether its
        spec is new to the record (the caller saves it)."""
        try:
            found = item if hasattr(item, "spec") and hasattr(item, "run") else as_tool(item)
        except TypeError as exc:  # not a tool at all: the caller's input, said typed
            raise InvalidMessage(str(exc)) from None
        spec: ToolSpec = found.spec if not isinstance(found, ToolSpec) else found
        if not isinstance(found, ToolSpec):
            self._impls[spec.name] = found  # type: ignore[assignment]
        entry = spec.model_dump(mode="json")
        known = {t["name"]: t for t in self._record.tools}
        if known.get(spec.name) == entry:
            return False
        tools = [t for t in self._record.tools if t["name"] != spec.name]
        tools.append(entry)
        self._record = self._record.model_copy(update={"tools": tools})
        return True

    def _offer(self, tools: Iterable[object] | None) -> bool:
        """Add per-call tools; True when the record changed (its tools must be saved)."""
        changed = False
        for item in tools or ():
            changed = self._adopt_tool(item) or changed
        return changed


    async def _owed_calls(self) -> list[ToolCall]:
        if self._owed is None:
            self._owed = owed_calls(await self._round_tail())
        return self._owed

    async def _round_tail(self) -> list[Message]:
        """The committed tail, reaching back past any run of tool messages to the last
        round's assistant message (what owed calls and carried results are read from)."""
        tail = await self._storage.load_messages(self.session_id, last=8, statuses=_COMMITTED)
        while tail and all(m.role == "tool" for m in tail) and len(tail) % 8 == 0:
            tail = await self._storage.load_messages(  # a long run of tool messages
                self.session_id, last=len(tail) * 2, statuses=_COMMITTED
            )
        return tail


    async def send_tool_results(
        self,
        results: Sequence[ToolResult],
        *,
        streamed: bool = False,
    ) -> Message:
        """Answer the open caller-run tool calls (one ``ToolResult`` per call) and
        continue the turn; returns its reply (which may ask for more calls)."""
        final: Message | None = None
        async for event in self._resume(results, streamed=streamed):
            if event.type == "done":
                final = event.message
        assert final is not None
        return final


    async def _resume(
        self, results: Sequence[ToolResult], *, streamed: bool
    ) -> AsyncGenerator[TurnEvent, None]:
        async with self._lock:
            owed = await self._owed_calls()
            ids = [c.id for c in owed]
            carried: list[ToolResult] = []
            if owed and self._record.backend is SessionBackend.NATIVE:
                tail = await self._round_tail()
                carried = answered_results(tail)
                self._round_order = next(
                    ([c.id for c in m.tool_calls] for m in reversed(tail) if m.tool_calls), []
                )
            if not owed:
                raise ToolResultsOwed("no tool calls are waiting for results", [])
            if not isinstance(results, (list, tuple)) or not all(
                isinstance(r, ToolResult) for r in results
            ):
                raise InvalidMessage("send_tool_results takes a list of ToolResult")
            given = [r.call_id for r in results]
            if sorted(given) != sorted(ids):
                raise ToolResultsOwed(
                    f"results must answer exactly the open tool calls {', '.join(ids)} "
                    f"(got {', '.join(given) or 'none'})",
                    ids,
                )
            names = {c.id: c.name for c in owed}
            ordered = sorted(results, key=lambda r: ids.index(r.call_id))
            parts: list[Any] = []
            for result in ordered:
                check_text(result.content, f"tool result {result.call_id}")
                if result.name is None:
                    result = result.model_copy(update={"name": names[result.call_id]})
                parts.append(result)
            message = Message(role="tool", parts=parts)
            if self._chain:
                message = await run_tool_results_chain(self._chain, cast(Any, self), message)
            self._pending_seq = None
            pending = [await self._append_pending(message)]
            self._pending_seq = pending[0]
            async with contextlib.aclosing(
                self._turn(message, pending, streamed=streamed, carried=carried)
            ) as events:
                async for event in events:
                    yield event
