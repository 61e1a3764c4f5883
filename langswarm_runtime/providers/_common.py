"""Helpers every provider adapter shares: HTTP status -> ``ProviderError`` subclass,
Retry-After parsing, base URL normalising, usage building, secret scrubbing, history
shaping and a small retry loop for SDKs that do not retry by themselves.

Nothing here imports an SDK: adapters pass in what they pulled out of their exceptions.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import IntEnum
from types import ModuleType
from typing import Any, TypeVar

from pydantic import SecretStr

from langswarm_runtime.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.session.models import Message, Usage

__all__ = [
    "RETRY_AFTER_CAP",
    "SUMMARY_PREFIX",
    "Phase",
    "StreamOrder",
    "api_key_value",
    "chat_chunk_phase",
    "chat_messages",
    "error_for_status",
    "history_turns",
    "import_sdk",
    "install_hint",
    "is_retryable_status",
    "is_transport_error",
    "make_usage",
    "parse_retry_after",
    "refused_outright",
    "require_sdk",
    "retry_delay",
    "scrub",
    "sdk_available",
    "with_native_retries",
    "with_retries",
    "with_version_suffix",
    "without_version_suffix",
]

#: Longest server-directed wait we honour before a retry, where the SDK has no cap.
RETRY_AFTER_CAP = 60.0

T = TypeVar("T")

_VERSION_SUFFIX = re.compile(r"/v\d+[a-z0-9]*$")
# Bearer tokens and the usual key shapes, in case an SDK echoes one we were not told of.
_KEYLIKE = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"
    r"|\bsk-[A-Za-z0-9_\-]{8,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"
)


def install_hint(extra: str) -> str:
    """How to install a provider's SDK, from an index and from a source checkout."""
    return f"pip install 'langswarm-runtime[{extra}]' (from a clone: pip install '.[{extra}]')"


def import_sdk(module: str, extra: str) -> ModuleType:
    """Import an SDK lazily; a missing one is a ``ConfigError`` with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"the {extra} provider needs its SDK: {install_hint(extra)}") from None


def sdk_available(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (only a dotted
    name's parent packages are imported, as ``importlib.util.find_spec`` does)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules without a spec: imported already
        return module in sys.modules
    except ImportError:  # a parent package is missing
        return False


def require_sdk(module: str, extra: str | None, *, provider: str) -> None:
    """``ConfigError`` with the install hint when the SDK of ``provider`` is not
    installed: checked when a session is resolved, before anything is stored."""
    if sdk_available(module):
        return
    top = module.split(".")[0]
    hint = install_hint(extra) if extra else f"pip install {top}"
    raise ConfigError(
        f"provider {provider!r} needs the {top} SDK, which is not installed: {hint}"
    )


def api_key_value(key: SecretStr | None) -> str | None:
    """The plain key for the SDK constructor. None (also for an empty key, which is what
    ``${VAR:-}`` gives) lets the SDK read its usual environment variable."""
    value = key.get_secret_value() if key is not None else None
    return value or None


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret, and anything key-shaped, replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEYLIKE.sub(lambda m: (m.group(1) or "") + "***", text)


# ------------------------------------------------------------------------ base URLs


def with_version_suffix(base_url: str | None, suffix: str = "/v1") -> str | None:
    """``http://host`` -> ``http://host/v1``; a URL already ending in a version segment
    (``/v1``, ``/v1beta``, ``/v2``) is kept. For SDKs whose base URL includes the version
    (OpenAI)."""
    if not base_url:
        return None
    url = base_url.rstrip("/")
    return url if _VERSION_SUFFIX.search(url) else url + suffix


def without_version_suffix(base_url: str | None) -> str | None:
    """``http://host/v1`` -> ``http://host``. For SDKs that add the version themselves
    (Mistral's ``server_url``, Anthropic, Cohere)."""
    if not base_url:
        return None
    return _VERSION_SUFFIX.sub("", base_url.rstrip("/"))


# ------------------------------------------------------------------------ errors


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date).
    Uncapped: the caller may want to know the quota resets in an hour; see
    :func:`retry_delay` for the wait we actually honour."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = lower.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / divisor
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    raw = lower.get("retry-after")
    if raw:
        try:
            when = email.utils.parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, OverflowError):
            return None
        return max(0.0, when - time.time())
    return None


