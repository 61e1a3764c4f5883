"""Built-in middlewares, each also registered as a plugin type for swarm.yaml:
``pii_filter``, ``validation`` and ``audit_log``."""

from langswarm_runtime.middleware.audit import AuditLogConfig, AuditLogMiddleware
from langswarm_runtime.middleware.pii import PIIFilterConfig, PIIFilterMiddleware
from langswarm_runtime.middleware.validation import ValidationConfig, ValidationMiddleware

__all__ = [
    "AuditLogConfig",
    "AuditLogMiddleware",
    "PIIFilterConfig",
    "PIIFilterMiddleware",
    "ValidationConfig",
    "ValidationMiddleware",
]
