"""How many tokens an image or file costs in the context window, by each provider's
documented estimate (used by the context policy against ``max_tokens``).

- OpenAI (high detail): fit in 2048x2048, shortest side scaled to 768, then
  85 + 170 per 512-pixel tile.
- Anthropic: width x height / 750, after fitting 1568 pixels on the long edge
  (about 1,600 tokens at most).
- Gemini: 258 for an image of at most 384 pixels each side, else 258 per
  768x768 tile.
- Mistral (Pixtral): one token per 16x16 patch, after fitting 1024x1024.
- Cohere and others: the Anthropic rule.

An image whose size is not known counts as the largest of its provider's rule for a
1024x1024 image; a PDF counts 1,500 tokens per 50 KB (about a page of text and its
picture), other files their size / 4 (text).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from langswarm_runtime.session.parts import FilePart, ImagePart

__all__ = ["image_tokens", "media_tokens"]


def _openai(width: int, height: int) -> int:
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def _anthropic(w: int, h: int) -> int:
    scale = min(1.0, 1568 / max(w, h))
    return max(1, math.ceil(w * scale * h * scale / 750))


def _gemini(w: int, h: int) -> int:
    if w <= 384 and h <= 384:
        return 258
    return 258 * math.ceil(w / 768) * math.ceil(h / 768)


def _mistral(w: int, h: int) -> int:
    scale = min(1.0, 1024 / max(w, h))
    return math.ceil(w * scale / 16) * math.ceil(h * scale / 16)


_RULES: dict[str, Callable[[int, int], int]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "mistral": _mistral,
}


def image_tokens(provider: str | None, width: int | None, height: int | None) -> int:
    """Tokens of one image of ``width`` x ``height`` pixels on ``provider``."""
    rule = _RULES.get(provider or "", _anthropic)
    if not width or not height:
        return rule(1024, 1024)
    return rule(width, height)


def media_tokens(provider: str | None, part: ImagePart | FilePart) -> int:
    """Tokens of an image or file part on ``provider`` (a provider type name)."""
    if isinstance(part, ImagePart):
        return image_tokens(provider, part.width, part.height)
    size = part.size or (len(part.data) if part.data is not None else 0)
    if part.media_type == "application/pdf":
        return 1500 * max(1, math.ceil(size / 50_000))
    return max(1, math.ceil(size / 4))