def retry_delay(retry_after: float | None, attempt: int, *, cap: float = RETRY_AFTER_CAP) -> float:
    """Wait before retry number ``attempt`` (0-based): Retry-After capped at ``cap``, else
    exponential backoff from 0.5 s up to 8 s."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    return float(min(0.5 * 2**attempt, 8.0))


def is_retryable_status(status: int | None) -> bool:
    """Statuses worth retrying: timeouts, conflicts/locks, rate limits, server errors."""
    return status is not None and (status in (408, 409, 429) or status >= 500)


def error_for_status(
    status: int | None,
    message: str,
    *,
    provider: str,
    retry_after: float | None = None,
) -> ProviderError:
    """The ``ProviderError`` subclass for an HTTP status (None = no response at all)."""
    text = f"HTTP {status}: {message}" if status is not None else message
    if status in (401, 403):
        return ProviderAuthError(text, provider=provider, status_code=status)
    if status == 404:
        return ProviderNotFound(text, provider=provider, status_code=status)
    if status == 408:
        return ProviderTimeout(text, provider=provider, status_code=status)
    if status == 429:
        return ProviderRateLimited(text, provider=provider, retry_after=retry_after)
    if status is None or status >= 500:  # 500, 502, 503, 504, 529 (overloaded)
        return ProviderUnavailable(text, provider=provider, status_code=status)
    return ProviderBadResponse(text, provider=provider, status_code=status)


_TRANSPORT_MODULES = frozenset({"httpx", "httpx2", "httpcore", "h11", "anyio", "aiohttp"})


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a network failure from below the SDK (httpx, httpcore, anyio,
    sockets). Some SDKs let these through unwrapped while a stream is being read."""
    if isinstance(exc, (OSError, EOFError)):  # connection reset, incomplete read...
        return True
    return type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    classify: Callable[[BaseException], ProviderError | None],
    retry_after_cap: float = RETRY_AFTER_CAP,
) -> T:
    """Run ``call``, retrying on retryable failures up to ``max_retries`` times, for SDKs
    that do not retry themselves. ``classify`` maps an exception to a ``ProviderError``
    (None: not ours, re-raise). Rate limits honour Retry-After, capped at
    ``retry_after_cap`` (60 s)."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:  # classify decides what is ours
            mapped = classify(exc)
            if mapped is None:
                raise
        retryable = isinstance(mapped, (ProviderRateLimited, ProviderUnavailable, ProviderTimeout))
        if not retryable or attempt >= max_retries:
            raise mapped  # outside the except block: the SDK error is not chained
        after = mapped.retry_after if isinstance(mapped, ProviderRateLimited) else None
        await asyncio.sleep(retry_delay(after, attempt, cap=retry_after_cap))
        attempt += 1


#: Transport failures that happen before a request is on the wire: nothing was sent.
_UNSENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout", "ConnectionRefusedError"})


def refused_outright(exc: BaseException, mapped: ProviderError) -> bool:
    """Whether the provider cannot have acted on the request: it refused it (429, 401,
    403) or the connection failed before anything was sent. Any other failure (a
    timeout, a 5xx, a connection lost mid-request) leaves it open whether the server
    applied the request."""
    if isinstance(mapped, (ProviderRateLimited, ProviderAuthError)):
        return True
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:  # SDKs wrap the transport error
        seen.add(id(cause))
        if any(cls.__name__ in _UNSENT for cls in type(cause).__mro__):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


async def with_native_retries(
    attempt: Callable[[bool], Awaitable[T]],
    *,
    max_retries: int,
    classify: Callable[[BaseException], ProviderError | None],
    retry_after_cap: float = RETRY_AFTER_CAP,
) -> T:
    """Retries for a native turn, a call that changes the conversation the provider
    holds. ``attempt(fresh)`` sends the turn; with ``fresh`` True it must drop the
    conversation the last attempt used and start a new one from the local mirror (the
    adapter keeps the current one between attempts). A retryable failure the provider
    refused outright (see :func:`refused_outright`) is retried as it was; after any other
    the server may already hold the turn (a timed-out append can still land), so the
    request is never sent again to that conversation: the retry goes to a fresh one.
    Retry-After is honoured up to ``retry_after_cap``, as in :func:`with_retries`."""
    tries = 0
    fresh = False
    while True:
        try:
            return await attempt(fresh)
        except Exception as exc:  # classify decides what is ours
            mapped = classify(exc)
            if mapped is None:
                raise
            refused = refused_outright(exc, mapped)
        retryable = isinstance(mapped, (ProviderRateLimited, ProviderUnavailable, ProviderTimeout))
        if not retryable or tries >= max_retries:
            raise mapped  # outside the except block: the SDK error is not chained
        fresh = not refused
        after = mapped.retry_after if isinstance(mapped, ProviderRateLimited) else None
        await asyncio.sleep(retry_delay(after, tries, cap=retry_after_cap))
        tries += 1


# ------------------------------------------------------------------------ stream order


class Phase(IntEnum):
    """Where an event belongs in a reply's stream (see :class:`StreamOrder`)."""

    OPEN = 0  #: the opening event (Responses ``response.created``, Anthropic ``message_start``)
    BODY = 1  #: content and anything else between the opening and the end
    END = 2  #: the terminal event (``response.completed``, a chunk with ``finish_reason``)
    TRAILER = 3  #: allowed once after the end (Chat Completions' usage-only chunk)


