"""OpenAI through the official ``openai`` SDK.

- HYBRID: Responses API with the whole input list and ``store=False`` (nothing kept
  server-side); ``api: chat_completions`` uses Chat Completions instead, for
  OpenAI-compatible servers (Ollama, vLLM, LiteLLM proxy, Azure).
- NATIVE: Conversations API. The first turn creates a conversation seeded with the
  mirrored history; each turn then sends only the new message with ``conversation=<id>``.
  A conversation the server no longer knows (404) is re-seeded from the mirror once.
  These calls change server-side state, so the SDK does not retry them; a retry after
  a failure the server may have acted on goes to a fresh conversation seeded from the
  mirror (``_common.with_native_retries``), so the remote side never holds a turn twice.

The SDK is imported when the first client is built, never at module import.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field, ValidationError

from langswarm_runtime.errors import (
    ConfigError,
    LangSwarmError,
    ProviderAuthError,
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
    make_usage,
    parse_retry_after,
    scrub,
    with_native_retries,
    with_version_suffix,
)
from langswarm_runtime.providers._openai_parts import (
    function_tools,
    input_items,
    message_items,
    reply_parts,
    strict_format,
    text_format,
)
from langswarm_runtime.providers._openai_style import (
    CHAT_COMPLETIONS,
    ToolCallStream,
    response_format_param,
    to_messages,
    tool_calls_from,
    tools_param,
)
from langswarm_runtime.providers.base import (
    Provider,
    ProviderConfig,
    ProviderReply,
    ProviderRequest,
)
from langswarm_runtime.session.models import Message, SessionBackend
from langswarm_runtime.session.parts import Part, TextPart, ToolCall

__all__ = ["OpenAIConfig", "OpenAIProvider"]

#: Provider-state key holding the remote conversation id (namespaced: never replayed to
#: another provider's adapter).
STATE_KEY = "openai_conversation_id"
#: The Conversations API takes at most this many items per call.
_SEED_BATCH = 20


def as_is(params: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``params`` with ``fields`` sent in the body as they are (the SDK's ``extra_body``;
    one the options already hold is kept, its keys winning). The SDK's transform of its
    typed parameters walks every item of a long ``input`` or ``messages`` list against
    the unions of every item type (6-8 ms for 50 messages, each call of a turn), and
    changes nothing in what the adapter builds: those lists are already the wire's JSON
    (``tests/test_provider_openai.py`` checks that the transform leaves them as they
    are, so an SDK that starts changing them is noticed)."""
    extra = params.get("extra_body") or {}
    return {**params, "extra_body": {**fields, **extra}}


class OpenAIConfig(ProviderConfig):
    """Options of an ``openai`` provider entry.

    ``base_url`` may be a host root (``http://localhost:11434``): ``/v1`` is appended when
    the URL does not already end in a version segment.
    """

    type: str | None = "openai"
    #: ``responses`` (OpenAI) or ``chat_completions`` (OpenAI-compatible servers).
    api: Literal["responses", "chat_completions"] = "responses"
    organization: str | None = None
    project: str | None = None
    #: Role of the system prompt in the Responses input (newer models prefer developer).
    system_role: Literal["system", "developer"] = "system"
    #: Sent with every request (e.g. a proxy's routing header).
    default_headers: dict[str, str] = Field(default_factory=dict)
    #: Hybrid Responses calls carry ``prompt_cache_key`` (a hash of the session id), which
    #: keeps a session's turns on the same prompt cache.
    prompt_cache_key: bool = True
    #: The Responses ``reasoning`` option for reasoning models, e.g. ``{effort: low,
    #: summary: auto}``. Its encrypted content is then asked for too, so the reasoning
    #: can be replayed in later (stateless) requests of the same model family.
    reasoning: dict[str, Any] | None = None


