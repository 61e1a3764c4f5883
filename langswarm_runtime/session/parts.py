"""Content parts: what a message is made of beyond plain text (DESIGN.md section 8).

A message is a role and a list of parts; ``Message.content`` is its text. Every part has a
``type`` tag, so a list of parts round-trips through JSON (storage, export) as it is:

- ``TextPart``: text.
- ``ImagePart`` / ``FilePart``: a media type and the bytes, a URL, or the sha256 of a blob
  in the storage's content-addressed blob store (bytes are stored once per storage).
- ``ToolCall``: the model asks for a tool to be run; ``ToolResult``: what it returned.
- ``ReasoningPart``: the model's reasoning; ``data`` is the provider's opaque payload
  (a signature, encrypted content), replayed only to the provider and model family that
  made it.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_MAX_MEDIA_BYTES",
    "FilePart",
    "ImagePart",
    "Part",
    "ReasoningPart",
    "TextPart",
    "ToolCall",
    "ToolResult",
    "text_of",
]

#: Default size limit of one image or file (20 MiB).
DEFAULT_MAX_MEDIA_BYTES = 20 * 1024 * 1024


class _PartBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Fields that may also be given by position, in this order.
    _positional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: Any, **data: Any) -> None:
        if args:
            names = self._positional
            if len(args) > len(names):
                raise TypeError(
                    f"{type(self).__name__} takes at most {len(names)} positional arguments "
                    f"({', '.join(names)})"
                )
            for name, value in zip(names, args, strict=False):
                if name in data:
                    raise TypeError(f"{type(self).__name__} got {name!r} twice")
                data[name] = value
        super().__init__(**data)


class TextPart(_PartBase):
    """Plain text."""

    type: Literal["text"] = "text"
    text: str
    _positional = ("text",)


class _MediaPart(_PartBase):
    """Bytes with a media type, given inline (``data``), by ``url``, or by the ``sha256``
    of a stored blob. Exactly one source is needed; inline bytes also carry their sha256,
    so the storage can keep them once and the part can drop them."""

    media_type: str
    data: bytes | None = None
    url: str | None = None
    sha256: str | None = None
    #: Size in bytes, when known (always for inline data and stored blobs).
    size: int | None = None

    @field_validator("data", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        # JSON carries bytes as base64 text (see _encode).
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
        return value

    @field_serializer("data", when_used="json")
    def _encode(self, value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode("ascii")

    @model_validator(mode="after")
    def _check_source(self) -> Self:
        if self.data is None and self.url is None and self.sha256 is None:
            raise ValueError(f"{type(self).__name__} needs data, url or sha256")
        if self.data is not None:
            digest = hashlib.sha256(self.data).hexdigest()
            if self.sha256 is not None and self.sha256 != digest:
                raise ValueError(f"{type(self).__name__}: sha256 does not match the data")
            # Frozen model: fill the derived fields through the object's dict.
            object.__setattr__(self, "sha256", digest)
            object.__setattr__(self, "size", len(self.data))
        return self

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str, **extra: Any) -> Self:
        """A part holding ``data`` inline."""
        return cls(media_type=media_type, data=bytes(data), **extra)

    @classmethod
    def from_url(cls, url: str, media_type: str | None = None, **extra: Any) -> Self:
        """A part the provider fetches itself (where its API takes URLs)."""
        guessed = media_type or mimetypes.guess_type(url)[0] or _DEFAULT_TYPE[cls.__name__]
        return cls(media_type=guessed, url=url, **extra)

    def without_data(self) -> Self:
        """The same part referring to its blob by sha256 (what storage keeps in a row)."""
        if self.data is None:
            return self
        return self.model_copy(update={"data": None})


class ImagePart(_MediaPart):
    """An image (``image/png``, ``image/jpeg``, ``image/webp``, ``image/gif``).
    ``width`` and ``height`` (pixels) are read from inline bytes when their header says
    (they size the image's share of the context window)."""

    type: Literal["image"] = "image"
    width: int | None = None
    height: int | None = None

    @model_validator(mode="after")
    def _dimensions(self) -> Self:
        if self.data is not None and self.width is None:
            found = image_size(self.data)
            if found is not None:
                object.__setattr__(self, "width", found[0])
                object.__setattr__(self, "height", found[1])
        return self

    @classmethod
    def from_path(cls, path: str | Path, media_type: str | None = None) -> ImagePart:
        """Read an image file; its media type comes from the file name unless given."""
        p = Path(path)
        kind = media_type or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        return cls(media_type=kind, data=p.read_bytes())


class FilePart(_MediaPart):
    """A document (PDF, plain text, ...) with an optional file name."""

    type: Literal["file"] = "file"
    name: str | None = None

    @classmethod
    def from_path(cls, path: str | Path, media_type: str | None = None) -> FilePart:
        """Read a file; its media type comes from the file name unless given."""
        p = Path(path)
        kind = media_type or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        return cls(media_type=kind, data=p.read_bytes(), name=p.name)


_DEFAULT_TYPE = {"ImagePart": "image/png", "FilePart": "application/octet-stream"}


class ToolCall(_PartBase):
    """The model asks for tool ``name`` to be run with ``arguments``."""

    _positional = ("id", "name", "arguments")
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResult(_PartBase):
    """What tool call ``call_id`` returned (``is_error``: it failed; the text says why)."""

    _positional = ("call_id", "content", "is_error")
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    content: str
    is_error: bool = False
    #: The tool's name, filled in by the runtime (some APIs want it with the result).
    name: str | None = None


class ReasoningPart(_PartBase):
    """The model's reasoning. ``data`` is the provider's opaque payload, sent back only to
    the provider (and model family) that produced it."""

    _positional = ("text", "provider", "model", "data")
    type: Literal["reasoning"] = "reasoning"
    text: str = ""
    provider: str | None = None
    model: str | None = None
    data: dict[str, Any] | None = None


#: Any content part; ``type`` tells which.
Part = Annotated[
    TextPart | ImagePart | FilePart | ToolCall | ToolResult | ReasoningPart,
    Field(discriminator="type"),
]


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, GIF, JPEG or WebP header, or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return (int.from_bytes(data[24:27], "little") + 1,
                    int.from_bytes(data[27:30], "little") + 1)  # fmt: skip
        if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            return (int.from_bytes(data[26:28], "little") & 0x3FFF,
                    int.from_bytes(data[28:30], "little") & 0x3FFF)  # fmt: skip
        if kind == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return (int.from_bytes(data[i + 7 : i + 9], "big"),
                        int.from_bytes(data[i + 5 : i + 7], "big"))  # fmt: skip
            i += 2 + length
    return None


def text_of(parts: Iterable[BaseModel]) -> str:
    """The text of a list of parts: its text parts joined."""
    return "".join(p.text for p in parts if isinstance(p, TextPart))
