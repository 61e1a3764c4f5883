"""The storages' side of media: bytes out of messages into a content-addressed store.

Every storage keeps the bytes of image and file parts once, under their sha256, and the
message rows only reference them. These helpers are what they share: pulling the bytes
out of a batch of messages before a write, and the JSON form of parts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import TypeAdapter

from langswarm_runtime.errors import LangSwarmError
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import FilePart, ImagePart, Part

__all__ = ["blob_refs", "dump_parts", "load_parts", "split_media", "with_bytes"]

_PARTS: TypeAdapter[list[Part]] = TypeAdapter(list[Part])


def split_media(messages: Sequence[Message]) -> tuple[list[Message], dict[str, bytes]]:
    """The messages with the bytes of their media parts dropped (sha256 and size kept),
    and those bytes by sha256. Messages without inline bytes are returned as they are."""
    blobs: dict[str, bytes] = {}
    out: list[Message] = []
    for message in messages:
        if not any(isinstance(p, (ImagePart, FilePart)) and p.data is not None
                   for p in message.parts):  # fmt: skip
            out.append(message)
            continue
        parts: list[Any] = []
        for part in message.parts:
            if isinstance(part, (ImagePart, FilePart)) and part.data is not None:
                assert part.sha256 is not None
                blobs[part.sha256] = part.data
                part = part.without_data()
            parts.append(part)
        out.append(message.model_copy(update={"parts": parts}))
    return out, blobs


def blob_refs(messages: Sequence[Message]) -> set[str]:
    """The sha256 of every stored media part the messages reference."""
    return {
        p.sha256
        for m in messages
        for p in m.parts
        if isinstance(p, (ImagePart, FilePart)) and p.sha256 is not None
    }


def dump_parts(parts: Sequence[Any]) -> str | None:
    """JSON text of a message's parts, or None for a text-only message (no parts)."""
    if not parts:
        return None
    return _PARTS.dump_json(list(parts), exclude_none=True).decode()


def load_parts(text: str | bytes | None) -> list[Any]:
    """Parts from ``dump_parts`` output (None: no parts)."""
    if not text:
        return []
    return _PARTS.validate_json(text)


async def with_bytes(
    messages: Sequence[Message],
    load_blob: Callable[[str], Awaitable[bytes | None]],
    *,
    urls_too: bool,
    strict: bool,
) -> list[Message]:
    """The messages with the bytes of their stored media parts loaded (the reverse of
    ``split_media``). ``urls_too``: also parts that have a URL (a request sends those by
    URL; an export keeps everything). ``strict``: a blob missing from the store is a
    ``LangSwarmError``; else the part is kept without its bytes."""
    out: list[Message] = []
    for message in messages:
        wanted = [p for p in message.parts
                  if isinstance(p, (ImagePart, FilePart)) and p.data is None and p.sha256
                  and (urls_too or p.url is None)]  # fmt: skip
        if not wanted:
            out.append(message)
            continue
        parts: list[Any] = []
        for part in message.parts:
            if part in wanted:
                assert part.sha256 is not None  # wanted ones have one
                data = await load_blob(part.sha256)
                if data is not None:
                    part = part.model_copy(update={"data": data})
                elif strict:
                    raise LangSwarmError(
                        f"the {part.type} {part.sha256} of message {message.seq} is "
                        "missing from the blob store"
                    )
            parts.append(part)
        out.append(message.model_copy(update={"parts": parts}))
    return out
