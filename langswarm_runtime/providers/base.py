"""The provider contract: one adapter per provider, translating a ``ProviderRequest`` into
an SDK call and the SDK's answer (or error) back into a ``ProviderReply`` (or a
``ProviderError`` subclass). SDKs are imported inside the adapter, never at module import."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from langswarm_runtime.session.models import Message, SessionBackend, Usage
from langswarm_runtime.session.parts import Part
from langswarm_runtime.tools.spec import ToolSpec

__all__ = [
    "ContextConfig",
    "Provider",
    "ProviderConfig",
    "ProviderReply",
    "ProviderRequest",
]


class ContextConfig(BaseModel):
    """How much stored history a hybrid session sends with each call."""

    model_config = ConfigDict(extra="forbid")

    max_messages: int | None = Field(default=200, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    strategy: str = "truncate"
    #: ``truncate`` only. None: once full, the window slides one turn per turn (the most
    #: context, but the prompt's first message changes every turn, which defeats the
    #: providers' prompt caches). N: the window's start moves forward in steps of N
    #: sequence numbers (a turn normally takes three: its pending record, then the
    #: committed user message and reply), so the prompt prefix stays byte-identical for
    #: about N/3 turns at a time, at the cost of sending up to about 2N/3 fewer messages
    #: than would fit. Must be below ``max_messages``.
    step: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _step_below_window(self) -> ContextConfig:
        if (
            self.step is not None
            and self.max_messages is not None
            and (self.step >= self.max_messages)
        ):
            raise ValueError(
                f"context.step ({self.step}) must be below max_messages "
                f"({self.max_messages}), or the window could be left empty"
            )
        return self


class ProviderConfig(BaseModel):
    """Options every provider entry takes. Provider plugins subclass it to add theirs."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    context: ContextConfig = Field(default_factory=ContextConfig)
    #: Middleware chain for sessions on this entry, after the global chain.
    middleware: list[dict[str, Any]] = Field(default_factory=list)
    #: Names of ``tools:`` entries sessions on this entry get, after ``defaults.tools``.
    tools: list[str] = Field(default_factory=list)


@dataclass
class ProviderRequest:
    """Everything an adapter needs for one call of a turn.

    ``message`` is the newest message: the user's (first call of a turn) or a ``tool``
    message of tool results (later calls of a tool loop). ``turn`` holds the messages of
    the running turn before it (the user message, then the assistant's tool calls and
    the tool results so far), oldest first; empty on a turn's first call.

    - HYBRID: ``history`` holds the committed context (oldest first, already cut to the
      context policy); send system prompt + history + turn + message.
    - NATIVE: ``history`` is empty; ``state`` holds what the adapter stored last time
      (e.g. a conversation id), and the remote conversation already holds ``turn``, so
      send ``message`` only. When there is no remote conversation yet, or the provider
      says it is gone, re-seed it from ``await load_history()`` (the local mirror) +
      ``turn`` + ``message``.

    Media parts arrive with their bytes (``data``) or a ``url``; reasoning parts that
    another provider or model family produced are already left out, and tool-call ids
    are already in the form this provider accepts (``Provider.wire_call_id``).
    ``tools``: the tools offered (empty: none). ``response_format``: a JSON Schema the
    reply must follow (``{"name": ..., "schema": {...}, "strict": bool}``), or None.
    """

    message: Message
    model: str | None
    backend: SessionBackend
    system_prompt: str | None = None
    history: list[Message] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    load_history: Callable[[], Awaitable[list[Message]]] | None = None
    session_id: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    turn: list[Message] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    response_format: dict[str, Any] | None = None

    def conversation(self) -> list[Message]:
        """What a hybrid call sends after the system prompt: history + turn + message."""
        return [*self.history, *self.turn, self.message]


