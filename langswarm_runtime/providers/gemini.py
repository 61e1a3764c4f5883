"""The ``gemini`` provider: Gemini through the official ``google-genai`` SDK.

- HYBRID: ``client.aio.models.generate_content`` with the history as ``user``/``model``
  contents, the system prompt as ``system_instruction`` and automatic function calling
  off.
- NATIVE: the Interactions API (``client.aio.interactions.create``) with ``store=True``:
  the first turn sends the local mirror as input steps; later turns send only the new
  message with ``previous_interaction_id`` (kept in the session's provider state). An
  interaction the server no longer has (404) is re-seeded from the mirror (and the
  running turn) once, and the caller sees no error. Tools, the system instruction and
  the response format are interaction-scoped: sent with every turn.

Rich turns (function calls and responses, inline and URI media, thoughts with their
signatures, JSON-schema output) are translated by the pure functions of
``_gemini_parts``. Thoughts are asked for with the entry's ``extra``, as each API spells
it: ``thinking_config: {include_thoughts: true}`` (hybrid), ``generation_config:
{thinking_summaries: auto}`` (native; merged with the generation options set here).

Retries: google-genai does not retry by default, its ``generate_content`` retries ignore
Retry-After and the Interactions client honours it uncapped. So the SDK's own retries
are turned off (``HttpRetryOptions(attempts=1)``) and one loop here retries both APIs
``max_retries`` times, honouring Retry-After up to 60 s (``_common.with_retries``).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

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
    with_retries,
)
from langswarm_runtime.providers._gemini_parts import (
    CandidateStream,
    StepStream,
    function_declarations,
    interaction_format,
    interaction_tools,
    json_config,
    parts_from_candidate,
    parts_from_steps,
    to_contents,
    to_steps,
)
from langswarm_runtime.providers.base import (
    Provider,
    ProviderConfig,
    ProviderReply,
    ProviderRequest,
)
from langswarm_runtime.session.models import Message, SessionBackend
from langswarm_runtime.session.parts import Part, TextPart
from langswarm_runtime.tools.spec import ToolSpec

__all__ = ["STATE_KEY", "GeminiConfig", "GeminiProvider"]

#: Provider-state key of the interaction the next turn continues from.
STATE_KEY = "gemini_interaction_id"
_VERSION = re.compile(r"/(v\d+[a-z0-9]*)$")
_END = object()
#: What the SDK is given as ``contents`` when the body carries them (see _hybrid_args).
_STAND_IN = [{"role": "user", "parts": [{"text": "-"}]}]
#: How Interactions stream events are ordered (see ``StreamOrder``); the rest are BODY.
#: Interaction statuses of a finished reply (``requires_action``: it asks for tools).
_DONE = frozenset({"completed", "requires_action", None})
_INTERACTION_PHASES = {"interaction.created": Phase.OPEN, "interaction.completed": Phase.END}
T = TypeVar("T")


class GeminiConfig(ProviderConfig):
    """Options of a ``gemini`` provider entry (``api_key`` defaults to the SDK's
    ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``). ``base_url`` is the host root; a trailing
    version segment (``.../v1beta``) is taken as ``api_version``."""

    model: str | None = "gemini-2.5-flash"
    #: API version segment; None: from ``base_url`` if it ends in one, else ``v1beta``
    #: (where the Gemini API serves both generateContent and Interactions).
    api_version: str | None = None


class GeminiProvider(Provider):
    """Gemini via generateContent (hybrid) or the Interactions API (native)."""

    supports_native = True
    official_hosts = frozenset({"generativelanguage.googleapis.com"})
    sdk_module = "google.genai"
    sdk_extra = "gemini"

    def __init__(self, config: GeminiConfig | None = None, *, name: str | None = None) -> None:
        super().__init__(config or GeminiConfig(), name=name or "gemini")
        self.config: GeminiConfig
        #: Longest Retry-After wait honoured between retries, in seconds.
        self.retry_after_cap = RETRY_AFTER_CAP
        #: Checked generateContent configs, by what they are made of (see ``_checked``).
        self._configs: dict[tuple[Any, ...], tuple[tuple[ToolSpec, ...], Any]] = {}

    # -- client ------------------------------------------------------------------------
    def _http_options(self) -> dict[str, Any]:
        cfg = self.config
        options: dict[str, Any] = {
            "timeout": int(cfg.timeout * 1000),  # the SDK takes milliseconds
            "retry_options": {"attempts": 1},  # we retry ourselves: see the module doc
        }
        base_url, version = cfg.base_url, cfg.api_version
        if base_url:
            base_url = base_url.rstrip("/")
            found = _VERSION.search(base_url)
            if found:
                version = version or found.group(1)
                base_url = base_url[: found.start()]
            options["base_url"] = base_url
        options["api_version"] = version or "v1beta"
        return options

    def new_client(self) -> Any:
        """The SDK client for the running loop, built on first use (SDK imported then)."""
        genai = import_sdk("google.genai", "gemini")
        try:
            client = genai.Client(
                # empty (``${VAR:-}`` unset): the SDK reads its variable
                api_key=api_key_value(self.config.api_key) or None,
                http_options=self._http_options(),
            )
        except ValueError as exc:  # no key given and none in the environment
            raise ProviderAuthError(self._scrub(str(exc)), provider=self.name) from None
        return client

    async def close_client(self, client: Any) -> None:
        client.close()  # the SDK also opened a sync pool; release it too
        await client.aio.aclose()

    # -- errors ------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return scrub(text, api_key_value(self.config.api_key))

    def _map(self, exc: BaseException) -> ProviderError | None:
        """The ``ProviderError`` for an SDK or transport failure; None for anything else
        (ours already, or a bug), which is re-raised as it is."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, LangSwarmError):
            return None
        name = self.name
        status = getattr(exc, "status_code", None)
        if not isinstance(status, int):  # google.genai.errors.APIError has ``code``
            status = getattr(exc, "code", None) if _is_genai_error(exc) else None
        if isinstance(status, int):
            response = getattr(exc, "response", None)
            headers = getattr(response, "headers", None)
            message = _body_message(getattr(exc, "body", None)) or getattr(exc, "message", None)
            return error_for_status(
                status,
                self._scrub(str(message or exc)),
                provider=name,
                retry_after=parse_retry_after(dict(headers)) if headers is not None else None,
            )
        if "timeout" in " ".join(c.__name__.lower() for c in type(exc).__mro__):
            return ProviderTimeout(f"no answer within {self.config.timeout:g} s", provider=name)
        if _is_genai_error(exc) and "connection" in type(exc).__name__.lower():
            return ProviderUnavailable(self._scrub(f"connection failed: {exc}"), provider=name)
        if isinstance(exc, (json.JSONDecodeError, ValidationError, UnicodeDecodeError)) or (
            _is_genai_error(exc) and "response" in type(exc).__name__.lower()
        ):
            return ProviderBadResponse(self._scrub(f"unusable answer: {exc}"), provider=name)
        if is_transport_error(exc):
            return ProviderUnavailable(
                self._scrub(f"connection failed: {type(exc).__name__}: {exc}"), provider=name
            )
        return None

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` with our retries; failures mapped, never chained to SDK exceptions."""
        try:
            return await with_retries(
                call,
                max_retries=self.config.max_retries,
                classify=self._map,
                retry_after_cap=self.retry_after_cap,
            )
        except ProviderError as exc:
            raise exc from None
        except TypeError as exc:  # the SDK refused an argument before sending: ``extra``
            if "unexpected keyword" not in str(exc):
                raise
            raise self._bad_extra(exc) from None

    def _bad_extra(self, exc: Exception) -> ConfigError:
        detail = " ".join(str(exc).split())
        return ConfigError(
            f"{self.name}: option not accepted by the SDK: {detail}", key_path="extra"
        )

    # -- request shaping ---------------------------------------------------------------
    def _generation(self, request: ProviderRequest) -> dict[str, Any]:
        cfg = self.config
        options: dict[str, Any] = {}
        max_tokens = request.max_tokens or cfg.max_tokens
        if max_tokens:
            options["max_output_tokens"] = max_tokens
        temperature = request.temperature if request.temperature is not None else cfg.temperature
        if temperature is not None:
            options["temperature"] = temperature
        return options

    def _model(self, request: ProviderRequest) -> str:
        model = request.model or self.config.model
        if not model:
            raise ProviderBadResponse("no model configured", provider=self.name)
        return model

    def _hybrid_args(self, request: ProviderRequest) -> dict[str, Any]:
        notes, contents = to_contents(request.conversation(), history=request.history,
                                      rest=True)  # fmt: skip
        if request.system_prompt:
            notes.insert(0, request.system_prompt)
        checked = self._checked(request, "\n\n".join(notes) if notes else None)
        model = self._model(request)
        if not contents:
            return {"model": model, "contents": contents, "config": checked}
        # The contents, in the REST API's JSON (``rest_contents``), go in the body as they
        # are; the SDK is given a stand-in that the body replaces.
        options = checked.http_options
        if options is None:
            types = import_sdk("google.genai.types", "gemini")
            options = types.HttpOptions(extra_body={"contents": contents})
        else:  # an ``http_options`` of the caller's own, in ``extra``
            body = {**(options.extra_body or {}), "contents": contents}
            options = options.model_copy(update={"extra_body": body})
        config = checked.model_copy(update={"http_options": options})
        return {"model": model, "contents": _STAND_IN, "config": config}

    def _checked(self, request: ProviderRequest, system: str | None) -> Any:
        """The request's ``GenerateContentConfig``, validated here so a bad ``extra`` is a
        config error, not a bad answer. A tool loop asks for the same one on every call:
        it is kept by what it is made of (the tools by object: ``ToolSpec`` is frozen;
        the SDK works on a deep copy of it)."""
        generation = self._generation(request)
        response_format = request.response_format
        key = (
            tuple(generation.items()),
            system,
            tuple(map(id, request.tools)),
            None if response_format is None else json.dumps(response_format, sort_keys=True),
        )
        hit = self._configs.get(key)
        if hit is not None and all(map(operator.is_, hit[0], request.tools)):
            return hit[1]
        config: dict[str, Any] = {
            **generation,
            # No client-side tool loop: one request, one answer.
            "automatic_function_calling": {"disable": True},
        }
        if system is not None:
            config["system_instruction"] = system
        if request.tools:
            config["tools"] = function_declarations(request.tools)
        if response_format is not None:
            config.update(json_config(response_format))
        config.update(self.config.extra)
        types = import_sdk("google.genai.types", "gemini")
        try:
            checked = types.GenerateContentConfig.model_validate(config)
        except ValidationError as exc:
            raise self._bad_extra(exc) from None
        if len(self._configs) >= 64:
            self._configs.clear()
        self._configs[key] = (tuple(request.tools), checked)
        return checked

    def _native_args(
        self, request: ProviderRequest, messages: list[Message], previous: str | None
    ) -> dict[str, Any]:
        notes, steps = to_steps(messages, request.turn if previous else ())
        if request.system_prompt:
            notes.insert(0, request.system_prompt)
        args: dict[str, Any] = {"model": self._model(request), "input": steps, "store": True}
        if previous:
            args["previous_interaction_id"] = previous
        if notes:  # interaction-scoped: sent with every turn, as are the tools
            args["system_instruction"] = "\n\n".join(notes)
        if request.tools:
            args["tools"] = interaction_tools(request.tools)
        if request.response_format is not None:
            args["response_format"] = interaction_format(request.response_format)
        extra = dict(self.config.extra)
        generation = {**self._generation(request), **(extra.pop("generation_config", None) or {})}
        if generation:
            args["generation_config"] = generation
        args.update(extra)
        return args

    async def _mirror(self, request: ProviderRequest) -> list[Message]:
        return await request.load_history() if request.load_history else []

    # -- native ------------------------------------------------------------------------
    async def _interaction(self, request: ProviderRequest, *, stream: bool) -> Any:
        """Create the turn's interaction (or open its stream); re-seed once if the one we
        continue from is gone."""
        interactions = self.client().aio.interactions
        previous = request.state.get(STATE_KEY)
        if previous:
            args = self._native_args(request, [request.message], previous)
            try:
                return await self._call(lambda: interactions.create(**args, stream=stream))
            except ProviderError as exc:
                if exc.status_code != 404:
                    raise
        seed = [*await self._mirror(request), *request.turn, request.message]
        args = self._native_args(request, seed, None)
        return await self._call(lambda: interactions.create(**args, stream=stream))

    def _from_interaction(
        self, interaction: Any, content: tuple[str, list[Part]] | None = None
    ) -> ProviderReply:
        if interaction is None:
            raise ProviderBadResponse("stream ended without the interaction", provider=self.name)
        status = getattr(interaction, "status", "completed")
        if status not in _DONE:
            raise ProviderBadResponse(
                f"interaction ended with status {status!r}", provider=self.name
            )
        model = getattr(interaction, "model", None)
        if content is None:
            content = parts_from_steps(getattr(interaction, "steps", None) or (), model=model)
            if not content[1]:  # no steps in the answer: the SDK's own text of it
                content = (getattr(interaction, "output_text", None) or "", [])
        usage = interaction.usage
        return ProviderReply(
            content=content[0],
            usage=make_usage(
                getattr(usage, "total_input_tokens", 0),
                getattr(usage, "total_output_tokens", 0),
                getattr(usage, "total_cached_tokens", 0),
            ),
            provider_message_id=interaction.id,
            state={STATE_KEY: interaction.id},
            model=model,
            parts=_rich(content[1]),
        )

    # -- turns -------------------------------------------------------------------------
    async def send(self, request: ProviderRequest) -> ProviderReply:
        if request.backend is SessionBackend.NATIVE:
            interaction = await self._interaction(request, stream=False)
            return self._from_interaction(interaction)
        models = self.client().aio.models
        args = self._hybrid_args(request)
        response = await self._call(lambda: models.generate_content(**args))
        candidates = response.candidates or []
        content = getattr(candidates[0], "content", None) if candidates else None
        raw = getattr(content, "parts", None) or []
        model = response.model_version or args["model"]
        return self._from_response(
            response, parts_from_candidate(raw, model=model, response_id=response.response_id)
        )

    def _from_response(self, response: Any, content: tuple[str, list[Part]]) -> ProviderReply:
        meta = response.usage_metadata
        if meta is None:
            raise ProviderBadResponse("answer without usage metadata", provider=self.name)
        return ProviderReply(
            content=content[0],
            parts=_rich(content[1]),
            usage=make_usage(
                meta.prompt_token_count,
                meta.candidates_token_count,
                meta.cached_content_token_count,
            ),
            provider_message_id=response.response_id,
            model=response.model_version,
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        try:
            if request.backend is SessionBackend.NATIVE:
                items = self._stream_native(request)
            else:
                items = self._stream_hybrid(request)
            async for item in items:
                yield item
            return
        except Exception as exc:  # mapped below; anything unknown (a bug) re-raised
            mapped = self._map(exc)
            if mapped is None:
                raise
        raise mapped from None

    async def _stream_hybrid(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        models = self.client().aio.models
        args = self._hybrid_args(request)

        async def open_stream() -> tuple[Any, Any]:
            # The request goes out on the first read: retry up to the first chunk only.
            chunks = await models.generate_content_stream(**args)
            return chunks, await anext(chunks, _END)

        chunks, first = await self._call(open_stream)
        parts = CandidateStream()
        last = None
        chunk = first
        # No opening event; the chunk that finishes candidate 0 is the end, and only a
        # chunk without candidates (usage alone) may follow it.
        order = StreamOrder(self.name, end="a chunk with finishReason")
        while chunk is not _END:
            if not chunk.candidates:
                order.see("chunk without candidates", Phase.TRAILER if order.ended else Phase.BODY)
            elif chunk.candidates[0].finish_reason is not None:
                order.see("finishing chunk", Phase.END)
            else:
                order.see("content chunk", Phase.BODY)
            last = chunk
            content = chunk.candidates[0].content if chunk.candidates else None
            for raw in getattr(content, "parts", None) or ():
                text = parts.add(raw)
                if text:
                    yield text
            chunk = await anext(chunks, _END)
        order.close()
        if last is None:
            raise ProviderBadResponse("empty stream", provider=self.name)
        model = last.model_version or args["model"]
        yield self._from_response(last, parts.parts(model=model, response_id=last.response_id))

    async def _stream_native(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        events = await self._interaction(request, stream=True)
        steps = StepStream()
        final = None
        order = StreamOrder(self.name, _INTERACTION_PHASES)
        async for event in events:
            # The SDK passes an event it could not decode on as its raw text: kind None.
            kind = getattr(event, "event_type", None)
            order.see(kind)
            if kind == "step.start":
                steps.start(event.index, event.step)
            elif kind == "step.delta":
                text = steps.delta(event.index, event.delta)
                if text:
                    yield text
            elif kind == "interaction.completed":
                final = event.interaction
            elif kind == "error":
                error = getattr(event, "error", None)
                message = getattr(error, "message", None) or "stream error"
                raise ProviderUnavailable(self._scrub(str(message)), provider=self.name)
        order.close()
        model = getattr(final, "model", None)
        yield self._from_interaction(final, steps.parts(model=model))


def _rich(parts: list[Part]) -> list[Part]:
    """The reply's parts, or none for a reply that is only text."""
    return parts if any(not isinstance(p, TextPart) for p in parts) else []


def _body_message(body: Any) -> str | None:
    """``error.message`` of a Google error body (the Interactions client keeps it raw)."""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else None


def _is_genai_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("google.genai")


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("gemini", GeminiProvider, GeminiConfig)
