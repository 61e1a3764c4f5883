"""Cohere through the official ``cohere`` SDK (v2 chat).

Hybrid only: Cohere keeps no conversation state, so every call sends the system prompt and
the stored history (``AsyncClientV2.chat`` / ``chat_stream``). ``supports_native`` is False:
``backend: native`` is a ``ConfigError`` raised by the runtime, and ``auto`` picks hybrid.

Tools, tool calls and results, images, thinking and the JSON-schema output mode are
translated by ``_cohere_parts`` (Cohere takes no documents: see there).

The SDK is imported when the first client is built, never at module import.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import AsyncGenerator, AsyncIterator
from functools import cache
from typing import Any, get_args

from pydantic import ValidationError

from langswarm_runtime.errors import (
    ConfigError,
    LangSwarmError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.providers._cohere_parts import chat_arguments, finish, reply_parts
from langswarm_runtime.providers._common import (
    Phase,
    StreamOrder,
    api_key_value,
    error_for_status,
    import_sdk,
    is_transport_error,
    make_usage,
    parse_retry_after,
    scrub,
    with_retries,
    without_version_suffix,
)
from langswarm_runtime.providers._openai_style import ToolCallStream
from langswarm_runtime.providers.base import (
    Provider,
    ProviderConfig,
    ProviderReply,
    ProviderRequest,
)
from langswarm_runtime.session.parts import Part, ReasoningPart

__all__ = ["CohereConfig", "CohereProvider"]

# Arguments the adapter sets itself; ``extra`` may not override them.
_OWN_ARGS = frozenset({"model", "messages", "max_tokens", "temperature"})


class CohereConfig(ProviderConfig):
    """Options of a ``cohere`` provider entry.

    ``base_url`` is the host root (``https://api.cohere.com``); a trailing ``/v1`` or
    ``/v2`` is dropped because the SDK adds the version to each path. ``api_key`` defaults
    to the SDK's ``CO_API_KEY`` environment variable. ``extra`` is passed to ``chat`` (e.g.
    ``{seed: 7, safety_mode: OFF}``).
    """

    type: str | None = "cohere"
    model: str | None = "command-a-03-2025"


class CohereProvider(Provider):
    """The ``cohere`` provider: v2 chat with the whole history on every call."""

    supports_native = False
    sdk_module = "cohere"
    sdk_extra = "cohere"

    def __init__(self, config: CohereConfig | None = None, *, name: str | None = None) -> None:
        super().__init__(config or CohereConfig(), name=name or "cohere")
        self.config: CohereConfig

    # ------------------------------------------------------------------ client

    def _key(self) -> str | None:
        return api_key_value(self.config.api_key)

    def new_client(self) -> Any:
        cohere = import_sdk("cohere", "cohere")
        cfg = self.config
        kwargs: dict[str, Any] = {
            "timeout": cfg.timeout,
            # The SDK retries 408/409/429/5xx (529 included) and connection errors
            # itself, honouring Retry-After capped at 60 s; streams it does not retry,
            # so stream() opens them through our own loop with the same rules.
            "max_retries": cfg.max_retries,
            "log_warning_experimental_features": False,
        }
        if cfg.base_url:  # unset: keep the SDK's default (and its CO_API_URL variable)
            kwargs["base_url"] = without_version_suffix(cfg.base_url)
        try:
            client = cohere.AsyncClientV2(api_key=self._key(), **kwargs)
        except _api_error():  # raised when no key is set anywhere
            raise ProviderAuthError(
                "no API key: set api_key in the provider entry or CO_API_KEY",
                provider=self.name,
            ) from None
        self._check_extra()
        return client

    def _check_extra(self) -> None:
        """Unknown ``extra`` keys are a config error now, not a TypeError mid-turn."""
        # The client's own ``chat`` is wrapped (*args, **kwargs); the v2 class has the list.
        v2 = import_sdk("cohere.v2.client", "cohere").AsyncV2Client
        accepted = set(inspect.signature(v2.chat).parameters) - _OWN_ARGS - {"self"}
        unknown = sorted(set(self.config.extra) - accepted)
        if unknown:
            raise ConfigError(
                f"provider {self.name!r}: extra option(s) {', '.join(unknown)} not accepted by "
                f"cohere chat; known: {', '.join(sorted(accepted))}",
                key_path=f"providers.{self.name}.extra",
            )

    async def close_client(self, client: Any) -> None:
        await client.__aexit__(None, None, None)

    # ------------------------------------------------------------------ errors

    def _map_error(self, exc: BaseException) -> ProviderError | None:
        """The ProviderError for an SDK/transport failure; None for anything else (a bug)."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, LangSwarmError):
            return None  # ours already (e.g. ConfigError): let it through as it is
        key = self._key()
        transport = _transport_kind(exc)
        if transport == "timeout":
            return ProviderTimeout(f"no answer within {self.config.timeout:g}s", provider=self.name)
        if transport == "connection":
            return ProviderUnavailable(
                f"connection failed: {scrub(str(exc) or type(exc).__name__, key)}",
                provider=self.name,
            )
        if isinstance(exc, _api_error()):
            status = exc.status_code
            if status is not None and 200 <= status < 300:
                return ProviderBadResponse("answer was not valid JSON", provider=self.name)
            if status == 498:  # Cohere's "invalid token"
                status = 401
            return error_for_status(
                status,
                scrub(_body_message(exc.body), key),
                provider=self.name,
                retry_after=parse_retry_after(exc.headers),
            )
        if isinstance(exc, (json.JSONDecodeError, ValidationError, UnicodeDecodeError)):
            return ProviderBadResponse("answer did not match the API schema", provider=self.name)
        if type(exc).__name__ == "SSEError":  # a "stream" answered with something else
            return ProviderBadResponse(
                f"answer was not an event stream: {scrub(str(exc), key)}", provider=self.name
            )
        if type(exc).__module__.split(".")[0] == "cohere":  # no SDK type reaches the caller
            return ProviderError(scrub(str(exc), key), provider=self.name)
        return None

    async def _guard(self, call: Any) -> Any:
        try:
            return await call
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
        raise mapped  # outside the handler, so the SDK exception is not chained

    # ------------------------------------------------------------------ request shaping

    def _arguments(self, request: ProviderRequest) -> dict[str, Any]:
        model = request.model or self.config.model
        if not model:
            raise ConfigError(f"provider {self.name!r} has no model: set 'model'")
        args: dict[str, Any] = {"model": model}
        shaped = chat_arguments(
            request.system_prompt, request.conversation(), request.tools,
            request.response_format, history=request.history,
        )  # fmt: skip
        max_tokens = request.max_tokens or self.config.max_tokens
        if max_tokens is not None:
            args["max_tokens"] = max_tokens
        temperature = request.temperature
        if temperature is None:
            temperature = self.config.temperature
        if temperature is not None:
            args["temperature"] = temperature
        args.update(self.config.extra)
        args.update(shaped)  # the turn's tools and format over any in ``extra``
        return args

    def _usage(self, usage: Any) -> Any:
        # "tokens" is what the model processed; "billed_units" what was charged. Either
        # may be missing; both arrive as floats.
        counted = getattr(usage, "tokens", None) or getattr(usage, "billed_units", None)
        return make_usage(
            getattr(counted, "input_tokens", 0),
            getattr(counted, "output_tokens", 0),
            getattr(usage, "cached_tokens", 0),
        )

    # ------------------------------------------------------------------ send

    async def send(self, request: ProviderRequest) -> ProviderReply:
        client = self.client()
        args = self._arguments(request)
        options = dict(args.pop("request_options", None) or {})
        # A dropped connection is safe to replay: a chat call changes nothing server-side.
        options.setdefault("retry_remote_protocol_errors", True)
        response = await self._guard(client.chat(**args, request_options=options))
        if getattr(response, "finish_reason", None) == "ERROR":
            raise ProviderBadResponse("generation failed (finish_reason ERROR)", provider=self.name)
        message = getattr(response, "message", None)
        text, parts = reply_parts(
            getattr(message, "content", None),
            getattr(message, "tool_plan", None),
            getattr(message, "tool_calls", None),
            provider=self.provider_type,
            model=args["model"],
        )
        return ProviderReply(
            content=text,
            usage=self._usage(getattr(response, "usage", None)),
            provider_message_id=getattr(response, "id", None),
            model=args["model"],
            parts=parts,
        )

    # ------------------------------------------------------------------ stream

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        client = self.client()
        args = self._arguments(request)
        async with contextlib.AsyncExitStack() as opened:

            async def open_stream() -> Any:
                # The status arrives with the response head: open it inside the retry loop.
                raw = client.with_raw_response.chat_stream(**args)
                return await opened.enter_async_context(raw)

            raw = await self._guard(
                with_retries(
                    open_stream, max_retries=self.config.max_retries, classify=self._map_error
                )
            )
            events = self._events(raw.response)
            opened.push_async_callback(events.aclose)
            order = StreamOrder(self.name, _PHASES)
            texts: list[str] = []
            thinking: list[str] = []
            plan: list[str] = []
            calls = ToolCallStream()
            reply_id: str | None = None
            end: Any = None
            while (event := await self._guard(_next(events))) is not None:
                kind = event.type
                order.see(kind)
                message = getattr(getattr(event, "delta", None), "message", None)
                if kind == "message-start":
                    reply_id = event.id
                    if not reply_id:
                        raise ProviderBadResponse("message-start without an id", provider=self.name)
                elif kind == "content-delta":
                    content = getattr(message, "content", None)
                    text = getattr(content, "text", None)
                    if isinstance(text, str):
                        if text:
                            texts.append(text)
                            yield text
                    elif isinstance(getattr(content, "thinking", None), str):
                        thinking.append(content.thinking)  # type: ignore[union-attr]
                    else:
                        raise ProviderBadResponse("content-delta without text", provider=self.name)
                elif kind == "tool-plan-delta":
                    plan.append(getattr(message, "tool_plan", None) or "")
                elif kind in ("tool-call-start", "tool-call-delta"):
                    call = getattr(message, "tool_calls", None)
                    function = getattr(call, "function", None)
                    calls.add(
                        getattr(event, "index", None),
                        id=getattr(call, "id", None),
                        name=getattr(function, "name", None),
                        arguments=getattr(function, "arguments", None),
                    )
                elif kind == "message-end":
                    end = event.delta
            order.close()
        if getattr(end, "error", None) or getattr(end, "finish_reason", None) == "ERROR":
            error = scrub(str(getattr(end, "error", None) or "finish_reason ERROR"), self._key())
            raise ProviderBadResponse(f"generation failed: {error}", provider=self.name)
        reasoning: list[Part] = []
        if thinking:
            reasoning.append(
                ReasoningPart(text="".join(thinking), provider=self.provider_type,
                              model=args["model"])
            )  # fmt: skip
        text, parts = finish(
            texts,
            reasoning,
            "".join(plan),
            calls.calls(provider=self.name),
            provider=self.provider_type,
            model=args["model"],
        )
        yield ProviderReply(
            content=text,
            usage=self._usage(getattr(end, "usage", None)),
            provider_message_id=reply_id,
            model=args["model"],
            parts=parts,
        )

    async def _events(self, response: Any) -> AsyncGenerator[Any, None]:
        """The stream's events, read with the SDK's own SSE reader and event types, but
        strictly: the SDK's iterator skips an event it cannot validate and turns one that
        is not JSON into an empty ``message-start``, which would commit a shorter reply
        with no id. Here either is a ``ProviderBadResponse``. An event type this SDK does
        not know is skipped, as the SDK does, so newer API events do not break a turn."""
        sdk = import_sdk("cohere", "cohere")
        event_source = import_sdk("cohere.core.http_sse", "cohere").EventSource
        parse = import_sdk("cohere.core", "cohere").parse_obj_as
        async for sse in event_source(response).aiter_sse():
            if sse.data == "[DONE]":
                return
            if not sse.data:
                continue
            event = problem = None
            try:
                data = json.loads(sse.data)
            except ValueError:
                data = None
            kind = data.get("type") if isinstance(data, dict) else None
            if not isinstance(kind, str):
                problem = "stream event was not a JSON object with a type"
            elif kind not in _event_types():
                continue
            else:
                try:
                    event = parse(sdk.V2ChatStreamResponse, data)
                except ValidationError:
                    problem = f"stream event {kind!r} did not match the API schema"
            if problem is not None:  # raised here, not in a handler: nothing of the SDK chained
                raise ProviderBadResponse(problem, provider=self.name)
            yield event