@dataclass
class ProviderReply:
    """The provider's answer. ``state`` replaces the session's provider state when not
    None. ``parts``: the reply's parts in the order the provider gave them (text, tool
    calls, reasoning); may be left empty for a reply that is only text (``content``).
    A reply with tool calls asks the runtime to run them; ``content`` is then the text
    that came with them (often empty)."""

    content: str
    usage: Usage = field(default_factory=Usage)
    provider_message_id: str | None = None
    state: dict[str, Any] | None = None
    model: str | None = None
    parts: list[Part] = field(default_factory=list)


class Provider(ABC):
    """A configured provider entry. One instance per entry, shared by its sessions."""

    #: Whether the provider can hold conversation state server-side.
    supports_native: bool = False
    #: The SDK module the adapter imports on first use, and the extra of this package
    #: that installs it (None for a plugin's own dependency). Found, not imported, when
    #: a session is resolved: a missing SDK is a ConfigError before anything is stored.
    sdk_module: str | None = None
    sdk_extra: str | None = None
    #: Hosts of the provider's own API. ``backend: auto`` picks native only there (or
    #: with no ``base_url``): a proxy or compatible server may accept a native request
    #: and silently keep nothing, so elsewhere native must be asked for explicitly.
    official_hosts: frozenset[str] = frozenset()

    #: What the provider's API accepts as a tool-call id (None: any string). Ids of
    #: another form (made by another provider before a switch) are rewritten, the same
    #: way every time, by ``wire_call_id``.
    call_id_pattern: str | None = None

    def __init__(self, config: ProviderConfig, *, name: str | None = None) -> None:
        self.config = config
        self.name = name or config.type or type(self).__name__
        self._clients: dict[int, Any] = {}

    @property
    def default_model(self) -> str | None:
        return self.config.model

    @property
    def provider_type(self) -> str:
        """The registered type name (``openai``, ``anthropic``, ...): what a reasoning
        part records as its ``provider``, so it is replayed only to this API."""
        return self.config.type or self.name

    def wire_call_id(self, call_id: str) -> str:
        """``call_id`` in a form this provider accepts (see ``call_id_pattern``): kept
        when it already fits, else derived from it deterministically, so a call and its
        result always map to the same id."""
        from langswarm_runtime.providers.portable import rewrite_call_id

        return rewrite_call_id(call_id, self.call_id_pattern)

    def native_refusal(self) -> str | None:
        """Why this entry can never run native, whatever its endpoint (None: it can)."""
        return None if self.supports_native else "the provider keeps no conversation state"

    def official_endpoint(self) -> bool:
        """Whether the entry talks to the provider's own API: no ``base_url``, or an
        https one on a host of ``official_hosts``."""
        base_url = getattr(self.config, "base_url", None)
        if not base_url:
            return True
        url = urlsplit(base_url.strip())
        try:
            port = url.port
        except ValueError:
            return False
        host = (url.hostname or "").rstrip(".").lower()
        return url.scheme == "https" and port in (None, 443) and host in self.official_hosts

    @abstractmethod
    async def send(self, request: ProviderRequest) -> ProviderReply:
        """One turn, whole reply."""

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        """One turn streamed: yields text deltas, then exactly one final ``ProviderReply``
        carrying the whole content. The default sends and yields the reply at once."""
        reply = await self.send(request)
        if reply.content:
            yield reply.content
        yield reply

    def client(self) -> Any:
        """The SDK client for the running event loop, built on first use by
        ``new_client()`` (so the SDK is imported only then). One per loop, because httpx
        connection pools are bound to the loop that opened them."""
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = self._clients[loop_id] = self.new_client()
        return client

    def new_client(self) -> Any:
        """Build the SDK client (adapters that use ``client()`` override this)."""
        raise NotImplementedError(f"{type(self).__name__} has no SDK client")

    async def close_client(self, client: Any) -> None:
        """Release one SDK client (override where the SDK spells it differently)."""
        await client.close()

    async def close(self) -> None:
        """Release clients. Idempotent."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            try:
                await self.close_client(client)
            except RuntimeError:  # opened on a loop that is gone; nothing left to release
                pass