class OpenAIProvider(Provider):
    """The ``openai`` provider. Native mode uses the Conversations API."""

    supports_native = True
    official_hosts = frozenset({"api.openai.com"})
    sdk_module = "openai"
    sdk_extra = "openai"

    def __init__(self, config: OpenAIConfig | None = None, *, name: str | None = None) -> None:
        super().__init__(config or OpenAIConfig(), name=name or "openai")
        self.config: OpenAIConfig

    # ------------------------------------------------------------------ client

    def new_client(self) -> Any:
        openai = import_sdk("openai", "openai")
        cfg = self.config
        try:
            client = openai.AsyncOpenAI(
                api_key=api_key_value(cfg.api_key),
                base_url=with_version_suffix(cfg.base_url),
                organization=cfg.organization,
                project=cfg.project,
                timeout=cfg.timeout,
                # The SDK retries 408/409/429/5xx and connection errors itself and
                # honours Retry-After up to 120 s (it will not retry past that).
                max_retries=cfg.max_retries,
                default_headers=cfg.default_headers or None,
            )
        except openai.OpenAIError as exc:
            message = scrub(str(exc), self._key())
            raise ProviderAuthError(message, provider=self.name) from None
        return client

    def _key(self) -> str | None:
        return api_key_value(self.config.api_key)

    def native_refusal(self) -> str | None:
        if self.config.api == "chat_completions":
            return (
                "native mode needs the Conversations API, and this entry uses "
                "api: chat_completions (set api: responses for native)"
            )
        return super().native_refusal()

    # ------------------------------------------------------------------ errors

    def _map_error(self, exc: BaseException) -> ProviderError | None:
        """The ProviderError for an SDK/transport failure; None for anything else (a bug)."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, LangSwarmError):
            return None  # ours already (e.g. ConfigError): let it through as it is
        openai = import_sdk("openai", "openai")
        key = self._key()
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout(f"no answer within {self.config.timeout:g}s", provider=self.name)
        if isinstance(exc, openai.APIConnectionError):
            return ProviderUnavailable(
                f"connection failed: {scrub(exc.message, key)}", provider=self.name
            )
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(
                exc.status_code,
                scrub(_status_message(exc), key),
                provider=self.name,
                retry_after=parse_retry_after(dict(exc.response.headers)),
            )
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderBadResponse("answer did not match the API schema", provider=self.name)
        if isinstance(exc, (json.JSONDecodeError, ValidationError, UnicodeDecodeError)):
            return ProviderBadResponse("answer was not valid JSON", provider=self.name)
        if isinstance(exc, openai.OpenAIError):
            return ProviderError(scrub(str(exc), key), provider=self.name)
        return None

    # ------------------------------------------------------------------ request shaping

    def _model(self, request: ProviderRequest) -> str:
        model = request.model or self.config.model
        if not model:
            raise ConfigError(f"provider {self.name!r} has no model: set 'model'")
        return model

    def _items(
        self,
        system_prompt: str | None,
        messages: list[Message],
        history: list[Message] | None = None,
    ) -> list[dict[str, Any]]:
        """Responses input items: the system prompt, then the messages (``history``:
        the request's, which ``messages`` starts with; see ``input_items``)."""
        role = self.config.system_role
        items: list[dict[str, Any]] = []
        if system_prompt:
            items.append({"role": role, "content": system_prompt})
        items += input_items(messages, system_role=role, history=history)
        return items

    def _options(self, request: ProviderRequest, *, chat: bool) -> dict[str, Any]:
        opts: dict[str, Any] = {"model": self._model(request)}
        max_tokens = request.max_tokens or self.config.max_tokens
        if max_tokens is not None:
            # max_tokens is what OpenAI-compatible servers understand everywhere.
            opts["max_tokens" if chat else "max_output_tokens"] = max_tokens
        temperature = request.temperature
        if temperature is None:
            temperature = self.config.temperature
        if temperature is not None:
            opts["temperature"] = temperature
        if chat:
            if request.tools:
                opts["tools"] = tools_param(request.tools)
            if request.response_format is not None:
                strict = strict_format(request.response_format)
                opts["response_format"] = response_format_param(strict, CHAT_COMPLETIONS)
        else:
            if request.tools:
                opts["tools"] = function_tools(request.tools)
            if request.response_format is not None:
                opts["text"] = text_format(request.response_format)
            if self.config.reasoning is not None:
                opts["reasoning"] = dict(self.config.reasoning)
        opts.update(self.config.extra)
        if not chat and opts.get("reasoning"):
            # Reasoning is replayed with its encrypted content (the only form a request
            # that does not rely on stored items can use), so ask for it.
            include = list(opts.get("include") or [])
            if "reasoning.encrypted_content" not in include:
                opts["include"] = [*include, "reasoning.encrypted_content"]
        return opts

    def _hybrid(self, request: ProviderRequest) -> dict[str, Any]:
        """A hybrid Responses call: the whole input, nothing stored server-side, and a
        per-session ``prompt_cache_key`` (a hash, not the session id) so the turns of a
        session are routed to the same prompt cache."""
        params: dict[str, Any] = {
            "input": self._items(
                request.system_prompt, request.conversation(), request.history
            ),
            "store": False,
        }
        if self.config.prompt_cache_key and request.session_id:
            digest = hashlib.sha256(request.session_id.encode()).hexdigest()[:32]
            params["prompt_cache_key"] = f"ls-{digest}"
        params = {**params, **self._options(request, chat=False)}
        return as_is(params, input=params.pop("input"))

    def _chat_messages(self, request: ProviderRequest) -> list[dict[str, Any]]:
        # Chat completions servers know "system", not always "developer".
        system = request.system_prompt
        msgs: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        return msgs + to_messages(
            request.conversation(), CHAT_COMPLETIONS, history=request.history
        )

    # ------------------------------------------------------------------ native state

    async def _seed(self, client: Any, request: ProviderRequest) -> str:
        """Create a remote conversation holding the system prompt, the local mirror and
        the running turn's earlier steps (the new message goes with the turn's call)."""
        history = await request.load_history() if request.load_history else []
        items = self._items(request.system_prompt, [*history, *request.turn])
        # The items go as they are, as the hybrid input does (see ``as_is``).
        conv = await client.conversations.create(**as_is({}, items=items[:_SEED_BATCH]))
        for start in range(_SEED_BATCH, len(items), _SEED_BATCH):
            batch = items[start : start + _SEED_BATCH]
            await client.conversations.items.create(conv.id, items=(), **as_is({}, items=batch))
        return str(conv.id)

    async def _native_create(self, request: ProviderRequest, **kw: Any) -> tuple[Any, str]:
        """``responses.create`` on the session's conversation. Returns (response or stream,
        conversation id).

        Every call here changes a remote conversation, so the SDK's own retries are off
        for them: it would resend a timed-out ``responses.create`` that the server may
        already have applied, and the conversation would hold the turn twice. Retries go
        through ``with_native_retries`` instead, which sends a turn again only to a fresh
        conversation seeded from the mirror, unless the server refused it outright. A
        conversation the server no longer knows (404) is re-seeded once."""
        client = self.client().with_options(max_retries=0)
        opts = self._options(request, chat=False)
        new = message_items(request.message, system_role=self.config.system_role)
        current: str | None = request.state.get(STATE_KEY)
        created = False  # whether ``current`` was seeded during this turn

        async def seed() -> str:
            nonlocal current, created
            current = None  # a half-seeded conversation is never reused
            conv_id = await self._seed(client, request)
            current, created = conv_id, True
            return conv_id

        async def attempt(fresh: bool) -> tuple[Any, str]:
            conv_id = current if current is not None and not fresh else await seed()
            try:
                return await client.responses.create(
                    conversation=conv_id, input=new, **opts, **kw
                ), conv_id
            except Exception as exc:  # a lost conversation is recoverable
                if created or not isinstance(self._map_error(exc), ProviderNotFound):
                    raise
            conv_id = await seed()
            return await client.responses.create(
                conversation=conv_id, input=new, **opts, **kw
            ), conv_id

        return await with_native_retries(
            attempt, max_retries=self.config.max_retries, classify=self._map_error
        )

    # ------------------------------------------------------------------ send

    async def send(self, request: ProviderRequest) -> ProviderReply:
        try:
            return await self._send(request)
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
        raise mapped  # outside the handler, so the SDK exception is not chained

    async def _send(self, request: ProviderRequest) -> ProviderReply:
        client = self.client()
        if request.backend is SessionBackend.NATIVE:
            response, conv_id = await self._native_create(request)
            return self._from_response(response, {STATE_KEY: conv_id}, request)
        if self.config.api == "chat_completions":
            options = self._options(request, chat=True)
            completion = await client.chat.completions.create(
                messages=(), **as_is(options, messages=self._chat_messages(request))
            )
            return self._from_completion(completion)
        response = await client.responses.create(**self._hybrid(request))
        return self._from_response(response, None, request)

    def _from_response(
        self, response: Any, state: dict[str, Any] | None, request: ProviderRequest
    ) -> ProviderReply:
        if getattr(response, "status", "completed") == "failed":
            raise ProviderBadResponse(_response_error(response), provider=self.name)
        usage = getattr(response, "usage", None)
        details = getattr(usage, "input_tokens_details", None)
        model = getattr(response, "model", None) or self._model(request)
        text, parts = reply_parts(
            [item.to_dict() for item in response.output or []],
            provider=self.provider_type,
            model=model,
            name=self.name,
        )
        return ProviderReply(
            content=text,
            parts=parts,
            usage=make_usage(
                getattr(usage, "input_tokens", 0),
                getattr(usage, "output_tokens", 0),
                getattr(details, "cached_tokens", 0),
            ),
            provider_message_id=response.id,
            state=state,
            model=response.model,
        )

    def _from_completion(self, completion: Any) -> ProviderReply:
        if not completion.choices:
            raise ProviderBadResponse("answer had no choices", provider=self.name)
        usage = completion.usage
        details = getattr(usage, "prompt_tokens_details", None)
        message = completion.choices[0].message
        text = message.content or ""
        calls = tool_calls_from(message.tool_calls, provider=self.name)
        return ProviderReply(
            content=text,
            parts=_chat_parts(text, calls),
            usage=make_usage(
                getattr(usage, "prompt_tokens", 0),
                getattr(usage, "completion_tokens", 0),
                getattr(details, "cached_tokens", 0),
            ),
            provider_message_id=completion.id,
            model=completion.model,
        )

    # ------------------------------------------------------------------ stream

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        try:
            async for item in self._stream(request):
                yield item
            return
        except Exception as exc:
            mapped = self._map_error(exc)
            if mapped is None:
                raise
        raise mapped

    def _check_event_stream(self, stream: Any) -> None:
        """A stream request answered with something other than an event stream is a bad
        response, not a stream that broke off (the SDK would just see no events)."""
        response = getattr(stream, "response", None)
        ctype = response.headers.get("content-type", "") if response is not None else ""
        if response is not None and not ctype.startswith("text/event-stream"):
            raise ProviderBadResponse(
                f"a stream request was answered with {ctype or 'no content type'}, "
                "not an event stream",
                provider=self.name,
            )

    async def _stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        client = self.client()
        if request.backend is not SessionBackend.NATIVE and self.config.api == "chat_completions":
            async for item in self._stream_chat(client, request):
                yield item
            return
        state: dict[str, Any] | None = None
        if request.backend is SessionBackend.NATIVE:
            events, conv_id = await self._native_create(request, stream=True)
            state = {STATE_KEY: conv_id}
        else:
            events = await client.responses.create(**self._hybrid(request), stream=True)
        self._check_event_stream(events)
        final = None
        order = StreamOrder(self.name, _RESPONSES_PHASES)
        async with events:
            async for event in events:
                kind = getattr(event, "type", None)
                order.see(kind)
                if kind == "response.output_text.delta":
                    if not isinstance(event.delta, str):
                        raise ProviderBadResponse("text delta without text", provider=self.name)
                    yield event.delta
                elif kind == "response.completed":
                    final = event.response
                elif kind in ("response.failed", "response.incomplete"):
                    raise ProviderBadResponse(_response_error(event.response), provider=self.name)
                elif kind == "error":
                    raise ProviderUnavailable(
                        f"stream error: {scrub(str(getattr(event, 'message', '')), self._key())}",
                        provider=self.name,
                    )
        order.close()
        yield self._from_response(final, state, request)

    async def _stream_chat(
        self, client: Any, request: ProviderRequest
    ) -> AsyncIterator[str | ProviderReply]:
        options = self._options(request, chat=True)
        chunks = await client.chat.completions.create(
            messages=(),
            stream=True,
            stream_options={"include_usage": True},
            **as_is(options, messages=self._chat_messages(request)),
        )
        self._check_event_stream(chunks)
        parts: list[str] = []
        calls = ToolCallStream()
        usage = None
        ident = model = None
        order = StreamOrder(self.name, end="a chunk with finish_reason")
        async with chunks:
            async for chunk in chunks:
                order.see(*chat_chunk_phase(chunk))
                ident, model = chunk.id, chunk.model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    for call in choice.delta.tool_calls or ():
                        function = call.function
                        calls.add(
                            call.index,
                            id=call.id,
                            name=getattr(function, "name", None),
                            arguments=getattr(function, "arguments", None),
                        )
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                        yield choice.delta.content
        order.close()
        details = getattr(usage, "prompt_tokens_details", None)
        text = "".join(parts)
        yield ProviderReply(
            content=text,
            parts=_chat_parts(text, calls.calls(provider=self.name)),
            usage=make_usage(
                getattr(usage, "prompt_tokens", 0),
                getattr(usage, "completion_tokens", 0),
                getattr(details, "cached_tokens", 0),
            ),
            provider_message_id=ident,
            model=model,
        )


#: How Responses stream events are ordered (see ``StreamOrder``); the rest are BODY.
_RESPONSES_PHASES = {
    "response.created": Phase.OPEN,
    "response.completed": Phase.END,
    "response.failed": Phase.END,
    "response.incomplete": Phase.END,
}


def _chat_parts(text: str, calls: list[ToolCall]) -> list[Part]:
    """The parts of a Chat Completions reply: its text, then its tool calls."""
    if not calls:
        return []
    return [*([TextPart(text=text)] if text else []), *calls]


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(getattr(exc, "message", "") or "request failed")


def _response_error(response: Any) -> str:
    error = getattr(response, "error", None)
    if error is not None and getattr(error, "message", None):
        return f"response failed: {error.message}"
    details = getattr(response, "incomplete_details", None)
    if details is not None and getattr(details, "reason", None):
        return f"response incomplete: {details.reason}"
    return "response failed"


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("openai", OpenAIProvider, OpenAIConfig)
