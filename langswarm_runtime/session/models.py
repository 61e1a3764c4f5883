"""Data that sessions and storages exchange: messages, usage, session records."""

from __future__ import annotations

import enum
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langswarm_runtime.session.parts import Part, TextPart, ToolCall, ToolResult, text_of

__all__ = [
    "Message",
    "MessageStatus",
    "Role",
    "SessionBackend",
    "SessionRecord",
    "Usage",
]


class SessionBackend(str, enum.Enum):
    """Where the conversation state lives."""

    #: The provider keeps the conversation server-side; we mirror every message.
    NATIVE = "native"
    #: We keep the history and send it with every call.
    HYBRID = "hybrid"
    #: Native where the provider supports it, else hybrid.
    AUTO = "auto"

    def __str__(self) -> str:
        return self.value


class MessageStatus(str, enum.Enum):
    """Lifecycle of a stored message.

    ``pending`` is written before the provider call; ``committed`` messages are the
    history; ``failed`` (provider or middleware error) and ``interrupted`` (the process
    died mid-turn) are kept for inspection but never enter later context.
    """

    PENDING = "pending"
    COMMITTED = "committed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


#: ``tool`` messages hold tool results; ``summary`` holds a summary of turns that fell out
#: of the context window.
Role = Literal["system", "user", "assistant", "tool", "summary"]


class Usage(BaseModel):
    """Token counts for one reply, or totals for a session."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class Message(BaseModel):
    """One chat message. ``Message(role="user", content="hi")``; storage assigns ``seq``.

    ``parts`` holds what the message is made of when it is more than text (images,
    files, tool calls and results, reasoning); it is empty for a message that is only
    text. ``content`` is always the message's text: its text parts joined. Given only
    parts, ``content`` is derived from them; parts that are all text fold into
    ``content``.
    """

    model_config = ConfigDict(validate_assignment=False)

    role: Role
    content: str = ""
    parts: list[Part] = Field(default_factory=list)
    seq: int | None = None
    status: MessageStatus = MessageStatus.COMMITTED
    usage: Usage | None = None
    provider_message_id: str | None = None
    created_at: float = Field(default_factory=time.time)
    metadata: dict[str, Any] = Field(default_factory=dict)

    #: The reply validated against the turn's ``response_format`` (not stored: the
    #: stored reply is its JSON text).
    parsed: Any = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _content_is_text_of_parts(self) -> Message:
        parts = self.parts
        if not parts:
            return self
        text = text_of(parts)
        if all(isinstance(p, TextPart) for p in parts):
            object.__setattr__(self, "parts", [])
        if not self.content:
            object.__setattr__(self, "content", text)
        elif self.content != text:
            raise ValueError("content must be the text of the message's parts (or left out)")
        return self

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls this (assistant) message asks for."""
        return [p for p in self.parts if isinstance(p, ToolCall)]

    @property
    def tool_results(self) -> list[ToolResult]:
        """The tool results this (tool) message carries."""
        return [p for p in self.parts if isinstance(p, ToolResult)]

    def __str__(self) -> str:
        return self.content


class SessionRecord(BaseModel):
    """What a storage keeps about a session, besides its messages.

    ``version`` is for optimistic concurrency: ``save_session`` succeeds only when the
    stored version equals ``record.version`` and then increments both.
    """

    session_id: str
    user_id: str
    provider: str
    model: str | None = None
    backend: SessionBackend = SessionBackend.HYBRID
    system_prompt: str | None = None
    provider_state: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Names and options of the middleware configured for this session, so a hydrated
    #: session runs the same chain.
    middleware: list[dict[str, Any]] = Field(default_factory=list)
    #: The tool specs the session was given (name, description, JSON Schema), so a
    #: hydrated session replays its tool history validly and knows its tools by name.
    tools: list[dict[str, Any]] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    version: int = 0
