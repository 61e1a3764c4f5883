"""Which text a session may store: exactly what every storage gives back byte-identical.

Two kinds of character break that promise, and nothing else does (control characters,
noncharacters, BOMs, line separators and every other code point round-trip through
SQLite, PostgreSQL and Redis unchanged; tests/reliability/test_text_roundtrip.py checks
it over arbitrary Unicode):

- NUL (U+0000): PostgreSQL cannot hold it in ``text`` or ``jsonb``.
- Lone surrogates (U+D800..U+DFFF): not Unicode text at all; they cannot be encoded as
  UTF-8, so SQLite and PostgreSQL drivers fail on them and Redis stores JSON that no
  longer parses.

The session checks at the door (``Session`` for messages, ``SessionManager`` for ids,
prompts and metadata), and every storage's write path checks again, cheaply, as a last
line of defence. Checks run at C speed: ``in`` for NUL, ``str.isascii`` (constant time)
and, only for non-ASCII text, one strict UTF-8 encode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langswarm_runtime.errors import InvalidText

__all__ = [
    "check_message",
    "check_messages",
    "check_record",
    "check_text",
    "check_tree",
    "check_turn",
    "is_storable",
    "utf8_size",
]


def _problem(text: str, field: str) -> InvalidText | None:
    nul = text.find("\x00")
    bad = -1
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.start
    if nul < 0 and bad < 0:
        return None
    index = nul if bad < 0 or 0 <= nul < bad else bad
    return InvalidText(field, index, text[index])


def is_storable(text: str) -> bool:
    """True when ``text`` holds no NUL and no lone surrogate."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: str, field: str = "text") -> str:
    """``text`` itself, or ``InvalidText`` naming ``field``, the character and its index."""
    if "\x00" in text or not text.isascii():
        problem = _problem(text, field)
        if problem is not None:
            raise problem
    return text


def utf8_size(text: str, field: str = "message") -> int:
    """The UTF-8 size of ``text`` in bytes, checking it on the way (one encode at most):
    ``InvalidText`` as :func:`check_text`."""
    if "\x00" not in text:
        if text.isascii():
            return len(text)
        try:
            return len(text.encode("utf-8"))
        except UnicodeEncodeError:
            pass
    problem = _problem(text, field)
    assert problem is not None
    raise problem


def _key(path: str, key: object) -> str:
    return f"{path}[{key!r}]"


def check_tree(value: Any, field: str) -> None:
    """Check every string in a JSON-like value (dict keys and values, list items, at any
    depth). Iterative, so a deeply nested value cannot overflow the stack."""
    stack: list[tuple[Any, str]] = [(value, field)]
    pop, push = stack.pop, stack.append
    while stack:
        item, path = pop()
        if isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, Mapping):
            for k, v in item.items():
                if isinstance(k, str) and ("\x00" in k or not k.isascii()):
                    # A broken key is named by its escaped form, not by a path through it.
                    check_text(k, f"{path} key {k!r}")
                if isinstance(v, str):
                    check_text(v, _key(path, k))
                elif isinstance(v, (Mapping, list, tuple)):
                    push((v, _key(path, k)))
        elif isinstance(item, (list, tuple)):
            for i, v in enumerate(item):
                if isinstance(v, str):
                    check_text(v, f"{path}[{i}]")
                elif isinstance(v, (Mapping, list, tuple)):
                    push((v, f"{path}[{i}]"))


def check_message(message: Any, field: str = "message") -> None:
    """A message's storable text: content, provider message id, metadata."""
    check_text(message.content, field)
    pmid = message.provider_message_id
    if pmid is not None:
        check_text(pmid, f"{field}.provider_message_id")
    if message.metadata:
        check_tree(message.metadata, f"{field}.metadata")
    parts = getattr(message, "parts", None)
    if parts:
        # Every string of every part (bytes excluded: they are stored as they are).
        check_tree(
            [p.model_dump(mode="python", exclude={"data"}) for p in parts], f"{field}.parts"
        )


def check_messages(messages: Sequence[Any]) -> None:
    """:func:`check_message` for each message (``message``, or ``messages[i]`` when
    there are several)."""
    if len(messages) == 1:
        check_message(messages[0])
        return
    for i, m in enumerate(messages):
        check_message(m, f"messages[{i}]")


def check_turn(messages: Sequence[Any], provider_state: Any = None) -> None:
    """A message write (``append_messages``, ``commit_turn``): its messages and the
    provider state that rides along."""
    check_messages(messages)
    if provider_state:
        check_tree(provider_state, "provider_state")


def check_record(record: Any) -> None:
    """A session record's storable text: ids, names, prompt, metadata, provider state and
    middleware options."""
    check_text(record.session_id, "session_id")
    check_text(record.user_id, "user_id")
    check_text(record.provider, "provider")
    if record.model is not None:
        check_text(record.model, "model")
    if record.system_prompt is not None:
        check_text(record.system_prompt, "system_prompt")
    if record.metadata:
        check_tree(record.metadata, "metadata")
    if record.provider_state:
        check_tree(record.provider_state, "provider_state")
    if record.middleware:
        check_tree(record.middleware, "middleware")
    tools = getattr(record, "tools", None)
    if tools:
        check_tree(tools, "tools")
