"""Mistral through the official ``mistralai`` SDK (``from mistralai.client import Mistral``).

- HYBRID: ``chat.complete_async`` / ``chat.stream_async`` with the system prompt and the
  stored history on every call.
- NATIVE: the beta Conversations API. The first turn ``start``s a stored conversation
  seeded with the local mirror; each later turn ``append``s only the new message to the
  conversation id kept in the session's provider state. A conversation the server no
  longer knows (404) is started afresh from the mirror, and the new id recorded.

Tools, tool calls and results, images, documents, reasoning (``thinking`` chunks) and the
JSON-schema output mode are translated by ``_mistral_parts``, in both modes. Tool-call
ids are 9 letters and digits (``call_id_pattern``): the runtime rewrites other ids.
A conversation's tools are set when it starts, so a turn that offers other tools than
the conversation has starts a new one from the mirror.

Retries: the SDK's own ``RetryConfig`` is bounded by elapsed time, not by a count, and
sleeps for whatever Retry-After says; so the SDK's retrying is switched off and calls go
through ``with_retries`` (``max_retries`` attempts, Retry-After capped at 60 s, else
exponential backoff). The SDK is imported when the first client is built.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from functools import cache
from typing import Any, TypeVar

from pydantic import ValidationError

from langswarm_runtime.errors import (
    ConfigError,
    LangSwarmError,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderTimeout,
    ProviderUnavailable,
)
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.providers._common import (
    Phase,
    StreamOrder,
    api_key_value,
    chat_chunk_phase,
    error_for_status,
    import_sdk,
    is_transport_error,
    parse_retry_after,
    scrub,
    with_native_retries,
    with_retries,
    without_version_suffix,
)
from langswarm_runtime.providers._kept import KeptForms
from langswarm_runtime.providers._mistral_parts import (
    CALL_ID_PATTERN,
    append_inputs,
    chat_arguments,
    chunk_texts,
    finish,
    is_answer,
    output_parts,
    reply_parts,
    seed_entries,
    tools_key,
)
from langswarm_runtime.providers._mistral_wire import body_message, usage_from
from langswarm_runtime.providers._openai_style import (
    MISTRAL,
    ToolCallStream,
    response_format_param,
    tools_param,
)
from langswarm_runtime.providers.base import (
    Provider,
    ProviderConfig,
    ProviderReply,
    ProviderRequest,
)
from langswarm_runtime.session.models import SessionBackend

__all__ = ["MistralConfig", "MistralProvider"]

#: Provider-state key holding the remote conversation id (namespaced: never replayed to
#: another provider's adapter).
STATE_KEY = "mistral_conversation_id"
#: Provider-state key holding a digest of the tools the conversation was started with.
TOOLS_KEY = "mistral_conversation_tools"
_CHAT_OWN = frozenset({"model", "messages", "max_tokens", "temperature", "stream"})
_CONV_OWN = frozenset({"inputs", "model", "store", "instructions", "completion_args"})
#: How Conversations stream events are ordered (see ``StreamOrder``); the rest are BODY.
_CONVERSATION_PHASES = {
    "conversation.response.started": Phase.OPEN,
    "conversation.response.done": Phase.END,
}

T = TypeVar("T")


#: The SDK's typed messages made from wire dicts, by dict object: the chat translator
#: keeps each whole turn's dicts and sends the same objects on every later call and turn
#: (never changing them), so each message is made once.
_TYPED: KeptForms[dict[str, Any], Any] = KeptForms()
_MEDIA_CHUNKS = frozenset({"image_url", "document_url"})


def typed_messages(messages: list[dict[str, Any]]) -> list[Any]:
    """``messages`` as the SDK's own message models (``ChatCompletionRequestMessage``),
    which the SDK takes as they are. Given dicts, it builds a pydantic model class and
    coerces every message against its unions on each call (about 12 ms for 50
    messages); validated here with the same type, each message costs about 20 us once.
    Messages holding media are made each time (keeping them would keep their bytes)."""
    make = _message_adapter().validate_python
    return [_TYPED.get(message, make, _without_media) for message in messages]


def _without_media(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return not isinstance(content, list) or not any(
        isinstance(c, dict) and c.get("type") in _MEDIA_CHUNKS for c in content
    )


@cache
def _message_adapter() -> Any:
    """The SDK's message type as a validator, made on first use (SDK imported then)."""
    from pydantic import TypeAdapter

    models = import_sdk("mistralai.client.models", "mistral")
    return TypeAdapter(models.ChatCompletionRequestMessage)


