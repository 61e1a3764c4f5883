"""Mistral wire shapes: usage and error bodies. Pure data handling, no SDK import (the
adapter is ``mistral.py``; messages and parts are ``_mistral_parts``)."""

from __future__ import annotations

import json
from typing import Any

from langswarm_runtime.providers._common import make_usage
from langswarm_runtime.session.models import Usage

__all__ = ["body_message", "usage_from"]


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
