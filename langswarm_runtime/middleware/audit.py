"""``audit_log``: one JSON line per message, to a file or a logger.

A line holds when, which session and user, the seq when known, role, direction, sizes
and the SHA-256 of the content, so an auditor can prove what was exchanged without the
log holding it. ``include_content: true`` adds the content itself; API-key-like secrets
in it are still replaced by ``[API_KEY]`` because a log is the last place for a key.

Where it sits in the chain matters: outgoing runs in declared order and incoming in
reverse, so put ``audit_log`` *after* ``pii_filter`` to log what was stored in both
directions, or before it to log what the user and the provider really sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.middleware._common import (
    BOTH_DIRECTIONS,
    Direction,
    build_config,
    session_attr,
)
from langswarm_runtime.middleware.pii import redact_text
from langswarm_runtime.session.middleware import ISessionMiddleware
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import ToolCall, ToolResult

__all__ = ["DEFAULT_AUDIT_LOGGER", "AuditLogConfig", "AuditLogMiddleware"]

DEFAULT_AUDIT_LOGGER = "langswarm_runtime.audit"


class AuditLogConfig(BaseModel):
    """Options of the ``audit_log`` middleware. Give ``path`` or ``logger``; with neither,
    lines go to the ``langswarm_runtime.audit`` logger at INFO."""

    model_config = ConfigDict(extra="forbid")

    #: Accepted (and ignored) so a whole YAML block validates.
    type: str | None = None
    #: File to append JSON lines to (created with mode 0600).
    path: str | None = None
    #: Logger name to emit JSON lines on, at INFO.
    logger: str | None = None
    #: Also log the message text (secrets still redacted).
    include_content: bool = False
    directions: list[Direction] = Field(default_factory=lambda: list(BOTH_DIRECTIONS))

    @model_validator(mode="after")
    def _one_sink(self) -> AuditLogConfig:
        if self.path and self.logger:
            raise ValueError("give either path or logger, not both")
        return self


class AuditLogMiddleware(ISessionMiddleware):
    """Writes one JSON line per message; never changes or rejects messages.

    Code-first: ``AuditLogMiddleware(path="audit.jsonl")`` or ``AuditLogMiddleware()``
    (the ``langswarm_runtime.audit`` logger).
    """

    name = "audit_log"
    filters_deltas = False

    def __init__(self, config: AuditLogConfig | None = None, **options: Any) -> None:
        self.config = build_config(AuditLogConfig, config, options, self.name)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._logger: logging.Logger | None = None
        if self.config.path:
            self._path = Path(self.config.path).expanduser()
            self._open()
        else:
            self._logger = logging.getLogger(self.config.logger or DEFAULT_AUDIT_LOGGER)

    def _open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND: each line is one write(2) at the end, so processes sharing the
            # file do not interleave lines.
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(self._fd, 0o600)  # an older, wider file is tightened, not trusted
        except OSError as exc:
            raise ConfigError(f"cannot open audit log: {exc.strerror}",
                              key_path="audit_log.path") from None

    def record(self, session: object, message: Message, direction: Direction) -> dict[str, Any]:
        """The JSON object logged for ``message``."""
        content = message.content
        entry: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "session_id": session_attr(session, "session_id"),
            "user_id": session_attr(session, "user_id"),
            "seq": message.seq,
            "role": message.role,
            "direction": direction,
            "chars": len(content),
            "bytes": len(content.encode("utf-8")),
            "sha256": hashlib.sha256(content.encode("utf-8")).hexdigest(),
        }
        if self.config.include_content:
            entry["content"] = redact_text(content, ("api_key",))
        return entry

    def _emit(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        if self._logger is not None:
            self._logger.info(line)
            return
        data = (line + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            os.write(self._fd, data)

    def _process(self, session: object, message: Message, direction: Direction) -> Message:
        if direction in self.config.directions:
            self._emit(self.record(session, message, direction))
        return message

    def process_outgoing_message(self, session: Any, message: Message) -> Message:
        return self._process(session, message, "outgoing")

    def process_incoming_message(self, session: Any, message: Message) -> Message:
        return self._process(session, message, "incoming")

    def process_tool_call(self, session: Any, call: ToolCall) -> ToolCall:
        """One line per tool call the model makes (direction ``incoming``)."""
        if "incoming" in self.config.directions:
            arguments = json.dumps(call.arguments, ensure_ascii=False, sort_keys=True)
            entry = self._part_entry(session, "tool_call", "incoming", arguments)
            entry.update(call_id=call.id, tool=call.name)
            if self.config.include_content:
                entry["arguments"] = redact_text(arguments, ("api_key",))
            self._emit(entry)
        return call

    def process_tool_result(self, session: Any, result: ToolResult) -> ToolResult:
        """One line per tool result sent to the model (direction ``outgoing``)."""
        if "outgoing" in self.config.directions:
            entry = self._part_entry(session, "tool_result", "outgoing", result.content)
            entry.update(call_id=result.call_id, tool=result.name, is_error=result.is_error)
            if self.config.include_content:
                entry["content"] = redact_text(result.content, ("api_key",))
            self._emit(entry)
        return result

    def _part_entry(
        self, session: object, kind: str, direction: Direction, text: str
    ) -> dict[str, Any]:
        return {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "session_id": session_attr(session, "session_id"),
            "user_id": session_attr(session, "user_id"),
            "kind": kind,
            "direction": direction,
            "chars": len(text),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }

    def close(self) -> None:
        """Close the file (reopened on the next message). Idempotent."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


@hookimpl
def register_middlewares(register: Any) -> None:
    register("audit_log", AuditLogMiddleware, AuditLogConfig)
