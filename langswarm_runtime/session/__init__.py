"""Sessions: the manager, the session, messages, middleware and storage contracts."""

from langswarm_runtime.session.manager import LangSwarmSessionManager, SessionManager
from langswarm_runtime.session.middleware import ISessionMiddleware
from langswarm_runtime.session.models import (
    Message,
    MessageStatus,
    SessionBackend,
    SessionRecord,
    Usage,
)
from langswarm_runtime.session.session import Session
from langswarm_runtime.session.storage import (
    ISessionStorage,
    MemorySessionStorage,
    SQLiteSessionStorage,
)

__all__ = [
    "ISessionMiddleware",
    "ISessionStorage",
    "LangSwarmSessionManager",
    "MemorySessionStorage",
    "Message",
    "MessageStatus",
    "SQLiteSessionStorage",
    "Session",
    "SessionBackend",
    "SessionManager",
    "SessionRecord",
    "Usage",
]
