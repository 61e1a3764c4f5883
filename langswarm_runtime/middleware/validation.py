"""``validation``: reject messages over a size limit or matching banned patterns.

Rules at the top level apply to the directions listed in ``directions``; an ``outgoing:``
or ``incoming:`` block adds rules for that direction only (its ``max_chars`` replaces the
top-level one). The rejection reason names the rule, never the offending text.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from langswarm_runtime.errors import MessageRejected
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.middleware._common import BOTH_DIRECTIONS, Direction, build_config
from langswarm_runtime.session.middleware import ISessionMiddleware
from langswarm_runtime.session.models import Message

__all__ = ["BannedPattern", "ValidationConfig", "ValidationMiddleware", "ValidationRules"]


class BannedPattern(BaseModel):
    """A regular expression that must not match, with the reason shown on rejection."""

    model_config = ConfigDict(extra="forbid")

    pattern: str
    reason: str | None = None
    ignore_case: bool = True

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value


def _coerce_patterns(value: Any) -> Any:
    """Plain strings are shorthand for ``{pattern: ...}``."""
    if isinstance(value, list):
        return [{"pattern": v} if isinstance(v, str) else v for v in value]
    return value


class ValidationRules(BaseModel):
    """Limits for one direction."""

    model_config = ConfigDict(extra="forbid")

    max_chars: int | None = Field(default=None, ge=1)
    banned_patterns: list[BannedPattern] = Field(default_factory=list)

    @field_validator("banned_patterns", mode="before")
    @classmethod
    def _strings_are_patterns(cls, value: Any) -> Any:
        return _coerce_patterns(value)


class ValidationConfig(ValidationRules):
    """Options of the ``validation`` middleware."""

    #: Accepted (and ignored) so a whole YAML block validates.
    type: str | None = None
    #: Directions the top-level rules apply to.
    directions: list[Direction] = Field(default_factory=lambda: list(BOTH_DIRECTIONS))
    outgoing: ValidationRules | None = None
    incoming: ValidationRules | None = None


class _Compiled:
    __slots__ = ("max_chars", "patterns")

    def __init__(self, max_chars: int | None, patterns: list[tuple[re.Pattern[str], str]]):
        self.max_chars = max_chars
        self.patterns = patterns


def _compile(rules: list[BannedPattern], start: int) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for i, rule in enumerate(rules, start=start):
        flags = re.IGNORECASE if rule.ignore_case else 0
        out.append((re.compile(rule.pattern, flags), rule.reason or f"banned pattern #{i}"))
    return out


class ValidationMiddleware(ISessionMiddleware):
    """Rejects a message longer than ``max_chars`` or matching a banned pattern.

    Code-first: ``ValidationMiddleware(max_chars=4000, banned_patterns=[r"\\bDROP TABLE\\b"])``.
    With no options it accepts everything.
    """

    name = "validation"
    filters_deltas = False

    def __init__(self, config: ValidationConfig | None = None, **options: Any) -> None:
        self.config = build_config(ValidationConfig, config, options, self.name)
        self._rules: dict[str, _Compiled] = {}
        cfg = self.config
        for direction in BOTH_DIRECTIONS:
            own: ValidationRules | None = getattr(cfg, direction)
            applies = direction in cfg.directions
            max_chars = cfg.max_chars if applies else None
            patterns = _compile(cfg.banned_patterns, 1) if applies else []
            if own is not None:
                if own.max_chars is not None:
                    max_chars = own.max_chars
                patterns += _compile(own.banned_patterns, len(patterns) + 1)
            self._rules[direction] = _Compiled(max_chars, patterns)

    def check(self, text: str, direction: Direction) -> None:
        """Raise ``MessageRejected`` if ``text`` breaks a rule for ``direction``."""
        rules = self._rules[direction]
        if rules.max_chars is not None and len(text) > rules.max_chars:
            raise MessageRejected(
                f"{direction} message has {len(text)} characters, over the limit of"
                f" {rules.max_chars}",
                middleware=self.name,
            )
        for pattern, reason in rules.patterns:
            if pattern.search(text):
                raise MessageRejected(f"{direction} message rejected: {reason}",
                                      middleware=self.name)

    def process_outgoing_message(self, session: Any, message: Message) -> Message:
        self.check(message.content, "outgoing")
        return message

    def process_incoming_message(self, session: Any, message: Message) -> Message:
        self.check(message.content, "incoming")
        return message


@hookimpl
def register_middlewares(register: Any) -> None:
    register("validation", ValidationMiddleware, ValidationConfig)
