"""SessionManager: create, hydrate, list and delete sessions over one storage."""

from __future__ import annotations

import os
import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Self

from langswarm_runtime.errors import ConfigError, SessionNotFound, StorageError
from langswarm_runtime.session.models import MessageStatus, SessionBackend, SessionRecord
from langswarm_runtime.session.session import Session
from langswarm_runtime.session.text import check_record, check_text, check_tree, is_storable

if TYPE_CHECKING:
    from langswarm_runtime.config import SwarmConfig
    from langswarm_runtime.plugins import PluginManager
    from langswarm_runtime.runtime import Runtime
    from langswarm_runtime.session.storage.base import ISessionStorage

__all__ = ["LangSwarmSessionManager", "SessionManager"]


def _usable_id(value: object) -> bool:
    """An id some session can have: a non-empty string every storage can hold."""
    return isinstance(value, str) and bool(value) and is_storable(value)


def new_session_id() -> str:
    """Opaque and unguessable: 144 random bits, no user data inside."""
    return "ses_" + secrets.token_urlsafe(18)


class SessionManager:
    """Entry point: ``SessionManager(storage=...)`` (code-first) or
    ``SessionManager.from_config("swarm.yaml")`` (config-first).

    Code-first needs no YAML: ``provider="anthropic"`` names a provider plugin, used with
    its defaults and the SDK's usual environment variables. With no ``storage`` the
    configured one is used (SQLite ``sessions.db`` by default).
    """

    def __init__(
        self,
        storage: ISessionStorage | None = None,
        *,
        config: SwarmConfig | None = None,
        plugins: PluginManager | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        from langswarm_runtime.runtime import Runtime

        self.runtime = runtime or Runtime(config=config, plugins=plugins)
        self.config = self.runtime.config
        self.storage: ISessionStorage = storage or self.runtime.build_storage()
        self._cache: OrderedDict[str, Session] = OrderedDict()
        self._cache_size = max(1, self.config.defaults.session_cache_size)
        self._closed = False
        self._started = False

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] | None = None, *, environ: Any = None
    ) -> SessionManager:
        """Build storage, providers and middleware from a swarm.yaml (default:
        ``$LANGSWARM_CONFIG``, else ``./swarm.yaml``)."""
        from langswarm_runtime.runtime import Runtime

        return cls(runtime=Runtime.from_file(path, environ=environ))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def start(self) -> None:
        """Run the plugins' ``startup`` hooks (done on first use if not called)."""
        if not self._started:
            self._started = True
            await self.runtime.plugins.startup(self.runtime)

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the storage and provider clients. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._cache.clear()
        try:
            await self.storage.close()
        finally:
            try:
                await self.runtime.close()
            finally:
                if self._started:
                    await self.runtime.plugins.shutdown(self.runtime)

    # -- cache -----------------------------------------------------------------------------
    def _remember(self, session: Session) -> None:
        self._cache[session.session_id] = session
        self._cache.move_to_end(session.session_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _build(self, record: SessionRecord, tools: Any = None) -> Session:
        provider, context = self.runtime.provider_for(record.provider)
        chain = self.runtime.build_middleware(record.middleware)
        defaults = self.config.defaults
        # Implementations: the configured tools the record names, then the caller's.
        configured = self.runtime.tools_named([t["name"] for t in record.tools])
        return Session(
            record=record,
            storage=self.storage,
            provider=provider,
            context=context,
            middleware=chain,
            max_message_bytes=defaults.max_message_bytes,
            resolve_provider=self.runtime.resolve_switch,
            tools=[*configured, *(tools or ())],
            max_tool_rounds=defaults.max_tool_rounds,
            tool_timeout=defaults.tool_timeout,
            max_media_bytes=defaults.max_media_bytes,
        )

    # -- API --------------------------------------------------------------------------------
    async def create_session(
        self,
        user_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        backend: SessionBackend | str | None = None,
        system_prompt: str | None = None,
        metadata: dict[str, Any] | None = None,
        tools: Any = None,
    ) -> Session:
        """Create and persist a new session.

        ``provider`` names an entry under ``providers:`` (or a provider plugin type);
        ``system_prompt`` defaults to the config's template rendered for this session.
        ``tools``: callables (``@tool`` or plain), ``Tool``s or ``ToolSpec``s (caller-run),
        added to the tools swarm.yaml gives the entry (``defaults.tools`` and the
        provider entry's ``tools``).
        """
        await self.start()
        defaults = self.config.defaults
        user_id = user_id if user_id is not None else defaults.user_id
        if not isinstance(user_id, str) or not user_id:
            raise ConfigError("user_id must be a non-empty string")
        if metadata is not None and not isinstance(metadata, dict):
            raise ConfigError("metadata must be a dict")
        # Text no storage can hold (NUL, lone surrogates) is InvalidText, before any
        # work; the whole record (rendered prompt included) is checked again below.
        check_text(user_id, "user_id")
        if metadata:
            check_tree(metadata, "metadata")
        provider_name = provider or defaults.provider
        instance, _ = self.runtime.provider_for(provider_name)
        resolved_model = model or self.runtime.default_model(provider_name, instance)
        resolved_backend = self.runtime.resolve_backend(
            provider_name, instance, backend if backend is not None else defaults.backend
        )
        if system_prompt is None and defaults.system_prompt:
            from langswarm_runtime.templating import render_system_prompt

            system_prompt = render_system_prompt(
                defaults.system_prompt,
                user_id=user_id,
                metadata=metadata or {},
                model=resolved_model,
                provider=provider_name,
            )
        specs = self.runtime.middleware_specs(provider_name)
        # MCP servers are listed in a worker thread, not on the event loop.
        await self.runtime.open_tools(provider=provider_name)
        configured = self.runtime.tools_for(provider_name)
        record = SessionRecord(
            session_id=new_session_id(),
            user_id=user_id,
            provider=provider_name,
            model=resolved_model,
            backend=resolved_backend,
            system_prompt=system_prompt,
            metadata=dict(metadata or {}),
            middleware=specs,
        )
        session = self._build(record, [*configured, *(tools or ())])  # before anything is stored
        record = session._record
        check_record(record)
        await self.storage.create_session(record)
        self._remember(session)
        return session

    async def get_session(
        self, session_id: str, user_id: str | None = None, *, tools: Any = None
    ) -> Session | None:
        """The session, hydrated from storage after a restart; None when it does not exist
        or belongs to another user (the two look the same). An id no session can have
        (not a string, empty, or holding a NUL or a lone surrogate) is a missing session.

        ``tools``: implementations of the session's tools in this process (those from
        swarm.yaml come back by name); a call to a tool without one is returned to the
        caller as a caller-run call."""
        if not _usable_id(session_id) or (user_id is not None and not _usable_id(user_id)):
            return None
        await self.start()
        session = self._cache.get(session_id)
        if session is None:
            record = await self.storage.load_session(session_id)
            if record is None:
                return None
            if user_id is not None and record.user_id != user_id:
                return None
            await self.runtime.open_tools([t["name"] for t in record.tools])
            session = self._build(record, tools)
            await self._mark_interrupted(session)
        elif user_id is not None and session.user_id != user_id:
            return None
        elif tools:
            session._offer(tools)
        self._remember(session)
        return session

    async def _mark_interrupted(self, session: Session) -> None:
        """A turn still pending when its session is hydrated was cut off by a crash. It
        may have reached the provider, and a remote conversation holding it would show
        the model a turn the mirror never commits: a native session drops it (before the
        turn is marked, so a crash in between leaves the turn pending for the next
        hydration), and the next turn re-seeds from the committed history."""
        sid = session.session_id
        pending = await self.storage.load_messages(sid, statuses=[MessageStatus.PENDING])
        seqs = [m.seq for m in pending if m.seq is not None]
        if seqs:
            await session._drop_remote_conversation()
            await self.storage.update_message_status(sid, seqs, MessageStatus.INTERRUPTED)

    async def require_session(self, session_id: str, user_id: str | None = None) -> Session:
        """Like ``get_session`` but raises ``SessionNotFound``."""
        session = await self.get_session(session_id, user_id=user_id)
        if session is None:
            raise SessionNotFound(f"session {session_id!r} not found")
        return session

    async def list_sessions(
        self, user_id: str | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> list[SessionRecord]:
        """Session records, newest-updated first. A user id no session can have (see
        ``get_session``) has none."""
        if user_id is not None and not _usable_id(user_id):
            return []
        if cursor is not None and not _usable_id(cursor):
            raise StorageError(f"unknown cursor: {cursor!r}")
        return await self.storage.list_sessions(user_id=user_id, limit=limit, cursor=cursor)

    async def delete_session(self, session_id: str, user_id: str | None = None) -> None:
        """Delete a session and its messages; ``SessionNotFound`` if absent or not yours."""
        if not _usable_id(session_id) or (user_id is not None and not _usable_id(user_id)):
            raise SessionNotFound(f"session {session_id!r} not found")
        record = await self.storage.load_session(session_id)
        if record is None or (user_id is not None and record.user_id != user_id):
            raise SessionNotFound(f"session {session_id!r} not found")
        self._cache.pop(session_id, None)
        await self.storage.delete_session(session_id)


#: The name used in earlier releases and in much user code.
LangSwarmSessionManager = SessionManager
