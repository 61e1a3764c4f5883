"""An example langswarm-runtime middleware plugin: block or tag messages by keyword.

The whole plugin is this module: a pydantic config model, a middleware class, and one
``register_middlewares`` hook implementation. ``pyproject.toml`` points the
``langswarm_runtime`` entry-point group at this module, and swarm.yaml can then say::

    middleware:
      - type: keywords
        block: [password dump, rm -rf]
        tag: {refund: billing, invoice: billing, outage: incident}
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from langswarm_runtime.errors import ConfigError, MessageRejected
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.session.middleware import ISessionMiddleware
from langswarm_runtime.session.models import Message

__all__ = ["KeywordConfig", "KeywordMiddleware", "register_middlewares"]

Direction = Literal["outgoing", "incoming"]
_BOTH: tuple[Direction, ...] = ("outgoing", "incoming")


class KeywordConfig(BaseModel):
    """Options of the ``keywords`` middleware. ``extra="forbid"``: a typo in swarm.yaml is
    an error naming the key, not a silently ignored option."""

    model_config = ConfigDict(extra="forbid")

    #: The block's ``type`` key; accepted so the whole YAML block validates.
    type: str | None = None
    #: A message containing any of these words or phrases is rejected.
    block: list[str] = Field(default_factory=list)
    #: ``{word: tag}``: a message containing the word gets the tag in
    #: ``message.metadata["tags"]`` (stored with the message).
    tag: dict[str, str] = Field(default_factory=dict)
    #: Which messages to check: ``outgoing`` (user -> provider), ``incoming`` (replies).
    directions: list[Direction] = Field(default_factory=lambda: list(_BOTH))

    @field_validator("block")
    @classmethod
    def _no_blank_words(cls, value: list[str]) -> list[str]:
        if any(not w.strip() for w in value):
            raise ValueError("keywords must not be empty")
        return value


def _whole_words(words: list[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any of ``words`` as whole words: ``cat``
    matches "Cat!" but not "category". Phrases match across any run of whitespace."""
    if not words:
        return None
    parts = [r"\s+".join(re.escape(p) for p in w.split()) for w in words]
    # Longest first, so "credit card" wins over "card".
    parts.sort(key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


class KeywordMiddleware(ISessionMiddleware):
    """Blocks messages containing a listed word, and tags messages by word.

    Code-first: ``session.add_middleware(KeywordMiddleware(block=["secret project"]))``.
    """

    name = "keywords"

    def __init__(self, config: KeywordConfig | None = None, **options: Any) -> None:
        if config is None:
            try:
                config = KeywordConfig(**options)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ConfigError(err["msg"], key_path=f"keywords.{where}") from None
        self.config = config
        # Compiled once here, not per message.
        self._block = _whole_words(config.block)
        self._tags = [(_whole_words([w]), t) for w, t in config.tag.items()]

    def check(self, message: Message, direction: Direction) -> Message:
        """Reject or tag ``message``; returns it (a tagged copy when tags apply)."""
        if direction not in self.config.directions:
            return message
        text = message.content
        if self._block is not None:
            hit = self._block.search(text)
            if hit:
                # The configured keyword is the operator's own word, so naming it is safe
                # and tells the user what to change.
                word = " ".join(hit.group(0).lower().split())
                raise MessageRejected(
                    f"{direction} message contains the blocked keyword {word!r}",
                    middleware=self.name,
                )
        found = [t for pattern, t in self._tags if pattern is not None and pattern.search(text)]
        if not found:
            return message
        metadata = dict(message.metadata)
        metadata["tags"] = sorted({*metadata.get("tags", []), *found})
        return message.model_copy(update={"metadata": metadata})

    def process_outgoing_message(self, session: Any, message: Message) -> Message:
        return self.check(message, "outgoing")

    def process_incoming_message(self, session: Any, message: Message) -> Message:
        return self.check(message, "incoming")


@hookimpl
def register_middlewares(register: Any) -> None:
    """Make ``type: keywords`` available in swarm.yaml."""
    register("keywords", KeywordMiddleware, KeywordConfig)
