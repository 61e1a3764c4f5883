"""The exception family. Callers catch these; no SDK or driver exception leaks out."""

from __future__ import annotations

__all__ = [
    "ConcurrencyError",
    "ConfigError",
    "InvalidMessage",
    "InvalidText",
    "LangSwarmError",
    "MessageRejected",
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
    "SessionNotFound",
    "StorageError",
    "ToolResultsOwed",
    "ToolRoundsExceeded",
]


class LangSwarmError(Exception):
    """Base of every error raised by langswarm-runtime."""

    #: CLI exit code for this family.
    exit_code = 1


class ConfigError(LangSwarmError):
    """A swarm.yaml (or code-first option) that cannot be used.

    ``file``, ``key_path`` and ``line`` say where, when known.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key_path: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key_path = key_path
        self.line = line
        where = ""
        if file:
            where = f"{file}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if key_path:
            where += f"{key_path}: "
        super().__init__(f"{where}{message}")


class PluginError(LangSwarmError):
    """A plugin failed to load or registered a name already taken."""

    exit_code = 2


class StorageError(LangSwarmError):
    """The session store failed (unreachable, unwritable, corrupt...)."""

    exit_code = 5


class ConcurrencyError(StorageError):
    """An optimistic-concurrency check failed: the record changed underneath us."""


class SessionNotFound(LangSwarmError):
    """No such session, or it belongs to another user (the two look the same)."""

    exit_code = 4


class InvalidMessage(LangSwarmError, ValueError):
    """A message that cannot be sent: empty, not a string, malformed."""

    exit_code = 2


class InvalidText(InvalidMessage):
    """Text that no storage can hold byte-identical: a NUL character (U+0000) or a lone
    surrogate (U+D800..U+DFFF, not valid Unicode). Raised before anything is written.

    ``field`` says where (``message``, ``user_id``, ``metadata['tags'][0]``...), ``index``
    is the character's position in that string, ``char`` the character itself.
    """

    def __init__(self, field: str, index: int, char: str) -> None:
        self.field = field
        self.index = index
        self.char = char
        code = f"U+{ord(char):04X}"
        if char == "\x00":
            what = f"a NUL character ({code}), which no storage can hold"
        else:
            what = f"a lone surrogate {code}, which is not valid Unicode (no UTF-8 form)"
        super().__init__(f"{field}: character {index} is {what}")

    def __reduce__(self) -> tuple[type[InvalidText], tuple[str, int, str]]:
        return (type(self), (self.field, self.index, self.char))


class MessageTooLarge(InvalidMessage):
    """A message over the configured size limit."""


class ToolResultsOwed(InvalidMessage):
    """The session waits for the results of caller-run tool calls (``call_ids``): send
    them with ``send_tool_results`` before a new message. Also raised for results that
    do not answer the open calls."""

    def __init__(self, message: str, call_ids: list[str]) -> None:
        super().__init__(message)
        self.call_ids = list(call_ids)

    def __reduce__(self) -> tuple[type[ToolResultsOwed], tuple[str, list[str]]]:
        return (type(self), (str(self), self.call_ids))


class MessageRejected(LangSwarmError):
    """A middleware refused the message: nothing was sent and nothing stored."""

    exit_code = 6

    def __init__(self, reason: str, *, middleware: str | None = None) -> None:
        self.reason = reason
        self.middleware = middleware
        super().__init__(reason)

    def __str__(self) -> str:
        # The chain runner fills in ``middleware`` after construction.
        prefix = f"{self.middleware}: " if self.middleware else ""
        return f"message rejected: {prefix}{self.reason}"


class MiddlewareError(LangSwarmError):
    """A middleware failed with an unexpected error; the turn was not committed."""

    exit_code = 6

    def __init__(self, message: str, *, middleware: str | None = None) -> None:
        self.middleware = middleware
        super().__init__(message)


class ProviderError(LangSwarmError):
    """The provider call failed. The turn is recorded as failed; the session stays usable."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        prefix = f"{provider}: " if provider else ""
        super().__init__(f"{prefix}{message}")


class ProviderAuthError(ProviderError):
    """Credentials missing or refused (401/403)."""


class ProviderRateLimited(ProviderError):
    """Rate limited (429), after the configured retries. ``retry_after`` in seconds if known."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status_code=status_code)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """Server error (5xx, 529) or connection failure, after the configured retries."""


class ProviderTimeout(ProviderError):
    """The provider did not answer within the configured timeout."""


class ProviderBadResponse(ProviderError):
    """The provider answered with something we cannot use (malformed body, bad request)."""


class ProviderNotFound(ProviderError):
    """The provider says the model or the remote conversation does not exist (404)."""


class ToolRoundsExceeded(ProviderError):
    """The model still asked for tools after ``max_tool_rounds`` rounds: the turn failed
    (its steps are kept for ``get_history(include_failed=True)``)."""
