"""``pii_filter``: redact, mask, hash or block personal data and secrets in messages.

Detection lives in :mod:`langswarm_runtime.middleware.pii_detect`; this module decides
what to do with each finding.

Streaming: ``filters_deltas`` is False on purpose. A value can be split across deltas
("jane.d" + "oe@example.com"), and a delta filter that only sees one piece at a time
would let both halves through. The chain instead runs on the complete reply before it
is committed, so what is stored and returned as the final message is always filtered.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from langswarm_runtime.errors import MessageRejected
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.middleware._common import (
    BOTH_DIRECTIONS,
    Direction,
    build_config,
    session_attr,
)
from langswarm_runtime.middleware.pii_entities import ENTITIES, Entity
from langswarm_runtime.session.middleware import ISessionMiddleware
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import ToolCall, ToolResult

if TYPE_CHECKING:
    from langswarm_runtime.middleware.pii_detect import Finding

__all__ = ["PIIFilterConfig", "PIIFilterMiddleware", "redact_text"]

#: Selector names accepted in ``entities:`` besides the entity names themselves.
_ALIASES: dict[str, tuple[Entity, ...]] = {
    "ip_address": ("ipv4", "ipv6"),
    "ip": ("ipv4", "ipv6"),
    "card": ("credit_card",),
    "secret": ("api_key",),
    "all": ENTITIES,
}

Mode = Literal["redact", "mask", "hash", "block"]


class PIIFilterConfig(BaseModel):
    """Options of the ``pii_filter`` middleware."""

    model_config = ConfigDict(extra="forbid")

    #: Accepted (and ignored) so a whole YAML block validates.
    type: str | None = None
    #: Which entity types to look for (``ip_address`` = ipv4 + ipv6, ``all`` = every type).
    entities: list[str] = Field(default_factory=lambda: [str(e) for e in ENTITIES])
    #: ``redact`` -> ``[EMAIL]``; ``mask`` -> ``j***@example.com``; ``hash`` ->
    #: ``[EMAIL:3f2a9c]`` (stable within a session); ``block`` -> reject the message.
    mode: Mode = "redact"
    #: Which messages to filter: user messages (``outgoing``), replies (``incoming``).
    directions: list[Direction] = Field(default_factory=lambda: list(BOTH_DIRECTIONS))
    #: Hex characters of the keyed hash shown in ``hash`` mode.
    hash_length: int = Field(default=6, ge=4, le=32)

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in ENTITIES and name not in _ALIASES:
                known = ", ".join(sorted({*ENTITIES, *_ALIASES}))
                raise ValueError(f"unknown entity {name!r} (known: {known})")
        return value

    def selected(self) -> tuple[Entity, ...]:
        """The entity names the selectors expand to, in detection priority order."""
        chosen: set[str] = set()
        for name in self.entities:
            chosen.update(_ALIASES.get(name, (name,)))
        return tuple(e for e in ENTITIES if e in chosen)


def _label(entity: Entity) -> str:
    return entity.upper()


def _mask(entity: Entity, value: str) -> str:
    """Hide the value but keep its shape; cards, IBANs, phones and SSNs keep their last
    four digits (what a support agent needs), emails keep their domain."""
    if entity == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    keep = 4 if entity in ("credit_card", "iban", "phone", "ssn") else 0
    alnum_total = sum(ch.isalnum() for ch in value)
    out: list[str] = []
    seen = 0
    for ch in value:
        if ch.isalnum():
            seen += 1
            out.append(ch if seen > alnum_total - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def redact_text(text: str, entities: tuple[Entity, ...] = ENTITIES) -> str:
    """``text`` with every finding replaced by its ``[LABEL]`` (used by audit_log too)."""
    from langswarm_runtime.middleware.pii_detect import find_pii

    return _rewrite(text, find_pii(text, entities), lambda f: f"[{_label(f.entity)}]")


def _rewrite(text: str, findings: list[Finding], replace: Any) -> str:
    parts: list[str] = []
    pos = 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(replace(f))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


class PIIFilterMiddleware(ISessionMiddleware):
    """Finds emails, phone numbers, payment cards, IBANs, US SSNs, IP addresses and
    API-key-like secrets, and redacts, masks, hashes or blocks them.

    Code-first: ``PIIFilterMiddleware()`` (all entities, redact, both directions) or
    ``PIIFilterMiddleware(mode="hash", entities=["email", "phone"])``.
    """

    name = "pii_filter"
    filters_deltas = False  # see the module docstring

    def __init__(self, config: PIIFilterConfig | None = None, **options: Any) -> None:
        self.config = build_config(PIIFilterConfig, config, options, self.name)
        self._entities = self.config.selected()
        # The detectors (many compiled patterns) load with the first filter built, not
        # when the plugin registers, so start-up without a pii_filter does not pay.
        import langswarm_runtime.middleware.pii_detect  # noqa: F401
        # Key for sessions that have no id (stand-ins in tests): random, so hashes made
        # without a session id are never comparable across processes.
        self._fallback_key = os.urandom(32)

    def _hash_key(self, session: object) -> bytes:
        session_id = session_attr(session, "session_id")
        if not session_id:
            return self._fallback_key
        return hashlib.sha256(b"langswarm-pii:" + str(session_id).encode()).digest()

    def filter_text(self, session: object, text: str) -> tuple[str, Counter[str]]:
        """The filtered text and how many values of each entity type it held."""
        from langswarm_runtime.middleware.pii_detect import find_pii, normalise

        findings = find_pii(text, self._entities)
        counts: Counter[str] = Counter(f.entity for f in findings)
        if not findings:
            return text, counts
        mode = self.config.mode
        if mode == "block":
            kinds = ", ".join(sorted(counts))
            # Name the types only: the value itself must not reach errors or logs.
            raise MessageRejected(f"message contains personal data ({kinds})", middleware=self.name)
        if mode == "redact":
            return _rewrite(text, findings, lambda f: f"[{_label(f.entity)}]"), counts
        if mode == "mask":
            return _rewrite(text, findings, lambda f: _mask(f.entity, f.value)), counts
        key = self._hash_key(session)
        n = self.config.hash_length

        def hashed(f: Finding) -> str:
            digest = hmac.new(key, f"{f.entity}:{normalise(f.entity, f.value)}".encode(),
                              hashlib.sha256).hexdigest()
            return f"[{_label(f.entity)}:{digest[:n]}]"

        return _rewrite(text, findings, hashed), counts

    def _process(self, session: object, message: Message, direction: Direction) -> Message:
        if direction not in self.config.directions:
            return message
        text, counts = self.filter_text(session, message.content)
        if not counts:
            return message
        metadata = dict(message.metadata)
        previous = metadata.get("pii_filtered", {})
        merged = Counter(previous if isinstance(previous, dict) else {}) + counts
        metadata["pii_filtered"] = dict(sorted(merged.items()))
        return message.model_copy(update={"content": text, "metadata": metadata})

    def process_outgoing_message(self, session: Any, message: Message) -> Message:
        return self._process(session, message, "outgoing")

    def process_incoming_message(self, session: Any, message: Message) -> Message:
        return self._process(session, message, "incoming")

    def _scrub(self, session: object, value: Any) -> tuple[Any, Counter[str]]:
        """Every string in a JSON value filtered (keys are kept)."""
        if isinstance(value, str):
            return self.filter_text(session, value)
        total: Counter[str] = Counter()
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                out[key], counts = self._scrub(session, item)
                total += counts
            return out, total
        if isinstance(value, list):
            items = []
            for item in value:
                new, counts = self._scrub(session, item)
                items.append(new)
                total += counts
            return items, total
        return value, total

    def process_tool_call(self, session: Any, call: ToolCall) -> ToolCall:
        """The model's tool arguments, before they are stored and sent back (the tool
        itself runs with them as the model sent them)."""
        if "incoming" not in self.config.directions:
            return call
        arguments, counts = self._scrub(session, call.arguments)
        return call.model_copy(update={"arguments": arguments}) if counts else call

    def process_tool_result(self, session: Any, result: ToolResult) -> ToolResult:
        """A tool's result, before it is stored and sent to the provider."""
        if "outgoing" not in self.config.directions:
            return result
        content, counts = self.filter_text(session, result.content)
        return result.model_copy(update={"content": content}) if counts else result


@hookimpl
def register_middlewares(register: Any) -> None:
    register("pii_filter", PIIFilterMiddleware, PIIFilterConfig)