#: How Cohere's stream events are ordered (see ``StreamOrder``); the rest are BODY.
_PHASES = {"message-start": Phase.OPEN, "message-end": Phase.END}


@cache
def _event_types() -> frozenset[str]:
    """The ``type`` of every stream event the installed SDK knows."""
    union = get_args(import_sdk("cohere", "cohere").V2ChatStreamResponse)[0]
    return frozenset(cls.model_fields["type"].default for cls in get_args(union))


def _api_error() -> Any:
    """The base of every cohere SDK HTTP error (imported lazily, like the SDK)."""
    return import_sdk("cohere.core.api_error", "cohere").ApiError


async def _next(events: Any) -> Any:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


def _transport_kind(exc: BaseException) -> str | None:
    """'timeout' / 'connection' for failures below the SDK (httpx or a fork of it: timeouts
    are told apart by class name, so neither is imported here); None otherwise."""
    if isinstance(exc, TimeoutError) or any(
        cls.__name__ == "TimeoutException" for cls in type(exc).__mro__
    ):
        return "timeout"
    return "connection" if is_transport_error(exc) else None


def _body_message(body: Any) -> str:
    # Cohere's error body is {"id": ..., "message": ...}; anything else is shown briefly.
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    text = str(body) if body is not None else ""
    return text[:200] or "request failed"


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("cohere", CohereProvider, CohereConfig)
