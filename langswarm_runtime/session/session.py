"""A chat session: the turn pipeline of DESIGN.md section 1."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from langswarm_runtime.errors import (
    ConcurrencyError,
    InvalidMessage,
    LangSwarmError,
    MessageTooLarge,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    SessionNotFound,
)
from langswarm_runtime.providers.base import ContextConfig, Provider, ProviderReply, ProviderRequest
from langswarm_runtime.session.middleware import middleware_name, run_incoming, run_outgoing
from langswarm_runtime.session.models import (
    Message,
    MessageStatus,
    SessionBackend,
    SessionRecord,
    Usage,
)
from langswarm_runtime.session.tailcache import TailCache
from langswarm_runtime.session.text import utf8_size

if TYPE_CHECKING:
    from langswarm_runtime.session.storage.base import ISessionStorage

__all__ = ["Session"]

_COMMITTED = (MessageStatus.COMMITTED,)
_SAVE_ATTEMPTS = 8
#: Errors that mean the provider refused the request before looking at it.
_NOT_RECEIVED = (ProviderRateLimited, ProviderAuthError)


class Session:
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
        if not (
            hasattr(middleware, "process_outgoing_message")
            or hasattr(middleware, "process_incoming_message")
        ):
            raise TypeError(
                f"{type(middleware).__name__} is not a middleware: it has neither "
                "process_outgoing_message nor process_incoming_message"
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
    def _validate(self, text: object) -> str:
        if not isinstance(text, str):
            raise InvalidMessage(f"message must be a string, not {type(text).__name__}")
        if not text.strip():
            raise InvalidMessage("message is empty")
        # Also refuses what no storage can hold byte-identical (NUL, lone surrogates):
        # InvalidText names the character and where it is.
        size = utf8_size(text)
        if size > self._max_bytes:
            raise MessageTooLarge(
                f"message is {size} bytes, over the limit of {self._max_bytes} bytes"
            )
        return text

    async def _begin(self, text: object) -> tuple[Message, int]:
        """Steps 1-3: validate, outgoing chain, durable pending record."""
        self._pending_seq = None
        self._validate(text)
        assert isinstance(text, str)
        user = Message(role="user", content=text)
        if self._chain:  # nothing to run (or re-validate) for an empty chain
            user = await run_outgoing(self._chain, self, user)
            self._validate(user.content)
            pending = user.model_copy(update={"status": MessageStatus.PENDING})
        else:
            pending = Message(role="user", content=text, status=MessageStatus.PENDING)
        (stored,) = await self._storage.append_messages(self.session_id, [pending])
        assert stored.seq is not None
        self._pending_seq = stored.seq
        return user, stored.seq

    async def _build_request(self, user: Message) -> ProviderRequest:
        record = self._record
        request = ProviderRequest(
            message=user,
            model=record.model,
            backend=record.backend,
            system_prompt=record.system_prompt,
            state=dict(record.provider_state),
            load_history=self._context_history,
            session_id=record.session_id,
            max_tokens=getattr(self._provider.config, "max_tokens", None),
            temperature=getattr(self._provider.config, "temperature", None),
        )
        if record.backend is SessionBackend.HYBRID:
            request.history = await self._context_history()
        return request

    async def _context_history(self) -> list[Message]:
        """Committed history cut to the context policy (also used to seed a native
        conversation from the local mirror)."""
        from langswarm_runtime.session.context import select_context

        await self._tail.refresh(self._pending_seq)
        return await select_context(
            self._tail,  # type: ignore[arg-type]  # storage-shaped read-through cache
            self.session_id,
            self._context,
            system_prompt=self._record.system_prompt,
            count_tokens=getattr(self._provider, "count_tokens", None),
            summarize=self._summarize,
        )

    async def _summarize(self, messages: list[Message]) -> str:
        """Ask this session's own provider for a summary of turns leaving the window."""
        transcript = "\n".join(f"{m.role}: {m.content}" for m in messages)
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

    async def _fail(self, pending_seq: int, exc: BaseException) -> None:
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
                    self.session_id, [pending_seq], MessageStatus.FAILED
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

    async def _finish(self, user: Message, pending_seq: int, reply: ProviderReply) -> Message:
        """Steps 6-8: incoming chain, atomic commit, record update."""
        if not isinstance(reply, ProviderReply) or not isinstance(reply.content, str):
            raise ProviderBadResponse("provider returned no text", provider=self.provider)
        answer = Message(
            role="assistant",
            content=reply.content,
            usage=reply.usage,
            provider_message_id=reply.provider_message_id,
            metadata={"provider": self.provider, "model": reply.model or self.model},
        )
        if self._chain:
            answer = await run_incoming(self._chain, self, answer)
        committed_user = user.model_copy(
            update={"status": MessageStatus.COMMITTED, "seq": None, "created_at": time.time()}
        )
        state = dict(reply.state) if reply.state is not None else None
        # The record update (usage totals, provider state) rides in the commit's own
        # atomic write: no second transaction, and no version conflict to retry, since
        # the storage adds the usage to whatever totals it holds.
        stored_user, stored = await self._storage.commit_turn(
            self.session_id, pending_seq, [committed_user, answer],
            usage=reply.usage, provider_state=state,
        )
        # The cache gets its own copy of the reply: the caller may change the one returned.
        self._tail.add_own_turn(pending_seq, [stored_user, copy.copy(stored)])
        record = self._record
        update: dict[str, Any] = {
            "usage": record.usage + reply.usage,
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

    async def send_message(self, text: str) -> Message:
        """Send one user message and return the committed reply."""
        async with self._lock:
            user, pending_seq = await self._begin(text)
            try:
                request = await self._build_request(user)
                reply = await self._provider.send(request)
                return await self._finish(user, pending_seq, reply)
            except BaseException as exc:  # noqa: BLE001 - always re-raised
                await self._fail(pending_seq, exc)
                _reraise(exc, self.provider)

    async def stream_message(self, text: str) -> AsyncGenerator[str, None]:
        """Send one user message and yield the reply's text deltas. The whole reply is
        committed when the stream ends; a broken or abandoned stream leaves a failed turn."""
        async with self._lock:
            user, pending_seq = await self._begin(text)
            delta_filters = [
                mw for mw in reversed(self._chain) if getattr(mw, "filters_deltas", False)
            ]
            final: ProviderReply | None = None
            try:
                request = await self._build_request(user)
                async for item in self._provider.stream(request):
                    if isinstance(item, ProviderReply):
                        final = item
                        break
                    for mw in delta_filters:
                        item = await _maybe_await(mw.process_stream_delta(self, item))  # type: ignore[attr-defined]
                    if item:
                        yield item
                if final is None:
                    raise ProviderBadResponse(
                        "stream ended without a final reply", provider=self.provider
                    )
                await self._finish(user, pending_seq, final)
            except BaseException as exc:  # noqa: BLE001 - always re-raised
                await self._fail(pending_seq, exc)
                _reraise(exc, self.provider)

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


def _reraise(exc: BaseException, provider: str) -> NoReturn:
    """Raise ``exc`` itself when it is already typed (or a cancellation), else its
    ProviderError translation chained to it."""
    translated = _translate(exc, provider)
    if translated is exc:
        raise exc
    raise translated from exc


def _translate(exc: BaseException, provider: str) -> BaseException:
    """Typed errors pass through; anything else from an adapter becomes a ProviderError
    (without the original message, which could carry request details)."""
    if isinstance(exc, (LangSwarmError, asyncio.CancelledError, GeneratorExit)):
        return exc
    if not isinstance(exc, Exception):
        return exc
    return ProviderError(
        f"unexpected {type(exc).__name__} from the provider adapter", provider=provider
    )


def _name(mw: object) -> str:
    return middleware_name(mw)
