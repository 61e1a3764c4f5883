"""The ``anthropic`` provider: Claude through the official ``anthropic`` SDK.

- HYBRID: the Messages API (``client.messages.create``) with the system prompt in
  ``system=`` and the stored history as user/assistant turns. With ``prompt_caching``
  (on by default) the system prompt and the last history message carry ``cache_control``
  breakpoints, so repeated turns read the history from Anthropic's prompt cache.
- NATIVE: the beta message threads (``client.beta.messages.create(thread=...)`` with the
  ``message-threads-2026-08-12`` beta): the first turn creates a thread seeded with the
  local mirror; later turns ``continue`` from the last reply id (kept in the session's
  provider state) and send only the new message. A thread the server lost, or one that
  moved on without us (a turn that failed on our side after the server kept it), is
  re-seeded from the mirror under a new thread, and the caller sees no error. A thread
  keeps the system prompt and the tools it was created with (a ``continue`` may not
  repeat them), so a turn offering other tools starts a new thread from the mirror.

Rich turns (tool_use / tool_result, image and document blocks, thinking blocks with
their signatures, ``output_config`` JSON schemas) are translated by the pure functions
of ``_anthropic_parts``; tool-call ids of other providers are rewritten by the session
to ``call_id_pattern``. Thinking is asked for with the entry's ``extra: {thinking:
...}``, as the API spells it.

Retries are the SDK's own (``max_retries``); its Retry-After wait is capped at 60 s here,
because the SDK honours whatever the server asks for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from functools import cache
from typing import Any, Literal

from pydantic import Field, field_validator

from langswarm_runtime.errors import (
    ConfigError,
    LangSwarmError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.providers._anthropic_parts import (
    BlockStream,
    mark_cache,
    output_config,
    parts_from_blocks,
    to_messages,
    tools_param,
)
from langswarm_runtime.providers._common import (
    RETRY_AFTER_CAP,
    Phase,
    StreamOrder,
    api_key_value,
    error_for_status,
    import_sdk,
    is_transport_error,
    make_usage,
    parse_retry_after,
    scrub,
    without_version_suffix,
)
from langswarm_runtime.providers.base import (
    Provider,
    ProviderConfig,
    ProviderReply,
    ProviderRequest,
)
from langswarm_runtime.session.models import Message, SessionBackend, Usage
from langswarm_runtime.session.parts import Part, TextPart

__all__ = ["STATE_KEY", "THREADS_BETA", "TOOLS_KEY", "AnthropicConfig", "AnthropicProvider"]

#: The beta that enables server-held message threads.
THREADS_BETA = "message-threads-2026-08-12"
#: Error codes after which the thread must be replayed in full under a new one.
_REPLAY_CODES = frozenset(
    {"thread_not_found", "thread_already_continued", "thread_continue_in_flight"}
)
#: Provider-state key of the reply the next turn continues from (namespaced: another
#: provider's adapter never mistakes it for its own).
STATE_KEY = "anthropic_previous_message_id"
#: Provider-state key of the tools the thread was created with (a digest): a thread
#: keeps its tools, so a turn offering others starts a new thread.
TOOLS_KEY = "anthropic_thread_tools"
#: How Messages stream events are ordered (see ``StreamOrder``); the rest are BODY.
_PHASES = {"message_start": Phase.OPEN, "message_stop": Phase.END}


class AnthropicConfig(ProviderConfig):
    """Options of an ``anthropic`` provider entry (``api_key`` defaults to the SDK's
    ``ANTHROPIC_API_KEY``; ``base_url`` is the host root, without ``/v1``)."""

    model: str | None = "claude-sonnet-5-5"
    #: Sent when neither the entry nor the request sets ``max_tokens`` (the API needs one).
    default_max_tokens: int = Field(default=1024, ge=1)
    #: Hybrid mode: mark the stable prefix (system prompt, and the history up to the last
    #: message before the new one) with ``cache_control`` breakpoints, so each turn reads
    #: the previous turns from Anthropic's prompt cache.
    prompt_caching: bool = True
    #: Lifetime of the cache entries (``5m`` or ``1h``); None: the API's default (5 min).
    prompt_cache_ttl: Literal["5m", "1h"] | None = None

    @field_validator("temperature")
    @classmethod
    def _no_temperature(cls, value: float | None) -> float | None:
        # The current Messages API has no sampling knobs; failing here beats a TypeError
        # on the first turn.
        if value is not None:
            raise ValueError("the Anthropic Messages API takes no temperature; leave it unset")
        return value


@cache
def _client_class(sdk: Any) -> type[Any]:
    """``AsyncAnthropic`` with its retry wait capped: built once, after the lazy import."""

    class CappedAsyncAnthropic(sdk.AsyncAnthropic):  # type: ignore[misc]
        #: Longest Retry-After we honour; the SDK itself would wait as long as asked.
        retry_after_cap: float = RETRY_AFTER_CAP

        def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
            wait = super()._calculate_retry_timeout(*args, **kwargs)
            return float(min(wait, self.retry_after_cap))

    return CappedAsyncAnthropic


def _tools_key(request: ProviderRequest) -> str | None:
    """A digest of the tools a request offers (None: none)."""
    if not request.tools:
        return None
    text = json.dumps(tools_param(request.tools), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _error_code(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    code = details.get("error_code") if isinstance(details, dict) else None
    return code if isinstance(code, str) else None


def _error_message(body: Any, fallback: str) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else fallback


class AnthropicProvider(Provider):
    """Claude via the Messages API (hybrid) or beta message threads (native)."""

    supports_native = True
    official_hosts = frozenset({"api.anthropic.com"})
    sdk_module = "anthropic"
    sdk_extra = "anthropic"
    call_id_pattern = r"^[a-zA-Z0-9_-]+$"

    def __init__(self, config: AnthropicConfig | None = None, *, name: str | None = None) -> None:
        super().__init__(config or AnthropicConfig(), name=name or "anthropic")
        self.config: AnthropicConfig
        #: Longest Retry-After wait honoured between the SDK's retries, in seconds.
        self.retry_after_cap = RETRY_AFTER_CAP

    # -- client ------------------------------------------------------------------------
    def _sdk(self) -> Any:
        return import_sdk("anthropic", "anthropic")

    def new_client(self) -> Any:
        """The SDK client, built on first use (the SDK is imported only then)."""
        kwargs: dict[str, Any] = {
            # An empty key (``${VAR:-}`` unset) means: let the SDK read its variable.
            "api_key": api_key_value(self.config.api_key) or None,
            "max_retries": self.config.max_retries,
            "timeout": self.config.timeout,
        }
        base_url = without_version_suffix(self.config.base_url)
        if base_url:
            kwargs["base_url"] = base_url
        try:
            client = _client_class(self._sdk())(**kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. no key anywhere
            raise ProviderAuthError(self._scrub(str(exc)), provider=self.name) from None
        client.retry_after_cap = self.retry_after_cap
        return client

    # -- request shaping ---------------------------------------------------------------
    def _params(
        self,
        request: ProviderRequest,
        messages: list[Message],
        *,
        create: bool,
        cache: bool = False,
    ) -> dict[str, Any]:
        """The ``messages.create`` arguments for ``messages``. ``create``: a stateless
        request or a thread's first, which carries the system prompt and the tools (a
        thread keeps both; a ``continue`` may not repeat them)."""
        notes, wire = to_messages(messages, history=request.history)
        if request.system_prompt:
            notes.insert(0, request.system_prompt)
        cfg = self.config
        params: dict[str, Any] = {
            "model": request.model or cfg.model,
            "max_tokens": request.max_tokens or cfg.max_tokens or cfg.default_max_tokens,
            "messages": wire,
        }
        if create and notes:
            params["system"] = "\n\n".join(notes)
        if create and request.tools:
            params["tools"] = tools_param(request.tools)
        if cache:
            self._mark_cache(params)
        extra = dict(cfg.extra)
        if request.response_format is not None:
            config = output_config(request.response_format, self._schema_transform())
            params["output_config"] = {**(extra.pop("output_config", None) or {}), **config}
        params.update(extra)
        return params

    def _schema_transform(self) -> Any:
        """The SDK's ``transform_schema`` (what the API accepts as a JSON schema), if any."""
        transform = getattr(self._sdk(), "transform_schema", None)
        if transform is None:
            return None

        def safe(schema: dict[str, Any]) -> dict[str, Any]:
            try:
                return dict(transform(schema))
            except Exception:  # noqa: BLE001 - a schema it cannot rewrite goes as it is
                return schema

        return safe

    def _mark_cache(self, params: dict[str, Any]) -> None:
        """Put ``cache_control`` breakpoints on the system prompt and on the last message
        before the new one. The system prompt gets its own breakpoint because it outlives
        any window of history; the message breakpoint moves forward each turn, and the
        API finds the previous turn's entry by looking back from it, so every turn reads
        the earlier turns from cache and writes only the newest exchange."""
        marker: dict[str, Any] = {"type": "ephemeral"}
        if self.config.prompt_cache_ttl:
            marker["ttl"] = self.config.prompt_cache_ttl
        if isinstance(params.get("system"), str):
            params["system"] = [{"type": "text", "text": params["system"], "cache_control": marker}]
        messages = params["messages"]
        if len(messages) >= 2:
            messages[-2] = dict(messages[-2])  # a kept translation's dict stays untouched
            mark_cache(messages[-2], marker)

    async def _native_params(self, request: ProviderRequest) -> tuple[dict[str, Any], bool]:
        """Params of a native turn and whether it continues a thread. A thread keeps the
        tools it was created with, so a turn offering other tools starts a new one."""
        previous = request.state.get(STATE_KEY)
        if previous and request.state.get(TOOLS_KEY) == _tools_key(request):
            params = self._params(request, [request.message], create=False)
            thread = {"type": "continue", "previous_message_id": previous}
            return {**params, "betas": [THREADS_BETA], "thread": thread}, True
        return await self._seed_params(request), False

    async def _seed_params(self, request: ProviderRequest) -> dict[str, Any]:
        mirror = await request.load_history() if request.load_history else []
        params = self._params(request, [*mirror, *request.turn, request.message], create=True)
        return {**params, "betas": [THREADS_BETA], "thread": {"type": "create"}}

    # -- errors ------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return scrub(text, api_key_value(self.config.api_key))

    def _map(self, exc: BaseException) -> BaseException:
        """The ``ProviderError`` for anything the SDK or the transport raised; our own
        errors and unexpected ones (bugs) are returned as they are."""
        if isinstance(exc, LangSwarmError):
            return exc
        sdk = self._sdk()
        name = self.name
        if isinstance(exc, sdk.APITimeoutError):
            return ProviderTimeout(f"no answer within {self.config.timeout:g} s", provider=name)
        if isinstance(exc, sdk.APIConnectionError):
            return ProviderUnavailable(self._scrub(f"connection failed: {exc}"), provider=name)
        if isinstance(exc, sdk.APIStatusError):
            message = self._scrub(_error_message(exc.body, exc.message))
            status = exc.status_code
            retry_after = parse_retry_after(dict(exc.response.headers))
            return error_for_status(status, message, provider=name, retry_after=retry_after)
        if isinstance(exc, (sdk.APIResponseValidationError, ValueError)):
            return ProviderBadResponse(self._scrub(f"unusable answer: {exc}"), provider=name)
        if "timeout" in type(exc).__name__.lower():
            return ProviderTimeout(f"no answer within {self.config.timeout:g} s", provider=name)
        if is_transport_error(exc):  # e.g. a connection reset or truncated body mid-stream
            return ProviderUnavailable(
                self._scrub(f"connection failed: {type(exc).__name__}: {exc}"), provider=name
            )
        return exc

    def _is_gone(self, exc: BaseException) -> bool:
        sdk = self._sdk()
        if not isinstance(exc, sdk.APIStatusError):
            return False
        return exc.status_code == 404 or _error_code(exc.body) in _REPLAY_CODES

    # -- calls -------------------------------------------------------------------------
    async def _create(self, params: dict[str, Any], *, stream: bool = False) -> Any:
        client = self.client()
        target = client.beta.messages if "thread" in params else client.messages
        try:
            if stream:
                return await target.create(**params, stream=True)
            return await target.create(**params)
        except TypeError as exc:  # the SDK checks arguments and credentials before sending
            if "authentication" in str(exc):
                raise ProviderAuthError(
                    "no API key: set api_key on the provider entry or ANTHROPIC_API_KEY",
                    provider=self.name,
                ) from None
            raise ConfigError(
                f"{self.name}: messages.create does not accept these options: {exc}",
                key_path="extra",
            ) from None

    async def _open(self, request: ProviderRequest, *, stream: bool) -> tuple[Any, dict[str, Any]]:
        """Send the turn (or open its stream); on a lost native thread, re-seed once."""
        if request.backend is SessionBackend.NATIVE:
            params, continuing = await self._native_params(request)
        else:
            cache = self.config.prompt_caching
            params = self._params(request, request.conversation(), create=True, cache=cache)
            continuing = False
        try:
            return await self._create(params, stream=stream), params
        except Exception as exc:  # noqa: BLE001 - mapped below, never leaked
            if not (continuing and self._is_gone(exc)):
                raise self._map(exc) from None
        # The thread is gone: replay the mirror under a new thread, invisibly.
        params = await self._seed_params(request)
        try:
            return await self._create(params, stream=stream), params
        except Exception as exc:  # noqa: BLE001 - mapped, never leaked
            raise self._map(exc) from None

    def _reply(
        self,
        request: ProviderRequest,
        message_id: str | None,
        content: tuple[str, list[Part]],
        usage: Usage,
        model: str | None,
        params: dict[str, Any],
    ) -> ProviderReply:
        state = None
        if "thread" in params:
            if not message_id:
                raise ProviderBadResponse("thread reply without an id", provider=self.name)
            state = {STATE_KEY: message_id}
            tools = _tools_key(request)
            if tools is not None:
                state[TOOLS_KEY] = tools
        text, parts = content
        return ProviderReply(
            content=text,
            usage=usage,
            provider_message_id=message_id,
            state=state,
            model=model or params.get("model"),
            parts=parts if any(not isinstance(p, TextPart) for p in parts) else [],
        )

    @staticmethod
    def _usage(usage: Any) -> Usage:
        # input_tokens excludes cache reads and writes; we report the whole input.
        cached = getattr(usage, "cache_read_input_tokens", 0) or 0
        written = getattr(usage, "cache_creation_input_tokens", 0) or 0
        total_input = (getattr(usage, "input_tokens", 0) or 0) + cached + written
        return make_usage(total_input, getattr(usage, "output_tokens", 0), cached)

    async def send(self, request: ProviderRequest) -> ProviderReply:
        message, params = await self._open(request, stream=False)
        model = getattr(message, "model", None) or params.get("model")
        try:
            content = parts_from_blocks(message.content, model=model)
            usage = self._usage(message.usage)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ProviderBadResponse(f"unusable answer: {exc}", provider=self.name) from None
        return self._reply(request, message.id, content, usage, message.model, params)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        events, params = await self._open(request, stream=True)
        blocks = BlockStream()
        message_id: str | None = None
        model: str | None = None
        usage: Any = None
        output_tokens = 0
        order = StreamOrder(self.name, _PHASES)
        try:
            async for event in events:
                kind = getattr(event, "type", None)
                order.see(kind)
                # The SDK builds events without validating them: check what the reply needs.
                if kind == "message_start":
                    message = getattr(event, "message", None)
                    message_id = getattr(message, "id", None)
                    if not isinstance(message_id, str) or not message_id:
                        raise ProviderBadResponse("message_start without an id", provider=self.name)
                    model, usage = getattr(message, "model", None), getattr(message, "usage", None)
                elif kind == "content_block_start":
                    blocks.start(event.index, event.content_block)
                elif kind == "content_block_delta":
                    text = blocks.delta(event.index, event.delta)
                    if text:
                        yield text
                elif kind == "message_delta" and event.usage is not None:
                    output_tokens = event.usage.output_tokens or output_tokens
            order.close()
        except Exception as exc:  # noqa: BLE001 - mapped, never leaked
            raise self._map(exc) from None
        finally:
            await events.close()
        total = self._usage(usage)
        if output_tokens:  # message_start carries a placeholder; message_delta the count
            total = Usage(
                input_tokens=total.input_tokens,
                output_tokens=output_tokens,
                cached_tokens=total.cached_tokens,
            )
        try:
            content = blocks.parts(model=model or params.get("model"))
        except ValueError as exc:
            raise ProviderBadResponse(f"unusable answer: {exc}", provider=self.name) from None
        yield self._reply(request, message_id, content, total, model, params)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("anthropic", AnthropicProvider, AnthropicConfig)
