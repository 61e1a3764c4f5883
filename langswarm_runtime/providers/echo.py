"""The offline provider: deterministic, no network. Its reply quotes the new message and
says how many earlier messages it was given, so hydration and context policy are visible.
Tools, media and structured output follow the emulator's rules (``_model_rules``): with
tools offered, ``call NAME {json}`` makes it call NAME, and results are answered
``tool NAME returned ...``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

from langswarm_runtime.errors import ProviderUnavailable
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.providers._model_rules import (
    chained_calls,
    media_note,
    structured_reply,
    tool_answer,
    tool_calls_asked,
)
from langswarm_runtime.providers.base import (
    Provider,
    ProviderConfig,
    ProviderReply,
    ProviderRequest,
)
from langswarm_runtime.session.models import SessionBackend, Usage
from langswarm_runtime.session.parts import FilePart, ImagePart, TextPart, ToolCall

__all__ = ["EchoConfig", "EchoProvider"]


class EchoConfig(ProviderConfig):
    """Options of the ``echo`` provider."""

    model: str | None = "echo-1"
    #: Seconds to wait before answering (to demo streaming and timeouts).
    delay: float = Field(default=0.0, ge=0)
    #: Fail every call with ProviderUnavailable (to demo failure handling).
    fail: bool = False


def _words(text: str) -> int:
    return len(text.split())


class EchoProvider(Provider):
    """Replies ``echo: <message> [earlier messages: N]``.

    In hybrid mode N counts the history it was sent; in native mode it keeps its own
    count in the provider state, as a server-side conversation would.
    """

    supports_native = True

    def __init__(self, config: EchoConfig | None = None) -> None:
        super().__init__(config or EchoConfig(), name="echo")
        self.config: EchoConfig

    def _reply(self, request: ProviderRequest, earlier: int) -> ProviderReply:
        message = request.message
        parts: list[Any] = []
        offered = [t.name for t in request.tools]
        answer: str | None = None
        if message.role == "tool":
            results = [(r.name, r.content) for r in message.tool_results]
            asked = chained_calls(results, offered)
            if not asked:
                answer = tool_answer(results)
        else:
            asked = tool_calls_asked(message.content, offered)
        calls = [
            ToolCall(id=f"call_{uuid.uuid4().hex[:12]}", name=name, arguments=arguments)
            for name, arguments in asked
        ]
        if calls:
            text = ""
            parts = list(calls)
        elif answer is not None:
            text = answer
        elif request.response_format is not None:
            text = structured_reply(request.response_format["schema"], message.content)
        else:
            media = [(p.media_type, p.size, p.url) for p in message.parts
                     if isinstance(p, (ImagePart, FilePart))]  # fmt: skip
            text = f"echo: {message.content}{media_note(media)} [earlier messages: {earlier}]"
        if text and parts:
            parts.insert(0, TextPart(text=text))
        input_words = _words(request.message.content) + sum(
            _words(m.content) for m in request.history
        )
        if request.system_prompt:
            input_words += _words(request.system_prompt)
        state = None
        if request.backend is SessionBackend.NATIVE:
            state = {"conversation_length": earlier + 2}
        return ProviderReply(
            content=text,
            usage=Usage(input_tokens=input_words, output_tokens=_words(text) + len(calls)),
            state=state,
            model=request.model,
            parts=parts,
        )

    async def _earlier(self, request: ProviderRequest) -> int:
        if request.backend is SessionBackend.NATIVE:
            length = request.state.get("conversation_length")
            if length is None and request.load_history is not None:
                # No remote conversation yet (or it was lost): seed it from the mirror.
                length = len(await request.load_history())
            return int(length or 0)
        return len(request.history)

    async def send(self, request: ProviderRequest) -> ProviderReply:
        if self.config.delay:
            await asyncio.sleep(self.config.delay)
        if self.config.fail:
            raise ProviderUnavailable("echo provider configured to fail", provider=self.name)
        return self._reply(request, await self._earlier(request))

    async def stream(self, request: ProviderRequest) -> AsyncIterator[str | ProviderReply]:
        reply = await self.send(request)
        if not reply.content:
            yield reply
            return
        # Word-sized deltas, so consumers see a real stream.
        parts = reply.content.split(" ")
        for i, part in enumerate(parts):
            yield part if i == 0 else " " + part
        yield reply


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("echo", EchoProvider, EchoConfig)
