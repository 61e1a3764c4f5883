"""What a session sends: the provider request of each call of a turn, built from the
committed context (hybrid), the running turn and the new message, with every message in
the form this provider may receive (``providers.portable``) and stored media with their
bytes. A mixin of ``Session``, apart from the turn pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langswarm_runtime.providers.base import ContextConfig, Provider, ProviderRequest
from langswarm_runtime.session.models import Message, MessageStatus, SessionBackend, SessionRecord
from langswarm_runtime.session.parts import FilePart, ImagePart
from langswarm_runtime.session.tailcache import TailCache

if TYPE_CHECKING:
    from langswarm_runtime.session.storage.base import ISessionStorage
    from langswarm_runtime.tools.spec import ToolSpec

__all__ = ["RequestBuilder"]

_WIRE_CACHE_SIZE = 4096


class RequestBuilder:
    """Builds provider requests for ``Session`` (which sets these attributes)."""

    _record: SessionRecord
    _storage: ISessionStorage
    _provider: Provider
    _context: ContextConfig
    _tail: TailCache
    _pending_seq: int | None
    #: Messages as this provider receives them: seq (committed ones) or
    #: ``("step", id)`` (a running turn's steps) -> (message, sent).
    _wire_cache: dict[int | tuple[str, int], tuple[Message, Message]]
    _wire_key: tuple[Any, ...] | None

    if TYPE_CHECKING:

        @property
        def session_id(self) -> str: ...

        @property
        def tools(self) -> list[ToolSpec]: ...

        async def _summarize(self, messages: list[Message]) -> str: ...

    async def _build_request(
        self,
        message: Message,
        turn: list[Message],
        state: dict[str, Any],
        response_format: dict[str, Any] | None,
        history: list[Message] | None = None,
    ) -> ProviderRequest:
        """``history``: the hybrid context already selected for this turn (later calls
        of a tool loop reuse the first call's: the committed history is the same)."""
        record = self._record
        request = ProviderRequest(
            message=message,
            model=record.model,
            backend=record.backend,
            system_prompt=record.system_prompt,
            state=dict(state),
            load_history=self._portable_context,
            session_id=record.session_id,
            max_tokens=getattr(self._provider.config, "max_tokens", None),
            temperature=getattr(self._provider.config, "temperature", None),
            tools=self.tools,
            response_format=response_format,
        )
        if turn or message.parts:
            *request.turn, request.message = await self._portable([*turn, message])
        if record.backend is SessionBackend.HYBRID:
            request.history = history if history is not None else await self._portable_context()
        return request

    async def _portable_context(self) -> list[Message]:
        return await self._portable(await self._context_history())

    async def _portable(self, messages: list[Message]) -> list[Message]:
        """Messages as this provider may receive them: foreign reasoning left out, call
        ids in its form, stored media with their bytes. Messages without media are
        translated once per provider and model and then served from a cache: committed
        ones by seq, a running turn's steps (never changed once made, and sent again on
        every later call of the turn) by object. A tool-heavy context would otherwise be
        walked again on every call of a loop."""
        if not any(m.parts for m in messages):
            return messages
        from langswarm_runtime.providers.portable import for_provider

        provider = self._provider
        style = (provider.provider_type, self._record.model, provider.call_id_pattern)
        if self._wire_key != style:
            self._wire_key, self._wire_cache = style, {}
        cache = self._wire_cache
        out: list[Message] = []
        for message in messages:
            if not message.parts:
                out.append(message)
                continue
            seq = message.seq
            key: int | tuple[str, int] = (
                seq
                if seq is not None and message.status is MessageStatus.COMMITTED
                else ("step", id(message))
            )
            hit = cache.get(key)
            if hit is not None and hit[0] is message:  # the entry keeps it alive: same id
                out.append(hit[1])
                continue
            (done,) = await self._with_media(for_provider(
                [message],
                provider=provider.provider_type,
                model=self._record.model,
                wire_call_id=provider.wire_call_id if provider.call_id_pattern else None,
            ))  # fmt: skip
            if not _has_media(done):  # media bytes are never kept (memory)
                if len(cache) >= _WIRE_CACHE_SIZE:
                    cache.clear()
                cache[key] = (message, done)
            out.append(done)
        return out

    async def _with_media(self, messages: list[Message]) -> list[Message]:
        from langswarm_runtime.session.storage.blobs import with_bytes

        load_blob = getattr(self._storage, "load_blob", None)
        if load_blob is None:
            return messages
        return await with_bytes(messages, load_blob, urls_too=False, strict=True)

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
            media_tokens=self._media_tokens,
        )

    def _media_tokens(self, part: ImagePart | FilePart) -> int:
        from langswarm_runtime.providers.media_tokens import media_tokens

        return media_tokens(self._provider.provider_type, part)


def _has_media(message: Message) -> bool:
    return any(isinstance(p, (ImagePart, FilePart)) for p in message.parts)
