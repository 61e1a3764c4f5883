"""Mistral's shapes of rich turns, for chat completions (hybrid) and the Conversations API
(native). Pure functions, no SDK import (the adapter is ``mistral.py``); chat messages
are :mod:`._openai_style`'s, in its ``MISTRAL`` style.

What is Mistral's own:

- tool-call ids are 9 letters and digits (``CALL_ID_PATTERN``; ids another provider made
  are rewritten before they get here), and a tool message names its tool;
- images go as ``image_url`` strings, files as ``document_url`` (both ``data:`` URLs
  when the part holds bytes);
- reasoning models answer with ``thinking`` chunks (a signature with them at times):
  kept as ``ReasoningPart`` and sent back, to Mistral only, as ``thinking`` chunks;
- Conversations hold the turn as entries: ``message.input`` (user text and media,
  earlier assistant text), ``function.call`` and ``function.result``; the tools are set
  when a conversation starts, so a turn offering other tools starts a new one
  (``tools_key`` tells).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from langswarm_runtime.providers._common import SUMMARY_PREFIX
from langswarm_runtime.providers._openai_style import (
    MISTRAL,
    arguments_json,
    response_format_param,
    to_messages,
    tool_calls_from,
    tools_param,
)
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import Part, ReasoningPart, TextPart, ToolCall
from langswarm_runtime.tools.spec import ToolSpec

__all__ = [
    "CALL_ID_PATTERN",
    "append_inputs",
    "chat_arguments",
    "chunk_texts",
    "finish",
    "is_answer",
    "output_parts",
    "reply_parts",
    "seed_entries",
    "tools_key",
]

#: What Mistral accepts as a tool-call id.
CALL_ID_PATTERN = r"^[a-zA-Z0-9]{9}$"

Wire = dict[str, Any]


# ------------------------------------------------------------------------ chat (hybrid)


def chat_arguments(
    system_prompt: str | None,
    conversation: Sequence[Message],
    tools: Sequence[ToolSpec],
    response_format: dict[str, Any] | None,
    history: Sequence[Message] | None = None,
) -> Wire:
    """``messages`` (system prompt first), ``tools`` and ``response_format``."""
    messages = to_messages(conversation, MISTRAL, history=history)
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    args: Wire = {"messages": messages}
    if tools:
        args["tools"] = tools_param(tools)
    if response_format is not None:
        args["response_format"] = response_format_param(response_format, MISTRAL)
    return args


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def chunk_texts(content: Any) -> tuple[str, list[tuple[str, str | None]]]:
    """(text, [(thinking text, signature)]) of a message content: a str or chunks."""
    if content is None or isinstance(content, str):
        return content or "", []
    chunks = content if isinstance(content, list) else [content]
    texts: list[str] = []
    thoughts: list[tuple[str, str | None]] = []
    for chunk in chunks:
        if isinstance(chunk, str):
            texts.append(chunk)
        elif _get(chunk, "type") == "thinking":
            inner, _ = chunk_texts(_get(chunk, "thinking"))
            signature = _get(chunk, "signature")
            thoughts.append((inner, signature if isinstance(signature, str) else None))
        else:
            text = _get(chunk, "text")
            if isinstance(text, str):
                texts.append(text)
    return "".join(texts), thoughts


def finish(
    text: str,
    thoughts: Iterable[tuple[str, str | None]],
    calls: list[ToolCall],
    *,
    provider: str,
    model: str | None,
) -> tuple[str, list[Part]]:
    """(text, parts): reasoning, the text, then the calls; no parts for text alone."""
    parts: list[Part] = [
        ReasoningPart(
            text=thought,
            provider=provider,
            model=model,
            data={"signature": signature} if signature else None,
        )
        for thought, signature in thoughts
        if thought
    ]
    if not parts and not calls:
        return text, []
    if text:
        parts.append(TextPart(text=text))
    parts.extend(calls)
    return text, parts


def reply_parts(
    content: Any, tool_calls: Any, *, provider: str, model: str | None
) -> tuple[str, list[Part]]:
    """(text, parts) of a chat completion's message."""
    text, thoughts = chunk_texts(content)
    calls = tool_calls_from(tool_calls, provider=provider)
    return finish(text, thoughts, calls, provider=provider, model=model)