class MistralConfig(ProviderConfig):
    """Options of a ``mistral`` provider entry.

    ``base_url`` is the server root (``https://api.mistral.ai``): a trailing ``/v1`` is
    dropped, as the SDK adds it to each path. ``api_key`` defaults to ``MISTRAL_API_KEY``.
    ``extra`` goes to ``chat.complete_async`` in hybrid mode; in native mode, keys the
    Conversations ``completion_args`` know (``top_p``, ``random_seed``, ``stop``...) go
    there and the rest to ``start_async`` (e.g. ``guardrails``, ``metadata``).
    """

    type: str | None = "mistral"
    model: str | None = "mistral-large-latest"


class MistralProvider(Provider):
    """The ``mistral`` provider. Native mode uses the beta Conversations API."""

    supports_native = True
    official_hosts = frozenset({"api.mistral.ai"})
    sdk_module = "mistralai"
    sdk_extra = "mistral"
    call_id_pattern = CALL_ID_PATTERN

    def __init__(self, config: MistralConfig | None = None, *, name: str | None = None) -> None:
        super().__init__(config or MistralConfig(), name=name or "mistral")
        self.config: MistralConfig

    # ------------------------------------------------------------------ client

    def _key(self) -> str | None:
        return api_key_value(self.config.api_key)

    def new_client(self) -> Any:
        sdk = import_sdk("mistralai.client", "mistral")
        retries = import_sdk("mistralai.client.utils.retries", "mistral")
        cfg = self.config
        kwargs: dict[str, Any] = {
            "timeout_ms": max(1, round(cfg.timeout * 1000)),
            # Explicitly off (see the module docstring): with_retries does it.
            "retry_config": retries.RetryConfig(
                "none", retries.BackoffStrategy(500, 8000, 2.0, 60_000), False
            ),
        }
        if cfg.base_url:
            kwargs["server_url"] = without_version_suffix(cfg.base_url)
        client = sdk.Mistral(api_key=self._key(), **kwargs)
        self._check_extra(client)
        return client

    def _check_extra(self, client: Any) -> None:
        """Unknown ``extra`` keys are a config error now, not a TypeError mid-turn."""
        extra = set(self.config.extra)
        chat_ok = set(inspect.signature(client.chat.complete_async).parameters) - _CHAT_OWN
        conv_ok = (
            set(inspect.signature(client.beta.conversations.start_async).parameters) - _CONV_OWN
        ) | self._completion_fields()
        unknown = sorted(extra - (chat_ok | conv_ok))
        if unknown:
            raise ConfigError(
                f"provider {self.name!r}: extra option(s) {', '.join(unknown)} not accepted "
                "by mistral chat or conversations",
                key_path=f"providers.{self.name}.extra",
            )

    @staticmethod
    def _completion_fields() -> set[str]:
        models = import_sdk("mistralai.client.models", "mistral")
        return set(models.CompletionArgs.model_fields)

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
        errors = import_sdk("mistralai.client.errors", "mistral")
        if isinstance(exc, errors.ResponseValidationError):
            return ProviderBadResponse("answer did not match the API schema", provider=self.name)
        if isinstance(exc, errors.MistralError):
            if 200 <= exc.status_code < 300:  # e.g. JSON where an event stream was due
                content_type = exc.headers.get("content-type", "none")
                return ProviderBadResponse(
                    f"unexpected answer (HTTP {exc.status_code}, content-type {content_type})",
                    provider=self.name,
                    status_code=exc.status_code,
                )
            return error_for_status(
                exc.status_code,
                scrub(body_message(exc.body), key),
                provider=self.name,
                retry_after=parse_retry_after(dict(exc.headers)),
            )
        if isinstance(exc, errors.NoResponseError):
            return ProviderUnavailable("no response received", provider=self.name)
        if isinstance(exc, (json.JSONDecodeError, ValidationError, UnicodeDecodeError)):
            return ProviderBadResponse("answer did not match the API schema", provider=self.name)
        if type(exc).__module__.split(".")[0] == "mistralai":  # no SDK type reaches the caller
            return ProviderError(scrub(str(exc), key), provider=self.name)
        return None

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """One SDK call with our retries; failures come out as ProviderError, unchained."""
        try:
            return await with_retries(
                call, max_retries=self.config.max_retries, classify=self._map_error
            )
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
        raise mapped

    # ------------------------------------------------------------------ request shaping

    def _model(self, request: ProviderRequest) -> str:
        model = request.model or self.config.model
        if not model:
            raise ConfigError(f"provider {self.name!r} has no model: set 'model'")
        return model

    def _sampling(self, request: ProviderRequest) -> dict[str, Any]:
        out: dict[str, Any] = {}
        max_tokens = request.max_tokens or self.config.max_tokens
        if max_tokens is not None:
            out["max_tokens"] = max_tokens
        temperature = request.temperature
        if temperature is None:
            temperature = self.config.temperature
        if temperature is not None:
            out["temperature"] = temperature
        return out

    def _chat_args(self, request: ProviderRequest) -> dict[str, Any]:
        shaped = chat_arguments(
            request.system_prompt, request.conversation(), request.tools,
            request.response_format, history=request.history,
        )  # fmt: skip
        try:
            shaped["messages"] = typed_messages(shaped["messages"])
        except ValidationError as exc:  # a translator's mistake: no SDK type goes out
            detail = f"{exc.error_count()} error(s), first at {exc.errors()[0]['loc']}"
            raise ProviderError(
                f"a request message did not fit the SDK's message type: {detail}",
                provider=self.name,
            ) from None
        # The turn's tools and format over any in ``extra``.
        return {"model": self._model(request), **self._sampling(request),
                **self.config.extra, **shaped}  # fmt: skip

    def _conv_options(self, request: ProviderRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """(completion_args, start-only kwargs) from the sampling options, ``extra`` and
        the turn's tools and response format."""
        fields = self._completion_fields()
        completion = self._sampling(request)
        start: dict[str, Any] = {}
        for k, v in self.config.extra.items():
            (completion if k in fields else start)[k] = v
        if request.response_format is not None:
            completion["response_format"] = response_format_param(request.response_format, MISTRAL)
        if request.tools:
            start["tools"] = tools_param(request.tools)
        return completion, start

    def _native_state(self, request: ProviderRequest, conv_id: str | None) -> dict[str, Any]:
        key = tools_key(request.tools)
        return {STATE_KEY: conv_id, **({TOOLS_KEY: key} if key else {})}

    # ------------------------------------------------------------------ native

    async def _open_native(
        self, request: ProviderRequest, *, stream: bool
    ) -> tuple[Any, str | None]:
        """Append the new message to the session's conversation, or start one seeded from
        the mirror when there is none or the server lost it (404, once). Returns (response
        or event stream, conversation id; None when it arrives in the stream).

        Retries go through ``with_native_retries``: an append that failed in a way the
        server may have acted on (a timeout, a 5xx, a broken connection) is never sent
        again to that conversation, since it may hold the turn already; the retry starts
        a fresh one from the mirror."""
        conversations = self.client().beta.conversations
        completion, start_kw = self._conv_options(request)
        model = self._model(request)
        current: str | None = request.state.get(STATE_KEY)
        if request.state.get(TOOLS_KEY) != tools_key(request.tools):
            current = None  # the conversation has other tools: start one with these
        started = False  # whether a conversation was started during this turn

        async def begin() -> tuple[Any, str | None]:
            nonlocal current, started
            current, started = None, True
            history = await request.load_history() if request.load_history else []
            instructions, inputs = seed_entries(
                request.system_prompt, [*history, *request.turn, request.message]
            )
            start = conversations.start_stream_async if stream else conversations.start_async
            response = await start(
                inputs=inputs,
                model=model,
                store=True,
                instructions=instructions,
                completion_args=completion or None,
                **start_kw,
            )
            # A started conversation holds this turn: the next attempt never appends to it.
            return response, getattr(response, "conversation_id", None)

        async def attempt(fresh: bool) -> tuple[Any, str | None]:
            if current is None or fresh:
                return await begin()
            append = conversations.append_stream_async if stream else conversations.append_async
            try:
                response = await append(
                    conversation_id=current,
                    inputs=append_inputs(request.message),
                    completion_args=completion or None,
                )
                return response, current
            except Exception as exc:
                if started or not isinstance(self._map_error(exc), ProviderNotFound):
                    raise
            return await begin()  # the server lost it: start a new one from the mirror

        try:
            return await with_native_retries(
                attempt, max_retries=self.config.max_retries, classify=self._map_error
            )
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
        raise mapped

    # ------------------------------------------------------------------ send

    async def send(self, request: ProviderRequest) -> ProviderReply:
        if request.backend is SessionBackend.NATIVE:
            response, conv_id = await self._open_native(request, stream=False)
            outputs = list(response.outputs or ())
            if not is_answer(outputs):
                raise ProviderBadResponse("answer had no message output", provider=self.name)
            last = outputs[-1]
            model = getattr(last, "model", None) or self._model(request)
            text, parts = output_parts(outputs, provider=self.provider_type, model=model)
            return ProviderReply(
                content=text,
                usage=usage_from(response.usage),
                provider_message_id=getattr(last, "id", None),
                state=self._native_state(request, conv_id),
                model=model,
                parts=parts,
            )
        args = self._chat_args(request)
        chat = self.client().chat
        completion = await self._call(lambda: chat.complete_async(**args))
        if not completion.choices or completion.choices[0].message is None:
            raise ProviderBadResponse("answer had no choices", provider=self.name)
        message = completion.choices[0].message
        text, parts = reply_parts(
            message.content,
            message.tool_calls,
            provider=self.provider_type,
            model=completion.model,
        )
        return ProviderReply(
            content=text,
            usage=usage_from(completion.usage),
            provider_message_id=completion.id,
            model=completion.model,
            parts=parts,
        )

    # ------------------------------------------------------------------ stream

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        if request.backend is SessionBackend.NATIVE:
            events, conv_id = await self._open_native(request, stream=True)
            inner = self._native_events(events, conv_id, self._model(request), request)
        else:
            args = self._chat_args(request)
            chat = self.client().chat
            events = await self._call(lambda: chat.stream_async(**args))
            inner = self._chat_events(events)
        mapped: ProviderError | None = None
        try:
            while True:
                try:
                    item = await inner.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    mapped = self._map_error(exc)
                    if mapped is None:
                        raise
                    break
                yield item
        finally:
            await inner.aclose()
            await events.close()
        raise mapped  # outside the handler, so the SDK exception is not chained

    async def _chat_events(self, events: Any) -> AsyncGenerator[str | ProviderReply, None]:
        texts: list[str] = []
        thoughts: list[tuple[str, str | None]] = []
        calls = ToolCallStream()
        usage = ident = model = None
        order = StreamOrder(self.name, end="a chunk with finish_reason")
        async for event in events:
            chunk = event.data
            order.see(*chat_chunk_phase(chunk))
            ident, model = chunk.id, chunk.model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.index != 0:
                    continue
                text, found = chunk_texts(choice.delta.content)
                thoughts.extend(found)
                for call in choice.delta.tool_calls or ():
                    calls.add(
                        call.index,
                        id=call.id,
                        name=call.function.name,
                        arguments=call.function.arguments,
                    )
                if text:
                    texts.append(text)
                    yield text
        order.close()
        content, parts = finish(
            "".join(texts),
            _joined(thoughts),
            calls.calls(provider=self.name),
            provider=self.provider_type,
            model=model,
        )
        yield ProviderReply(
            content=content,
            usage=usage_from(usage),
            provider_message_id=ident,
            model=model,
            parts=parts,
        )

    async def _native_events(
        self, events: Any, conv_id: str | None, model: str, request: ProviderRequest
    ) -> AsyncGenerator[str | ProviderReply, None]:
        texts: list[str] = []
        thoughts: list[tuple[str, str | None]] = []
        calls = ToolCallStream()
        entry_id = None
        done = None
        order = StreamOrder(self.name, _CONVERSATION_PHASES)
        async for event in events:
            data = event.data
            kind = getattr(data, "type", None)
            order.see(kind)
            if kind == "conversation.response.started":
                conv_id = data.conversation_id
            elif kind == "message.output.delta":
                entry_id = data.id
                model = getattr(data, "model", None) or model
                text, found = chunk_texts(data.content)
                thoughts.extend(found)
                if text:
                    texts.append(text)
                    yield text
            elif kind == "function.call.delta":
                entry_id = data.id
                model = getattr(data, "model", None) or model
                calls.add(
                    data.output_index,
                    id=data.tool_call_id,
                    name=data.name,
                    arguments=data.arguments,
                )
            elif kind == "conversation.response.done":
                done = data
            elif kind == "conversation.response.error":
                message = scrub(str(getattr(data, "message", "")), self._key())
                raise ProviderUnavailable(f"stream error: {message}", provider=self.name)
        order.close()
        if conv_id is None:
            raise ProviderBadResponse("stream without a conversation id", provider=self.name)
        content, parts = finish(
            "".join(texts),
            _joined(thoughts),
            calls.calls(provider=self.name),
            provider=self.provider_type,
            model=model,
        )
        yield ProviderReply(
            content=content,
            usage=usage_from(getattr(done, "usage", None)),
            provider_message_id=entry_id,
            state=self._native_state(request, conv_id),
            model=model,
            parts=parts,
        )


# ---------------------------------------------------------------------- helpers


def _joined(thoughts: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """Streamed thinking comes in pieces: one reasoning part of them all, with the last
    signature seen."""
    if not thoughts:
        return []
    signatures = [s for _, s in thoughts if s]
    return [("".join(t for t, _ in thoughts), signatures[-1] if signatures else None)]


def _transport_kind(exc: BaseException) -> str | None:
    """'timeout' / 'connection' for failures below the SDK (httpx or a fork of it: timeouts
    are told apart by class name, so neither is imported here); None otherwise."""
    if isinstance(exc, TimeoutError) or any(
        cls.__name__ == "TimeoutException" for cls in type(exc).__mro__
    ):
        return "timeout"
    return "connection" if is_transport_error(exc) else None


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("mistral", MistralProvider, MistralConfig)
