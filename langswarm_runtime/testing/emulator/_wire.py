"""What provider modules build on: the request/response types handed to route handlers,
the route and error-shape registries, and the deterministic reply helpers.

Kept apart from :mod:`.server` (the HTTP machinery); ``server`` re-exports all of it, so
provider modules may import from either.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langswarm_runtime.testing.emulator.server import ProviderEmulator

__all__ = [
    "EmulatorHTTPError",
    "EmulatorRequest",
    "JSONResponse",
    "RecordedRequest",
    "SSEResponse",
    "chained_calls",
    "content_text",
    "count_words",
    "echo_reply",
    "error_shape",
    "function_tool_names",
    "iter_routes",
    "media_note",
    "new_id",
    "reasoning_for",
    "require_bearer_key",
    "route",
    "schema_instance",
    "signature_of",
    "structured_reply",
    "tool_answer",
    "tool_calls_asked",
    "word_deltas",
]


# ---------------------------------------------------------------------------- messages


@dataclass
class EmulatorRequest:
    """What a route handler receives. ``path`` is relative to the provider prefix."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    provider: str
    match: re.Match[str]
    emulator: ProviderEmulator

    @property
    def state(self) -> dict[str, Any]:
        """This provider's server-side state (conversations etc.); guarded by ``lock``."""
        return self.emulator.provider_state(self.provider)

    @property
    def lock(self) -> threading.RLock:
        return self.emulator.lock


@dataclass
class JSONResponse:
    """A JSON answer."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SSEResponse:
    """A ``text/event-stream`` answer: ``(event, data)`` pairs; ``event`` None writes a
    data-only event; ``data`` that is not a str is JSON-encoded."""

    events: Iterable[tuple[str | None, Any]]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class EmulatorHTTPError(Exception):
    """Raised by a handler to answer with an error in the provider's own shape."""

    def __init__(self, status: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass
class RecordedRequest:
    """One request as the emulator saw it (credentials redacted)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    provider: str | None
    fault: str | None = None


Handler = Callable[[EmulatorRequest], "JSONResponse | SSEResponse"]
ErrorShape = Callable[[int, str, "str | None"], Any]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    provider: str
    handler: Handler


_ROUTES: list[_Route] = []
_ERROR_SHAPES: dict[str, ErrorShape] = {}


def route(method: str, pattern: str, *, provider: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` for ``method`` on ``/<provider><pattern>`` (pattern is a full
    match regex on the path after the prefix; named groups land in ``request.match``)."""

    def decorate(handler: Handler) -> Handler:
        _ROUTES.append(_Route(method.upper(), re.compile(pattern), provider, handler))
        return handler

    return decorate


def error_shape(provider: str) -> Callable[[ErrorShape], ErrorShape]:
    """Register ``fn(status, message, code) -> body`` giving this provider's error JSON."""

    def decorate(fn: ErrorShape) -> ErrorShape:
        _ERROR_SHAPES[provider] = fn
        return fn

    return decorate


def _default_error(status: int, message: str, code: str | None) -> Any:
    return {"error": {"message": message, "code": code, "status": status}}


def load_provider_modules() -> None:
    # Every sibling module registers its routes on import; new providers need no edit here.
    package = __name__.rsplit(".", 1)[0]
    path = importlib.import_module(package).__path__
    for info in pkgutil.iter_modules(path):
        if info.name not in ("server", "__main__") and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


# ---------------------------------------------------------------------------- helpers


def echo_reply(text: str, earlier: int) -> str:
    """The reply every provider route gives: quotes the new message and says how many
    messages the provider had before it, so tests can see replay and hydration."""
    return f"echo: {text} [earlier messages: {earlier}]"


def content_text(content: Any, *, part_type: str | None = "text") -> str:
    """Text of a wire message's content: a str, or a list of parts whose ``text`` is
    joined (only parts of ``part_type``; any part when it is None)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and (part_type is None or p.get("type") == part_type)
        )
    return ""


def require_bearer_key(req: EmulatorRequest) -> None:
    """No (or an empty) bearer token is a 401, as on the real services."""
    auth = req.headers.get("authorization", "")
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        raise EmulatorHTTPError(401, "no valid API key provided", code="unauthorized")


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def word_deltas(text: str) -> list[str]:
    """Split a reply into word-sized deltas that join back to ``text``."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


# The model's rules (tool calls, media notes, structured output, reasoning) are shared
# with the offline ``echo`` provider.
from langswarm_runtime.providers._model_rules import (
    chained_calls,
    count_words,
    media_note,
    reasoning_for,
    schema_instance,
    signature_of,
    structured_reply,
    tool_answer,
    tool_calls_asked,
)


def function_tool_names(
    tools: Any, bad: Callable[[str], Exception], *, require_parameters: bool = False
) -> list[str]:
    """The names of the tools offered in the OpenAI-style chat shape
    (``[{type: function, function: {name, parameters}}]``, Cohere and Mistral alike);
    a malformed list raises ``bad(reason)``, the route's own 400."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise bad("tools must be a list")
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(
                function, dict):  # fmt: skip
            raise bad("a tool is {type: function, function: {name, parameters}}")
        if require_parameters and (
            not function.get("name") or not isinstance(function.get("parameters"), dict)
        ):
            raise bad("a tool function needs a name and parameters")
        if not function.get("name"):
            raise bad("a tool function needs a name")
        names.append(str(function["name"]))
    return names


def iter_routes() -> Iterator[tuple[str, str, str]]:
    """``(provider, method, pattern)`` of every registered route."""
    load_provider_modules()
    for r in _ROUTES:
        yield r.provider, r.method, r.pattern.pattern
