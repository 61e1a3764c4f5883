"""langswarm-runtime: persistent, provider-agnostic LLM chat sessions.

    from langswarm_runtime import SessionManager, SQLiteSessionStorage

    manager = SessionManager(storage=SQLiteSessionStorage(db_path="app.db"))
    session = await manager.create_session(user_id="u1", provider="echo")
    reply = await session.send_message("hi")
"""

from langswarm_runtime.errors import (
    ConcurrencyError,
    ConfigError,
    InvalidMessage,
    InvalidText,
    LangSwarmError,
    MessageRejected,
    MessageTooLarge,
    MiddlewareError,
    PluginError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    SessionNotFound,
    StorageError,
    ToolResultsOwed,
    ToolRoundsExceeded,
)
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.session import (
    ISessionMiddleware,
    ISessionStorage,
    LangSwarmSessionManager,
    MemorySessionStorage,
    Message,
    MessageStatus,
    Session,
    SessionBackend,
    SessionManager,
    SessionRecord,
    SQLiteSessionStorage,
    Usage,
)
from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.session.turns import TurnEvent
from langswarm_runtime.tools.spec import Tool, ToolSpec, tool

__version__ = "0.1.0"

__all__ = [
    "ConcurrencyError",
    "ConfigError",
    "FilePart",
    "ISessionMiddleware",
    "ISessionStorage",
    "ImagePart",
    "InvalidMessage",
    "InvalidText",
    "LangSwarmError",
    "LangSwarmSessionManager",
    "MemorySessionStorage",
    "Message",
    "MessageRejected",
    "MessageStatus",
    "MessageTooLarge",
    "MiddlewareError",
    "PluginError",
    "ProviderAuthError",
    "ProviderBadResponse",
    "ProviderError",
    "ProviderNotFound",
    "ProviderRateLimited",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ReasoningPart",
    "SQLiteSessionStorage",
    "Session",
    "SessionBackend",
    "SessionManager",
    "SessionNotFound",
    "SessionRecord",
    "StorageError",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolResult",
    "ToolResultsOwed",
    "ToolRoundsExceeded",
    "ToolSpec",
    "TurnEvent",
    "Usage",
    "hookimpl",
    "tool",
]
