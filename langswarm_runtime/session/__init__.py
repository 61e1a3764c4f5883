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
    "SessionManager",
    "LangSwarmSessionManager",
    "Session",
    "SessionBackend",
    "SessionRecord",
    "Message",
    "MessageStatus",
    "Usage",
    "ISessionMiddleware",
    "ISessionStorage",
    "MemorySessionStorage",
    "SQLiteSessionStorage",
]
