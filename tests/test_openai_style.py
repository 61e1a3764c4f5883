"""The shared OpenAI-style translator: our messages to Chat Completions, Cohere v2 and
Mistral shapes, and tool calls read back, whole and streamed. The shapes are checked
against the installed SDKs' own request types where an SDK validates them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from langswarm_runtime.errors import InvalidMessage, ProviderBadResponse
from langswarm_runtime.providers._openai_style import (
    CHAT_COMPLETIONS,
    COHERE,
    MISTRAL,
    ToolCallStream,
    data_url,
    parse_arguments,
    response_format_param,
    to_messages,
    tool_calls_from,
    tools_param,
)
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.tools.spec import ToolSpec

PNG = b"\x89PNG fake bytes"
PDF = b"%PDF-1.4 fake"


def _tool_turn() -> list[Message]:
    """A user question, two parallel calls, their results in two tool messages given in
    the opposite order, then the answer."""
    return [
        Message(role="user", content="weather?"),
        Message(
            role="assistant",
            parts=[
                ToolCall(id="a1", name="weather", arguments={"city": "Paris"}),
                ToolCall(id="b2", name="weather", arguments={"city": "Rome"}),
            ],
        ),
        Message(role="tool", parts=[ToolResult(call_id="b2", content="rain", name="weather")]),
        Message(role="tool", parts=[ToolResult(call_id="a1", content="sun", name="weather")]),
        Message(role="assistant", content="sun and rain"),
    ]


def test_tool_turn_in_chat_completions_shape() -> None:
    wire = to_messages(_tool_turn())
    assert wire == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "a1", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
                {"id": "b2", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        # in call order, whatever the order of the tool messages
        {"role": "tool", "tool_call_id": "a1", "content": "sun"},
        {"role": "tool", "tool_call_id": "b2", "content": "rain"},
        {"role": "assistant", "content": "sun and rain"},
    ]  # fmt: skip


def test_the_shapes_validate_as_the_sdks_request_types() -> None:
    from pydantic import TypeAdapter

    image = ImagePart.from_bytes(PNG, "image/png")
    turn = [Message(role="user", parts=[TextPart(text="see"), image]), *_tool_turn()]
    from cohere.types import ChatMessageV2

    for m in to_messages(turn, COHERE):
        TypeAdapter(ChatMessageV2).validate_python(m)
    from mistralai.client.models import (
        AssistantMessage,
        SystemMessage,
        ToolMessage,
        UserMessage,
    )

    kinds: dict[str, Any] = {"user": UserMessage, "assistant": AssistantMessage,
                             "tool": ToolMessage, "system": SystemMessage}  # fmt: skip
    doc = FilePart.from_bytes(PDF, "application/pdf", name="a.pdf")
    for m in to_messages([*turn, Message(role="user", parts=[TextPart(text="x"), doc])], MISTRAL):
        parsed = kinds[m["role"]].model_validate(m)
        if m["role"] == "user" and isinstance(m["content"], list):
            assert all(not getattr(c, "is_unknown", False) for c in parsed.content)


def test_mistral_names_the_tool_in_results() -> None:
    tool = [m for m in to_messages(_tool_turn(), MISTRAL) if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["name"]) for m in tool] == [("a1", "weather"), ("b2", "weather")]
    assert all("name" not in m for m in to_messages(_tool_turn(), COHERE) if m["role"] == "tool")


def test_results_of_unknown_calls_keep_their_order_after_known_ones() -> None:
    turn = [
        Message(role="assistant", parts=[ToolCall(id="k", name="t")]),
        Message(role="tool", parts=[ToolResult(call_id="x", content="1"),
                                    ToolResult(call_id="k", content="2"),
                                    ToolResult(call_id="y", content="3")]),
    ]  # fmt: skip
    assert [m["tool_call_id"] for m in to_messages(turn)[1:]] == ["k", "x", "y"]


def test_text_with_tool_calls_and_summary_and_system() -> None:
    asking = [TextPart(text="let me see"), ToolCall(id="c", name="t", arguments={})]
    wire = to_messages(
        [
            Message(role="summary", content="we met"),
            Message(role="system", content="be nice"),
            Message(role="assistant", parts=asking),
        ]
    )
    assert wire[0]["role"] == "system" and wire[0]["content"].endswith("we met")
    assert wire[1] == {"role": "system", "content": "be nice"}
    assert wire[2]["content"] == "let me see"
    assert wire[2]["tool_calls"][0]["function"] == {"name": "t", "arguments": "{}"}


@pytest.mark.parametrize(
    ("style", "image", "doc"),
    [
        (CHAT_COMPLETIONS,
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,"}},
         {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,"}}),
        (COHERE,
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,"}},
         {"type": "text", "text": "[file a.pdf (application/pdf, 13 bytes, not sent)]"}),
        (MISTRAL,
         {"type": "image_url", "image_url": "data:image/png;base64,"},
         {"type": "document_url", "document_url": "data:application/pdf;base64,",
          "document_name": "a.pdf"}),
    ],
    ids=["chat_completions", "cohere", "mistral"],
)  # fmt: skip
def test_media_parts(style: Any, image: dict[str, Any], doc: dict[str, Any]) -> None:
    b64_png = base64.b64encode(PNG).decode()
    b64_pdf = base64.b64encode(PDF).decode()
    message = Message(
        role="user",
        parts=[
            TextPart(text="look"),
            ImagePart.from_bytes(PNG, "image/png"),
            FilePart.from_bytes(PDF, "application/pdf", name="a.pdf"),
        ],
    )
    [wire] = to_messages([message], style)
    text, got_image, got_doc = wire["content"]
    assert text == {"type": "text", "text": "look"}
    assert json.dumps(got_image) == json.dumps(image).replace("base64,", "base64," + b64_png)
    assert json.dumps(got_doc) == json.dumps(doc).replace("base64,", "base64," + b64_pdf)


def test_text_file_goes_as_text_where_documents_are_not_taken() -> None:
    note = FilePart.from_bytes(b"line one", "text/plain", name="n.txt")
    [wire] = to_messages([Message(role="user", parts=[TextPart(text="read"), note])], COHERE)
    assert wire["content"][1] == {"type": "text", "text": "[file n.txt]\nline one"}


def test_media_by_url_and_without_source() -> None:
    assert data_url(ImagePart.from_url("https://x.test/cat.png")) == "https://x.test/cat.png"
    bare = ImagePart.from_bytes(PNG, "image/png").without_data()
    with pytest.raises(InvalidMessage, match="neither bytes nor a URL"):
        data_url(bare)


def test_reasoning_replayed_only_where_the_api_has_it() -> None:
    message = Message(
        role="assistant",
        parts=[
            ReasoningPart(text="plan: call t", provider="cohere", data={"kind": "tool_plan"}),
            ReasoningPart(text="hmm", provider="x", data={"signature": "s1"}),
            TextPart(text="ok"),
            ToolCall(id="c", name="t"),
        ],
    )
    [cc] = to_messages([message])
    assert cc["content"] == "ok" and "tool_plan" not in cc
    [co] = to_messages([message], COHERE)
    assert co["tool_plan"] == "plan: call t"
    assert co["content"] == [{"type": "thinking", "thinking": "hmm"},
                             {"type": "text", "text": "ok"}]  # fmt: skip
    [mi] = to_messages([message], MISTRAL)
    assert mi["content"][-1] == {"type": "text", "text": "ok"}
    assert {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}],
            "signature": "s1"} in mi["content"]  # fmt: skip


def test_tools_and_response_format() -> None:
    spec = ToolSpec(name="t", description="does t", parameters={"type": "object"})
    assert tools_param([spec, ToolSpec(name="u")]) == [
        {"type": "function", "function": {"name": "t", "description": "does t",
                                          "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "u",
                                          "parameters": {"type": "object", "properties": {}}}},
    ]  # fmt: skip
    fmt = {"name": "Invoice", "schema": {"type": "object"}, "strict": True}
    assert response_format_param(fmt, MISTRAL) == {
        "type": "json_schema",
        "json_schema": {"name": "Invoice", "schema": {"type": "object"}, "strict": True},
    }
    assert response_format_param(fmt, COHERE) == {
        "type": "json_object",
        "json_schema": {"type": "object"},
    }


def test_tool_calls_read_back_from_objects_and_dicts() -> None:
    class Fn:
        name = "weather"
        arguments = '{"city": "Oslo"}'

    class Call:
        id = "x1"
        function = Fn()

    calls = tool_calls_from(
        [Call(), {"id": "x2", "function": {"name": "w", "arguments": {"a": 1}}},
         {"function": {"name": "w", "arguments": "not json"}}]
    )  # fmt: skip
    assert calls[0] == ToolCall(id="x1", name="weather", arguments={"city": "Oslo"})
    assert calls[1] == ToolCall(id="x2", name="w", arguments={"a": 1})
    assert calls[2].arguments == {"raw": "not json"} and calls[2].id
    with pytest.raises(ProviderBadResponse, match="mistral: a tool call without"):
        tool_calls_from([{"id": "x", "function": {}}], provider="mistral")


def test_parse_arguments() -> None:
    assert parse_arguments(None) == {} == parse_arguments("")
    assert parse_arguments("[1]") == {"raw": "[1]"}


def test_streamed_calls_assembled_by_index() -> None:
    stream = ToolCallStream()
    assert not stream
    stream.add(0, id="a", name="weather", arguments="")
    stream.add(1, id="b", name="lookup", arguments='{"k"')
    stream.add(0, arguments='{"city":')
    stream.add(0, arguments=' "Paris"}')
    stream.add(1, arguments=": 1}")
    assert stream.calls() == [
        ToolCall(id="a", name="weather", arguments={"city": "Paris"}),
        ToolCall(id="b", name="lookup", arguments={"k": 1}),
    ]


def test_streamed_whole_calls_sharing_index_zero() -> None:
    # Mistral sends whole calls, each with index 0 and its own id.
    stream = ToolCallStream()
    stream.add(0, id="aaaaaaaaa", name="w", arguments={"city": "Rome"})
    stream.add(0, id="bbbbbbbbb", name="w", arguments={"city": "Oslo"})
    assert [(c.id, c.arguments) for c in stream.calls()] == [
        ("aaaaaaaaa", {"city": "Rome"}),
        ("bbbbbbbbb", {"city": "Oslo"}),
    ]


def test_stored_messages_with_parts_are_translated_once_and_never_stale() -> None:
    """A tool loop sends the same history on every call: the wire form of a stored
    message with parts is made once and reused, for that message object only."""
    call = ToolCall(id="call_1", name="step", arguments={"n": 1})
    history = [
        Message(role="user", content="go", seq=1),
        Message(role="assistant", content="", parts=[call], seq=2),
        Message(role="tool", parts=[ToolResult(call_id="call_1", content="ok")], seq=3),
    ]
    first = to_messages(history, MISTRAL)
    again = to_messages(history, MISTRAL)
    assert first == again
    assert again[1] is first[1]  # the same wire dict: translated once
    # Another message object (a changed copy under the same seq) is translated afresh.
    changed = history[1].model_copy(
        update={"parts": [ToolCall(id="call_1", name="step", arguments={"n": 2})]}
    )
    fresh = to_messages([history[0], changed, history[2]], MISTRAL)
    assert json.loads(fresh[1]["tool_calls"][0]["function"]["arguments"]) == {"n": 2}
    # Unstored messages (no seq: the running turn's steps) are never kept.
    step = Message(role="assistant", content="", parts=[call])
    assert to_messages([step], MISTRAL)[0] is not to_messages([step], MISTRAL)[0]
