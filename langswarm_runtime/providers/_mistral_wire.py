"""Mistral wire shapes: seeding a conversation from the local mirror, message content,
usage and error bodies. Pure data handling, no SDK import (the adapter is ``mistral.py``)."""

from __future__ import annotations

import json
from typing import Any

from langswarm_runtime.providers._common import history_turns, make_usage
from langswarm_runtime.session.models import Message, Usage

__all__ = ["body_message", "content_text", "seed_entries", "usage_from"]


def seed_entries(
    system_prompt: str | None, messages: list[Message]
) -> tuple[str | None, list[dict[str, Any]]]:
    """(instructions, input entries) for starting a conversation from the mirror: system
    text (the prompt, a stored summary) becomes instructions, turns become entries."""
    notes = [system_prompt] if system_prompt else []
    entries: list[dict[str, Any]] = []
    for role, text in history_turns(messages):
        if role == "system":
            notes.append(text)
        else:
            entries.append({"type": "message.input", "role": role, "content": text})
    return ("\n\n".join(notes) or None), entries


def content_text(content: Any) -> str:
    """Text of a message content: a str, or a list of chunks (text ones kept)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(content_text(c) for c in content)
    text = getattr(content, "text", None)
    return text if isinstance(text, str) else ""


def usage_from(usage: Any) -> Usage:
    # Cached prompt tokens arrive as usage.prompt_tokens_details.cached_tokens, an extra
    # field the SDK's model keeps as a plain dict.
    details = getattr(usage, "prompt_tokens_details", None)
    if isinstance(details, dict):
        cached = details.get("cached_tokens", 0)
    else:
        cached = getattr(details, "cached_tokens", 0)
    return make_usage(
        getattr(usage, "prompt_tokens", 0), getattr(usage, "completion_tokens", 0), cached
    )


def body_message(body: Any) -> str:
    # Mistral's error body is {"object": "error", "message": ...}; 422s carry "detail".
    try:
        data = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "detail"):
            value = data.get(key)
            if isinstance(value, str):
                return value
            if value is not None:
                return json.dumps(value)[:300]
    text = str(body or "")
    return text[:200] or "request failed"