# ----------------------------------------------------------------- conversations (native)


def tools_key(tools: Sequence[ToolSpec]) -> str | None:
    """A digest of the tools offered (None: none), kept with the conversation id."""
    if not tools:
        return None
    spec = json.dumps(tools_param(tools), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _input_content(message: Message) -> str | list[Wire]:
    [wire] = to_messages([message], MISTRAL)
    content: str | list[Wire] = wire["content"]
    return content


def _entries(message: Message) -> list[Wire]:
    """The Conversations entries of one message (system and summary messages aside)."""
    if message.role == "tool":
        return [
            {"type": "function.result", "tool_call_id": r.call_id, "result": r.content}
            for r in message.tool_results
        ]
    if message.role == "user":
        return [{"type": "message.input", "role": "user", "content": _input_content(message)}]
    entries: list[Wire] = []
    if message.content:
        entries.append({"type": "message.input", "role": "assistant", "content": message.content})
    entries.extend(
        {
            "type": "function.call",
            "tool_call_id": call.id,
            "name": call.name,
            "arguments": arguments_json(call.arguments),
        }
        for call in message.tool_calls
    )
    return entries


def seed_entries(
    system_prompt: str | None, messages: Sequence[Message]
) -> tuple[str | None, list[Wire]]:
    """(instructions, input entries) for starting a conversation from the mirror: system
    text (the prompt, a stored summary) becomes instructions, the rest entries; the
    results after an assistant message go in the order of its calls."""
    notes = [system_prompt] if system_prompt else []
    entries: list[Wire] = []
    order: dict[str, int] = {}
    results: list[Wire] = []

    def flush() -> None:
        results.sort(key=lambda e: order.get(e["tool_call_id"], len(order)))
        entries.extend(results)
        results.clear()

    for message in messages:
        if message.role == "tool":
            results.extend(_entries(message))
            continue
        flush()
        if message.role == "summary":
            notes.append(SUMMARY_PREFIX + message.content)
        elif message.role == "system":
            notes.append(message.content)
        else:
            if message.role == "assistant":
                order = {c.id: i for i, c in enumerate(message.tool_calls)}
            entries.extend(_entries(message))
    flush()
    return ("\n\n".join(notes) or None), entries


def append_inputs(message: Message) -> str | list[Wire]:
    """What an append sends: a user's text as it is, else the message's entries."""
    if message.role == "user" and not message.parts:
        return message.content
    return _entries(message)


def output_parts(
    outputs: Iterable[Any], *, provider: str, model: str | None
) -> tuple[str, list[Part]]:
    """(text, parts) of a conversation response's ``outputs``: ``message.output`` entries
    and ``function.call`` entries (other entries, such as built-in tool runs, aside)."""
    texts: list[str] = []
    thoughts: list[tuple[str, str | None]] = []
    calls: list[ToolCall] = []
    for entry in outputs:
        kind = _get(entry, "type")
        if kind == "message.output":
            text, found = chunk_texts(_get(entry, "content"))
            texts.append(text)
            thoughts.extend(found)
        elif kind == "function.call":
            calls.extend(
                tool_calls_from(
                    [
                        {
                            "id": _get(entry, "tool_call_id"),
                            "function": {
                                "name": _get(entry, "name"),
                                "arguments": _get(entry, "arguments"),
                            },
                        }
                    ],
                    provider=provider,
                )
            )
    return finish("".join(texts), thoughts, calls, provider=provider, model=model)


def is_answer(outputs: Iterable[Any]) -> bool:
    """Whether a conversation response holds a message or a call (not only tool runs)."""
    return any(_get(o, "type") in ("message.output", "function.call") for o in outputs)
