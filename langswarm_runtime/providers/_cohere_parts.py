"""Cohere v2 chat shapes: the request's messages, tools and response format, and the
parts of a reply. Pure functions, no SDK import (the adapter is ``cohere.py``); the
OpenAI-style part of the format is :mod:`._openai_style`'s, in its ``COHERE`` style.

What is Cohere's own:

- the plan that comes with tool calls (``tool_plan``) is kept as a ``ReasoningPart``
  marked ``{"kind": "tool_plan"}`` and goes back as ``tool_plan``, to Cohere only;
- thinking (``thinking`` content items, with ``thinking`` enabled) is a ``ReasoningPart``;
- Cohere takes no documents in messages: a text file goes as text, anything else as a
  note saying what was left out;
- the JSON-schema mode is ``{"type": "json_object", "json_schema": ...}``, and Cohere
  does not take it together with tools, so a call asking for a format offers no tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langswarm_runtime.providers._openai_style import (
    COHERE,
    response_format_param,
    to_messages,
    tool_calls_from,
    tools_param,
)
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import Part, ReasoningPart, TextPart, ToolCall
from langswarm_runtime.tools.spec import ToolSpec

__all__ = ["TOOL_PLAN", "chat_arguments", "reply_parts"]

#: ``ReasoningPart.data`` of a kept ``tool_plan``.
TOOL_PLAN = {"kind": "tool_plan"}


def chat_arguments(
    system_prompt: str | None,
    conversation: Sequence[Message],
    tools: Sequence[ToolSpec],
    response_format: dict[str, Any] | None,
    history: Sequence[Message] | None = None,
) -> dict[str, Any]:
    """``messages`` (system prompt first), and ``tools`` or ``response_format``."""
    messages = to_messages(conversation, COHERE, history=history)
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    args: dict[str, Any] = {"messages": messages}
    if response_format is not None:
        args["response_format"] = response_format_param(response_format, COHERE)
    elif tools:
        args["tools"] = tools_param(tools)
    return args


def reply_parts(
    content: Sequence[Any] | None,
    tool_plan: str | None,
    tool_calls: Sequence[Any] | None,
    *,
    provider: str,
    model: str | None,
) -> tuple[str, list[Part]]:
    """(text, parts) of a reply's ``message``: thinking and the tool plan as reasoning,
    the text, then the tool calls. ``parts`` is empty for a reply that is only text."""
    parts: list[Part] = []
    texts: list[str] = []
    for item in content or ():
        kind = _get(item, "type")
        if kind == "thinking":
            thinking = _get(item, "thinking")
            if thinking:
                parts.append(ReasoningPart(text=thinking, provider=provider, model=model))
        elif kind == "text":
            texts.append(_get(item, "text") or "")
    return finish(texts, parts, tool_plan, tool_calls_from(tool_calls, provider=provider),
                  provider=provider, model=model)  # fmt: skip


def finish(
    texts: Sequence[str],
    reasoning: list[Part],
    tool_plan: str | None,
    calls: list[ToolCall],
    *,
    provider: str,
    model: str | None,
) -> tuple[str, list[Part]]:
    """(text, parts) from what a reply (whole or streamed) was made of."""
    text = "".join(texts)
    parts = list(reasoning)
    if tool_plan:
        parts.append(
            ReasoningPart(text=tool_plan, provider=provider, model=model, data=dict(TOOL_PLAN))
        )
    if not parts and not calls:
        return text, []
    if text:
        parts.append(TextPart(text=text))
    parts.extend(calls)
    return text, parts


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