class StreamOrder:
    """Checks, event by event, that a streamed reply arrives in its wire's order: the
    opening event first and once (on wires that have one), content after it, one
    terminal event, at most one trailer after that; and, at ``close()``, that the
    terminal event came. Anything else raises ``ProviderBadResponse``, as does an event
    the SDK could not parse (``kind`` None): a reply put together from such a stream is
    not the reply the model gave, so it must never be committed.

    ``phases`` maps event types to their phase (unlisted types are BODY); the wire opens
    with an event when one is mapped to OPEN. ``end`` names the terminal event in the
    error (default: the first type mapped to END)."""

    def __init__(
        self, provider: str, phases: Mapping[str, Phase] | None = None, *, end: str | None = None
    ) -> None:
        self.provider = provider
        self._phases = dict(phases or {})
        ends = [kind for kind, phase in self._phases.items() if phase is Phase.END]
        self.end = end or (ends[0] if ends else "the terminal event")
        self._at: Phase | None = None if Phase.OPEN in self._phases.values() else Phase.OPEN

    def see(self, kind: str | None, phase: Phase | None = None) -> None:
        """Record one event (its phase from ``phases`` unless given); raise if it cannot
        come now."""
        if kind is None:
            raise ProviderBadResponse("stream event could not be parsed", provider=self.provider)
        if phase is None:
            phase = self._phases.get(kind, Phase.BODY)
        at = self._at
        if at is None:
            ok, why = phase is Phase.OPEN, "before the opening event"
        elif phase is Phase.OPEN:
            ok, why = False, "a second opening event" if at is Phase.OPEN else "after content"
        elif phase is Phase.TRAILER:
            ok, why = at is Phase.END, "before the end" if at < Phase.END else "a second trailer"
        else:  # BODY or END: the reply must still be open
            ok, why = at < Phase.END, "after the end of the reply"
        if not ok:
            raise ProviderBadResponse(
                f"stream event {kind!r} out of sequence: {why}", provider=self.provider
            )
        self._at = phase

    @property
    def ended(self) -> bool:
        return self._at is not None and self._at >= Phase.END

    def close(self) -> None:
        """The stream is over: raise unless its terminal event came."""
        if not self.ended:
            raise ProviderBadResponse(
                f"stream ended before its terminal event ({self.end})", provider=self.provider
            )


def chat_chunk_phase(chunk: Any) -> tuple[str, Phase]:
    """(what it is, its phase) for a Chat Completions stream chunk (OpenAI, Mistral and
    compatible servers): the chunk that finishes choice 0 ends the reply, a chunk with
    no choices but usage (what ``include_usage`` adds) is the trailer, and any other is
    content (Azure's first chunk has no choices and no usage)."""
    choices = chunk.choices or []
    if any(c.index == 0 and c.finish_reason is not None for c in choices):
        return "finishing chunk", Phase.END
    if not choices and chunk.usage is not None:
        return "usage chunk", Phase.TRAILER
    return "content chunk", Phase.BODY


# ------------------------------------------------------------------------ usage, history


def _int(value: Any) -> int:
    # Some SDKs report counts as floats (cohere) or leave them out (None).
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def make_usage(input_tokens: Any = 0, output_tokens: Any = 0, cached_tokens: Any = 0) -> Usage:
    """A ``Usage`` from whatever the SDK reported (ints, floats or None)."""
    return Usage(
        input_tokens=_int(input_tokens),
        output_tokens=_int(output_tokens),
        cached_tokens=_int(cached_tokens),
    )


#: How a stored summary of dropped turns is introduced to the model.
SUMMARY_PREFIX = "Summary of the earlier conversation: "


def history_turns(messages: Iterable[Message]) -> list[tuple[str, str]]:
    """(role, text) pairs for a provider: user/assistant as they are, a stored ``summary``
    of dropped turns as a system note, stored system messages as system."""
    return [
        ("system", SUMMARY_PREFIX + m.content) if m.role == "summary" else (m.role, m.content)
        for m in messages
    ]


def chat_messages(messages: Iterable[Message]) -> list[dict[str, str]]:
    """``history_turns`` as ``{"role": ..., "content": ...}`` dicts, the shape most chat
    APIs take, built in one pass (it runs over the whole window on every turn)."""
    return [
        {"role": "system", "content": SUMMARY_PREFIX + m.content}
        if m.role == "summary"
        else {"role": m.role, "content": m.content}
        for m in messages
    ]
