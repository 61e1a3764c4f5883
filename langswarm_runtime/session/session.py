"""A chat session: the turn pipeline of DESIGN.md section 1."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from langswarm_runtime.errors import (
    ConcurrencyError,
    InvalidMessage,
    LangSwarmError,
    MessageTooLarge,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderRateLimited,
    SessionNotFound,
    ToolResultsOwed,
    ToolRoundsExceeded,
)
from langswarm_runtime.providers.base import ContextConfig, Provider, ProviderReply, ProviderRequest
from langswarm_runtime.session.middleware import (
    middleware_name,
    run_incoming,
    run_outgoing,
    run_tool_calls_chain,
    run_tool_results_chain,
)
from langswarm_runtime.session.models import (
    Message,
    MessageStatus,
    SessionBackend,
    SessionRecord,
    Usage,
)
from langswarm_runtime.session.parts import (
    DEFAULT_MAX_MEDIA_BYTES,
    FilePart,
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.session.requests import RequestBuilder
from langswarm_runtime.session.tailcache import TailCache
from langswarm_runtime.session.text import check_text, utf8_size
from langswarm_runtime.session.tooling import ToolCalls
from langswarm_runtime.session.turns import (
    TurnEvent,
    describe,
    parse_reply,
    reraise,
    response_format_spec,
    user_message,
)
from langswarm_runtime.tools.runner import run_tool_calls
from langswarm_runtime.tools.spec import Tool, ToolSpec

if TYPE_CHECKING:
    from langswarm_runtime.session.storage.base import ISessionStorage

__all__ = ["Session"]

_COMMITTED = (MessageStatus.COMMITTED,)
_SAVE_ATTEMPTS = 8
#: Errors that mean the provider refused the request before looking at it.
_NOT_RECEIVED = (ProviderRateLimited, ProviderAuthError)


class Session(RequestBuilder, ToolCalls):
    """One persistent conversation. Obtain it from ``SessionManager``, never directly.

    ``send_message`` calls on one session are serialised; the session can be used from
    many tasks. Attributes: ``session_id``, ``user_id``, ``provider`` (the provider entry
    name), ``model``, ``backend`` (resolved: NATIVE or HYBRID), ``system_prompt``,
    ``metadata``, ``usage`` (totals).
    """

    def __init__(
        self,
        *,
        record: SessionRecord,
        storage: ISessionStorage,
        provider: Provider,
        context: ContextConfig,
        middleware: Sequence[object] = (),
        max_message_bytes: int = 1024 * 1024,
        resolve_provider: Callable[..., Any] | None = None,
        tools: Iterable[object] = (),
        max_tool_rounds: int = 8,
        tool_timeout: float = 30.0,
        max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
    ) -> None:
        self._record = record
        self._storage = storage
        self._provider = provider
        self._context = context
        self._chain: list[object] = list(middleware)
        self._max_bytes = max_message_bytes
        self._resolve_provider = resolve_provider
        self._lock = asyncio.Lock()
        self._tail = TailCache(storage, record.session_id)
        #: Seq of the running turn's pending record (turns are serialised by _lock).
        self._pending_seq: int | None = None
        self._max_tool_rounds = max_tool_rounds
        self._tool_timeout = tool_timeout
        self._max_media_bytes = max_media_bytes
        #: Tools the runtime runs, by name; the specs of all tools come from the record.
        self._impls: dict[str, Tool] = {}
        for item in tools:
            self._adopt_tool(item)
        #: Caller-run calls the committed history owes results for (None: not read yet).
        self._owed: list[ToolCall] | None = None
        self._specs: tuple[list[dict[str, Any]], list[ToolSpec]] | None = None
        #: Messages as this provider receives them (see RequestBuilder._wire_cache).
        self._wire_cache: dict[int | tuple[str, int], tuple[Message, Message]] = {}
        self._wire_key: tuple[Any, ...] | None = None
        #: Call ids of the round a resumed turn answers, in call order.
        self._round_order: list[str] = []

    # -- attributes users see -------------------------------------------------------
    @property
    def session_id(self) -> str:
        return self._record.session_id

    @property
    def user_id(self) -> str:
        return self._record.user_id

    @property
    def provider(self) -> str:
        return self._record.provider

    @property
    def model(self) -> str | None:
        return self._record.model

    @property
    def backend(self) -> SessionBackend:
        return self._record.backend

    @property
    def system_prompt(self) -> str | None:
        return self._record.system_prompt

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._record.metadata)

    @property
    def usage(self) -> Usage:
        """Token totals over the session's committed replies (persisted)."""
        return self._record.usage

    @property
    def record(self) -> SessionRecord:
        """A copy of the stored session record."""
        return self._record.model_copy(deep=True)

    @property
    def middleware(self) -> list[object]:
        return list(self._chain)

    def __repr__(self) -> str:
        return (
            f"<Session {self.session_id} user={self.user_id!r} provider={self.provider!r} "
            f"model={self.model!r} backend={self.backend.value}>"
        )

    # -- middleware --------------------------------------------------------------------
    def add_middleware(self, middleware: object) -> None:
        """Append a middleware to this session's chain (for this process only; chains
        declared in swarm.yaml are recorded with the session and survive restarts)."""
        hooks = ("process_outgoing_message", "process_incoming_message",
                 "process_tool_call", "process_tool_result")  # fmt: skip
        if not any(hasattr(middleware, hook) for hook in hooks):
            raise TypeError(
                f"{type(middleware).__name__} is not a middleware: it has none of "
                f"{', '.join(hooks)}"
            )
        self._chain.append(middleware)

    # -- history -----------------------------------------------------------------------
    async def get_history(
        self, include_failed: bool = False, *, last: int | None = None
    ) -> list[Message]:
        """Messages oldest first: committed ones, or all (failed, interrupted and pending
        too) with ``include_failed=True``. Context summaries are not part of the history."""
        statuses = None if include_failed else _COMMITTED
        messages = await self._storage.load_messages(
            self.session_id, last=last, statuses=statuses
        )
        return [m for m in messages if m.role != "summary"]

    # -- turns -------------------------------------------------------------------------
    def _validate(self, message: Message) -> Message:
        """A user message's text and media within limits. Also refuses what no storage
        can hold byte-identical (NUL, lone surrogates): InvalidText names the character
        and where it is."""
        text = message.content
        media = [p for p in message.parts if isinstance(p, (ImagePart, FilePart))]
        if not text.strip() and not media:
            raise InvalidMessage("message is empty")
        size = utf8_size(text)
        if size > self._max_bytes:
            raise MessageTooLarge(
                f"message is {size} bytes, over the limit of {self._max_bytes} bytes"
            )
        for part in media:
            if part.size is not None and part.size > self._max_media_bytes:
                raise MessageTooLarge(
                    f"{part.type} is {part.size} bytes, over the limit of "
                    f"{self._max_media_bytes} bytes"
                )
            check_text(part.media_type, f"{part.type}.media_type")
            if part.url is not None:
                check_text(part.url, f"{part.type}.url")
            if isinstance(part, FilePart) and part.name is not None:
                check_text(part.name, "file.name")
        return message

    async def _begin(self, user: Message) -> tuple[Message, int]:
        """Steps 1-3 for a validated user message: outgoing chain, durable pending
        record."""
        self._pending_seq = None
        owed = await self._owed_calls()
        if owed:
            ids = [c.id for c in owed]
            raise ToolResultsOwed(
                f"results are owed for tool calls {', '.join(ids)}: send them with "
                "send_tool_results first",
                ids,
            )
        if self._chain:  # nothing to run (or re-validate) for an empty chain
            user = self._validate(await run_outgoing(self._chain, self, user))
        stored = await self._append_pending(user)
        self._pending_seq = stored
        return user, stored

    async def _append_pending(self, message: Message) -> int:
        pending = message.model_copy(update={"status": MessageStatus.PENDING})
        (stored,) = await self._storage.append_messages(self.session_id, [pending])
        assert stored.seq is not None
        return stored.seq

    async def _summarize(self, messages: list[Message]) -> str:
        """Ask this session's own provider for a summary of turns leaving the window."""
        transcript = "\n".join(f"{m.role}: {describe(m)}" for m in messages)
        request = ProviderRequest(
            message=Message(
                role="user",
                content="Summarise this conversation so far in a few sentences, keeping "
                "names, facts and decisions:\n\n" + transcript,
            ),
            model=self._record.model,
            backend=SessionBackend.HYBRID,
            session_id=self.session_id,
        )
        reply = await self._provider.send(request)
        return reply.content

    async def _fail(self, pending: list[int], exc: BaseException) -> None:
        """Mark the turn failed. In native mode the provider may already hold part of the
        turn (a broken stream, a timeout after the request arrived, a rejected reply), so
        the remote conversation is dropped and the next turn re-seeds it from the local
        mirror, which never contains failed turns. The drop comes first: a crash between
        the two leaves the turn pending, and hydration then drops the conversation too."""
        # The caller is already raising; a second storage error must not mask the first.
        if not isinstance(exc, _NOT_RECEIVED):
            try:
                await asyncio.shield(self._drop_remote_conversation())
            except Exception:  # noqa: BLE001, S110 - the original error is what the caller sees
                pass
        try:
            await asyncio.shield(
                self._storage.update_message_status(
                    self.session_id, list(pending), MessageStatus.FAILED
                )
            )
        except Exception:  # noqa: BLE001, S110
            pass

    async def _drop_remote_conversation(self) -> None:
        """Forget the provider-held conversation of a native session (version-checked
        save), so the next turn re-seeds one from the committed history. For a turn the
        provider may hold that the mirror never will: a failed one, or one cut off by a
        crash (see ``SessionManager.get_session``)."""
        if self._record.backend is SessionBackend.NATIVE and self._record.provider_state:
            await self._save(lambda record: record.provider_state.clear())

    def _answer(self, reply: ProviderReply) -> Message:
        """The reply as an assistant message (step 6 runs on it next)."""
        if not isinstance(reply, ProviderReply) or not isinstance(reply.content, str):
            raise ProviderBadResponse("provider returned no text", provider=self.provider)
        parts = list(reply.parts)
        if parts and not any(isinstance(p, TextPart) for p in parts) and reply.content:
            parts.append(TextPart(text=reply.content))
        metadata = {"provider": self.provider, "model": reply.model or self.model}
        try:
            return Message(
                role="assistant",
                content=reply.content,
                parts=parts,
                usage=reply.usage,
                provider_message_id=reply.provider_message_id,
                metadata=metadata,
            )
        except ValueError:
            raise ProviderBadResponse(
                "provider reply's text and parts disagree", provider=self.provider
            ) from None

    async def _turn(
        self, message: Message, pending: list[int], **options: Any
    ) -> AsyncGenerator[TurnEvent, None]:
        """``_loop`` with its failure handling: any error marks every pending step of
        the turn failed (see ``_fail``) and is raised typed."""
        try:
            async with contextlib.aclosing(self._loop(message, pending, **options)) as events:
                async for event in events:
                    yield event
        except BaseException as exc:  # noqa: BLE001 - always re-raised
            await self._fail(pending, exc)
            reraise(exc, self.provider)

    async def _loop(
        self,
        message: Message,
        pending: list[int],
        *,
        streamed: bool,
        response_format: object = None,
        schema: dict[str, Any] | None = None,
        carried: Sequence[ToolResult] = (),
    ) -> AsyncGenerator[TurnEvent, None]:
        """Steps 4-8 as a loop: call the model; while it asks for tools, run the ones
        this process has (each step stored as pending as it happens) and call it again
        with the results. The turn's messages are committed together at the end, or when
        the model asks for a tool only the caller can run (the caller then owes its
        result: ``send_tool_results`` continues the turn). ``pending``: the seqs of the
        turn's pending records so far (grown here; the caller fails them on error).
        ``message``: the user message, or the caller's tool results resuming a turn.
        ``schema``: ``response_format`` as ``response_format_spec`` gives it to providers.
        ``carried``: results of the same round the runtime already committed (its own
        tools, run before the pause); a native conversation has not seen them yet, so
        they go out with the caller's (hybrid sends them with the history)."""
        steps = [message]  # the turn's messages so far: what will be committed
        history: list[Message] | None = None
        state = dict(self._record.provider_state)
        usage = Usage()
        new_state: dict[str, Any] | None = None
        rounds = 0
        delta_filters = [
            mw for mw in reversed(self._chain) if getattr(mw, "filters_deltas", False)
        ]
        while True:
            request = await self._build_request(steps[-1], steps[:-1], state, schema, history)
            history = request.history if request.backend is SessionBackend.HYBRID else None
            if carried and len(steps) == 1 and request.backend is SessionBackend.NATIVE:
                # The round's results together, in call order (carried ones come first
                # only because the runtime ran before the caller; calls fix the order).
                order = self._round_order
                both: list[Any] = sorted(
                    [*carried, *message.tool_results],
                    key=lambda r: order.index(r.call_id) if r.call_id in order else len(order),
                )
                merged = Message(role="tool", parts=both)
                (request.message,) = await self._portable([merged])
            if not streamed:
                reply = await self._provider.send(request)
            else:
                final: ProviderReply | None = None
                async for item in self._provider.stream(request):
                    if isinstance(item, ProviderReply):
                        final = item
                        break
                    for mw in delta_filters:
                        item = await _maybe_await(mw.process_stream_delta(self, item))  # type: ignore[attr-defined]
                    if item:
                        yield TurnEvent("text", text=item)
                if final is None:
                    raise ProviderBadResponse(
                        "stream ended without a final reply", provider=self.provider
                    )
                reply = final
            answer = self._answer(reply)
            usage = usage + reply.usage
            if reply.state is not None:
                state = dict(reply.state)
                new_state = state
            raw_calls = answer.tool_calls
            if self._chain:
                answer = await run_incoming(self._chain, self, answer)
                if answer.tool_calls:
                    answer = await run_tool_calls_chain(self._chain, self, answer)
            for part in answer.parts:
                if isinstance(part, ReasoningPart):
                    yield TurnEvent("reasoning", reasoning=part)
            calls = answer.tool_calls
            if not calls:
                parsed = None
                if response_format is not None:
                    parsed = parse_reply(answer.content, response_format, provider=self.provider)
                stored = await self._commit(pending, [*steps, answer], usage, new_state)
                final_message = stored[-1]
                final_message.parsed = parsed
                self._owed = []
                yield TurnEvent("done", message=final_message)
                return
            rounds += 1
            pending.append(await self._append_pending(answer))
            steps.append(answer)
            if rounds > self._max_tool_rounds:
                raise ToolRoundsExceeded(
                    f"the model still asked for tools after {self._max_tool_rounds} rounds "
                    "(max_tool_rounds)",
                    provider=self.provider,
                )
            for call in calls:
                yield TurnEvent("tool_call", call=call)
            # Tools run with the arguments as the model sent them; what is stored and
            # sent back is what the middleware made of them.
            runnable = [c for c in raw_calls if c.name in self._impls]
            owed = [c for c in calls if c.name not in self._impls]
            if runnable:
                results = await run_tool_calls(
                    runnable, self._impls, timeout=self._tool_timeout
                )
                tool_parts: list[Any] = list(results)
                tool_message = Message(role="tool", parts=tool_parts)
                if self._chain:
                    tool_message = await run_tool_results_chain(self._chain, self, tool_message)
                pending.append(await self._append_pending(tool_message))
                steps.append(tool_message)
                for result in tool_message.tool_results:
                    yield TurnEvent("tool_result", result=result)
            if owed:
                stored = await self._commit(pending, steps, usage, new_state)
                self._owed = owed
                asking = next(m for m in reversed(stored) if m.role == "assistant")
                owed_ids = {c.id for c in owed}
                shown = [p for p in asking.parts
                         if not isinstance(p, ToolCall) or p.id in owed_ids]  # fmt: skip
                yield TurnEvent("done", message=asking.model_copy(update={"parts": shown}))
                return

    async def _commit(
        self,
        pending: list[int],
        messages: list[Message],
        usage: Usage,
        state: dict[str, Any] | None,
    ) -> list[Message]:
        """Step 7: the turn's messages committed in one atomic write, replacing its
        pending records; the record (usage, provider state) updated in the same write."""
        now = time.time()
        committed = [
            m.model_copy(update={"status": MessageStatus.COMMITTED, "seq": None})
            if m.role != "user" else
            m.model_copy(update={"status": MessageStatus.COMMITTED, "seq": None,
                                 "created_at": now})
            for m in messages
        ]  # fmt: skip
        stored = await self._storage.commit_turn(
            self.session_id,
            pending if len(pending) > 1 else pending[0],
            committed,
            usage=usage,
            provider_state=state,
        )
        # The cache gets its own copies: the caller may change the reply returned.
        self._tail.add_own_turn(pending, [copy.copy(m) for m in stored])
        record = self._record
        update: dict[str, Any] = {
            "usage": record.usage + usage,
            "updated_at": time.time(),
            "version": record.version + 1,
        }
        if state is not None:
            update["provider_state"] = state
        # Shallow copy: the old record is dropped, and ``record`` hands out deep copies.
        self._record = record.model_copy(update=update)
        return stored

    async def _save(self, change: Callable[[SessionRecord], None]) -> None:
        """Apply ``change`` to the record and save it; when another process saved first,
        reload and re-apply (optimistic concurrency)."""
        for _ in range(_SAVE_ATTEMPTS):
            record = self._record.model_copy(deep=True)
            change(record)
            record.updated_at = time.time()
            try:
                await self._storage.save_session(record)
            except ConcurrencyError:
                fresh = await self._storage.load_session(self.session_id)
                if fresh is None:
                    raise SessionNotFound(f"session {self.session_id!r} not found") from None
                self._record = fresh
                continue
            self._record = record
            return
        raise ConcurrencyError(
            f"session {self.session_id}: record changed concurrently {_SAVE_ATTEMPTS} times"
        )

    async def send_message(
        self,
        content: object,
        *,
        tools: Iterable[object] | None = None,
        response_format: object = None,
    ) -> Message:
        """Send one user message (a string, a part, or a list of strings and parts) and
        return the committed reply. With tools, the runtime runs the model's tool calls
        until it answers in text; a call to a tool only the caller can run comes back in
        ``reply.tool_calls`` (answer with ``send_tool_results``). ``tools`` are added to
        the session's tools (and recorded with it). ``response_format`` (a pydantic model
        class or a JSON Schema) asks for JSON and validates it into ``reply.parsed``."""
        final: Message | None = None
        async for event in self._run(content, tools, response_format, streamed=False):
            if event.type == "done":
                final = event.message
        assert final is not None
        return final

    async def stream_message(
        self,
        content: object,
        *,
        tools: Iterable[object] | None = None,
        response_format: object = None,
    ) -> AsyncGenerator[str, None]:
        """Like ``send_message``, yielding the reply's text deltas. The whole turn is
        committed when the stream ends; a broken or abandoned stream leaves a failed turn."""
        async with contextlib.aclosing(
            self._run(content, tools, response_format, streamed=True)
        ) as events:
            async for event in events:
                if event.type == "text":
                    yield event.text

    async def stream_events(
        self,
        content: object,
        *,
        tools: Iterable[object] | None = None,
        response_format: object = None,
    ) -> AsyncGenerator[TurnEvent, None]:
        """Like ``stream_message``, yielding typed ``TurnEvent``s: ``text`` deltas,
        ``reasoning``, each ``tool_call`` and ``tool_result`` as it happens, and ``done``
        with the committed reply last."""
        async with contextlib.aclosing(
            self._run(content, tools, response_format, streamed=True)
        ) as events:
            async for event in events:
                yield event

    async def _run(
        self,
        content: object,
        tools: Iterable[object] | None,
        response_format: object,
        *,
        streamed: bool,
    ) -> AsyncGenerator[TurnEvent, None]:
        async with self._lock:
            # All the input is checked before anything is stored: a message, tools or a
            # response format that cannot be used leave the session as it was.
            user = self._validate(user_message(content))
            schema = response_format_spec(response_format)
            before = self._record
            if self._offer(tools):
                try:
                    user, pending_seq = await self._begin(user)
                except BaseException:
                    self._record = before  # the tools were never offered
                    raise
                saved = self._record.tools
                try:
                    await self._save(lambda record: setattr(record, "tools", saved))
                except BaseException as exc:
                    await self._fail([pending_seq], exc)
                    raise
            else:
                user, pending_seq = await self._begin(user)
            async with contextlib.aclosing(
                self._turn(user, [pending_seq], streamed=streamed,
                           response_format=response_format, schema=schema)
            ) as events:
                async for event in events:
                    yield event

    # -- provider switch ---------------------------------------------------------------
    async def switch_provider(
        self,
        provider: str,
        model: str | None = None,
        backend: SessionBackend | str | None = None,
    ) -> None:
        """Carry the local history over to another provider entry. Provider-specific
        state (conversation ids) is dropped, never replayed to the new provider. The
        switch is persisted."""
        if self._resolve_provider is None:
            raise LangSwarmError("this session cannot switch provider")
        async with self._lock:
            new_provider, new_model, new_backend, context = self._resolve_provider(
                provider, model, backend
            )

            def change(record: SessionRecord) -> None:
                record.provider = provider
                record.model = new_model
                record.backend = new_backend
                record.provider_state = {}

            await self._save(change)
            self._provider = new_provider
            self._context = context


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


def _name(mw: object) -> str:
    return middleware_name(mw)
