"""Deterministic prompt-cache accounting for the emulator's stateless (hybrid) routes.

A request's prompt is cut into *segments* (the system prompt, then each message), each
with its token count. A prefix is identified by a hash chained over the canonical JSON of
its segments, so a prefix that changed by a single byte (a timestamp, an id, a reordered
key is fine: keys are sorted) is a different prefix, as on the real services.

- Automatic prefix caching (OpenAI, Gemini, Mistral, Cohere): every prefix of a request
  is remembered; the next request reads from cache the tokens of its longest prefix seen
  before.
- Explicit breakpoints (Anthropic ``cache_control``): only prefixes ending at a
  breakpoint are written; a request reads the longest written prefix ending at, or up to
  ``LOOKBACK`` segments before, one of its breakpoints, and writes the rest up to its
  last breakpoint (``cache_creation_input_tokens``). Without breakpoints nothing is
  cached.

Caches are kept per (provider, model), never expire, and count tokens as the emulator
does (whitespace-separated words). ``ProviderEmulator(cached_tokens=N)`` overrides all
of this with a fixed count, for tests of the usage mapping alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LOOKBACK", "CacheResult", "PrefixCache", "Segment", "prompt_cache"]

#: How many segments before a breakpoint Anthropic looks for an earlier cache entry.
LOOKBACK = 20


@dataclass(frozen=True)
class Segment:
    """One cacheable piece of a prompt: its wire form (hashed) and its token count."""

    wire: Any
    tokens: int


@dataclass(frozen=True)
class CacheResult:
    """Tokens of one request read from and written to the cache."""

    read: int = 0
    written: int = 0


@dataclass
class _Totals:
    requests: int = 0
    input: int = 0
    read: int = 0
    written: int = 0


@dataclass
class PrefixCache:
    """Prefixes seen per (provider, model) and running totals per provider. Not
    thread-safe on its own: callers hold the emulator's lock."""

    _seen: dict[tuple[str, str], set[bytes]] = field(default_factory=dict)
    _totals: dict[str, _Totals] = field(default_factory=dict)

    def lookup(
        self,
        provider: str,
        model: str,
        segments: Sequence[Segment],
        breakpoints: Sequence[int] | None = None,
    ) -> CacheResult:
        """Account one request. ``breakpoints``: segment counts at which an explicit
        breakpoint ends a prefix (None: automatic caching of every prefix)."""
        digests = _chain(segments)
        sizes = [0]
        for seg in segments:
            sizes.append(sizes[-1] + seg.tokens)
        seen = self._seen.setdefault((provider, model), set())
        if breakpoints is None:
            hits = [i for i in range(1, len(digests)) if digests[i] in seen]
            result = CacheResult(read=sizes[max(hits)] if hits else 0)
            seen.update(digests[1:])
        else:
            marks = sorted({b for b in breakpoints if 0 < b < len(digests)})
            best = 0
            for b in marks:
                for i in range(b, max(0, b - LOOKBACK), -1):
                    if digests[i] in seen:
                        best = max(best, i)
                        break
            written = sizes[marks[-1]] - sizes[best] if marks and marks[-1] > best else 0
            result = CacheResult(read=sizes[best], written=written)
            seen.update(digests[b] for b in marks)
        totals = self._totals.setdefault(provider, _Totals())
        totals.requests += 1
        totals.input += sizes[-1]
        totals.read += result.read
        totals.written += result.written
        return result

    def totals(self, provider: str) -> dict[str, int]:
        """``{"requests", "input", "read", "written"}`` accounted so far for a provider."""
        t = self._totals.get(provider, _Totals())
        return {"requests": t.requests, "input": t.input, "read": t.read, "written": t.written}

    def clear(self) -> None:
        self._seen.clear()
        self._totals.clear()


def _chain(segments: Sequence[Segment]) -> list[bytes]:
    """``digests[i]`` identifies the prefix of the first ``i`` segments."""
    digests = [b""]
    for seg in segments:
        canonical = json.dumps(seg.wire, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digests.append(hashlib.sha256(digests[-1] + canonical.encode()).digest())
    return digests


def prompt_cache(
    emulator: Any,
    provider: str,
    model: str,
    segments: Sequence[Segment],
    breakpoints: Sequence[int] | None = None,
) -> CacheResult:
    """The cache result a route reports for a stateless request: the emulator's fixed
    ``cached_tokens`` when set, else the prefix cache's, else nothing."""
    total = sum(s.tokens for s in segments)
    if emulator.cached_tokens:
        return CacheResult(read=min(emulator.cached_tokens, total))
    if not emulator.prompt_cache:
        return CacheResult()
    cache: PrefixCache = emulator.prefix_cache
    with emulator.lock:
        return cache.lookup(provider, model, segments, breakpoints)
