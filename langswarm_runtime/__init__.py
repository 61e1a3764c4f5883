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

__version__ = "0.1.0"

__all__ = [
    "ConcurrencyError",
    "ConfigError",
    "ISessionMiddleware",
    "ISessionStorage",
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
    "SQLiteSessionStorage",
    "Session",
    "SessionBackend",
    "SessionManager",
    "SessionNotFound",
    "SessionRecord",
    "StorageError",
    "Usage",
    "hookimpl",
]
