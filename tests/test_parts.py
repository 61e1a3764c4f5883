"""Content parts: JSON round-trip, media sources and digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    Part,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
    text_of,
)

PARTS = TypeAdapter(list[Part])


def test_every_part_round_trips_through_json() -> None:
    parts = [
        TextPart(text="look: "),
        ImagePart.from_bytes(b"\x89PNG\r\n\x1a\n\x00", "image/png"),
        FilePart.from_bytes(b"%PDF-1.7", "application/pdf", name="a.pdf"),
        ToolCall(id="call_1", name="weather", arguments={"city": "Paris", "days": [1, 2]}),
        ToolResult(call_id="call_1", content="sunny", name="weather"),
        ReasoningPart(text="thinking", provider="anthropic", model="m", data={"sig": "x"}),
        TextPart(text="done"),
    ]
    assert PARTS.validate_json(PARTS.dump_json(parts)) == parts
    assert PARTS.validate_python(PARTS.dump_python(parts, mode="json")) == parts


def test_inline_bytes_carry_their_digest_and_size() -> None:
    data = bytes(range(256)) * 4
    image = ImagePart.from_bytes(data, "image/webp")
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.size == len(data)
    stored = image.without_data()
    assert stored.data is None and stored.sha256 == image.sha256 and stored.size == 1024


def test_a_media_part_needs_a_source_and_a_true_digest() -> None:
    with pytest.raises(ValidationError, match="needs data, url or sha256"):
        ImagePart(media_type="image/png")
    with pytest.raises(ValidationError, match="sha256 does not match"):
        ImagePart(media_type="image/png", data=b"x", sha256="0" * 64)


def test_from_path_and_from_url_guess_the_media_type(tmp_path: Path) -> None:
    png = tmp_path / "cat.png"
    png.write_bytes(b"\x89PNG")
    assert ImagePart.from_path(png).media_type == "image/png"
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF")
    part = FilePart.from_path(pdf)
    assert (part.media_type, part.name, part.data) == ("application/pdf", "report.pdf", b"%PDF")
    assert ImagePart.from_url("https://example.test/a.jpg").media_type == "image/jpeg"


def test_text_of_joins_text_parts_only() -> None:
    parts = [TextPart(text="a"), ToolCall(id="1", name="t"), TextPart(text="b")]
    assert text_of(parts) == "ab"


def test_parts_and_specs_take_their_fields_by_position() -> None:
    from langswarm_runtime import ReasoningPart, TextPart, ToolCall, ToolResult, ToolSpec

    assert ToolCall("c1", "f", {"a": 1}) == ToolCall(id="c1", name="f", arguments={"a": 1})
    assert ToolResult("c1", "42") == ToolResult(call_id="c1", content="42")
    assert ToolResult("c1", "no", True).is_error
    assert ReasoningPart("t", "anthropic", "m", {"s": 1}).data == {"s": 1}
    assert TextPart("hi").text == "hi"
    spec = ToolSpec("lookup", "Look a key up.", {"type": "object"})
    assert (spec.name, spec.description) == ("lookup", "Look a key up.")
    with pytest.raises(TypeError, match="at most 3 positional"):
        ToolCall("c1", "f", {}, "extra")
    with pytest.raises(TypeError, match="twice"):
        ToolResult("c1", call_id="c2", content="x")
