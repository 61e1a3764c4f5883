"""Our messages (with their parts) to and from the Gemini API's shapes: the ``contents``
of generateContent (hybrid) and the ``input`` steps of the Interactions API (native).
Pure functions, no I/O and no SDK import.

generateContent (the ``google-genai`` SDK's ``Content`` / ``Part`` dicts):

- a user content holds ``text``, ``inline_data`` (bytes) and ``file_data`` (a URI) parts;
  a model content ``text`` parts, ``function_call`` parts (``{id?, name, args}``) and
  ``thought`` parts; tool results go back as ``function_response`` parts of one user
  content, in the order of the calls;
- a ``thought_signature`` may come on a thought part, on a function call or on a text
  part, and must go back on the part it came with. A thought becomes a
  ``ReasoningPart`` whose ``data`` holds the signature (base64); a signature that came
  on a call or on text becomes a ``ReasoningPart`` with no text, placed right before
  that part, whose ``data["on"]`` says which kind of part it goes back on;
- function calls may come without an id: they get a stable id of ours
  (``SYNTHETIC_PREFIX``), which never goes on the wire, where calls and their
  responses are then paired by name and order;
- tools are ``function_declarations``; structured output is ``response_mime_type:
  application/json`` with ``response_json_schema``.

Interactions: the conversation is a list of steps: ``user_input`` (text, image and
document contents), ``model_output``, ``thought`` (``signature``, ``summary``),
``function_call`` (``id``, ``name``, ``arguments``) and ``function_result``
(``call_id``, ``name``, ``result``); tools are ``{type: function, name, description,
parameters}``; structured output is ``response_format: {type: text, mime_type:
application/json, schema}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from langswarm_runtime.errors import ProviderBadResponse
from langswarm_runtime.providers._common import SUMMARY_PREFIX
from langswarm_runtime.providers._kept import KeptForms, KeptHistories, KeptTurns
from langswarm_runtime.session.models import Message
from langswarm_runtime.session.parts import (
    FilePart,
    ImagePart,
    Part,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from langswarm_runtime.tools.spec import ToolSpec

__all__ = [
    "PROVIDER",
    "SYNTHETIC_PREFIX",
    "CandidateStream",
    "StepStream",
    "function_declarations",
    "interaction_format",
    "interaction_tools",
    "json_config",
    "parts_from_candidate",
    "parts_from_steps",
    "rest_contents",
    "synthetic_id",
    "to_contents",
    "to_steps",
]

Wire = dict[str, Any]

#: What reasoning parts made here record as their provider.
PROVIDER = "gemini"
#: Ids we give function calls that came without one (never sent back).
SYNTHETIC_PREFIX = "gcall_"
_SIGNATURE = "thought_signature"


# ---------------------------------------------------------------------------- shared


def _notes_and_rest(messages: Iterable[Message]) -> tuple[list[str], list[Message]]:
    notes: list[str] = []
    rest: list[Message] = []
    for message in messages:
        if message.role == "system":
            notes.append(message.content)
        elif message.role == "summary":
            notes.append(SUMMARY_PREFIX + message.content)
        else:
            rest.append(message)
    return notes, rest


def _ordered_results(
    messages: list[Message], earlier: Iterable[Message] = ()
) -> list[tuple[Message, list[ToolResult]]]:
    """The messages with each run of tool messages folded into the first of them, its
    results in the order of the calls of the assistant message before (and each result
    named: the API wants the function's name with it; ``earlier`` messages, not sent,
    may hold the calls)."""
    out: list[tuple[Message, list[ToolResult]]] = []
    names = {c.id: c.name for m in earlier for c in m.tool_calls}
    rank: dict[str, int] = {}
    for message in messages:
        if message.role == "assistant":
            calls = message.tool_calls
            names.update((c.id, c.name) for c in calls)
            rank = {c.id: i for i, c in enumerate(calls)}
        if message.role != "tool":
            out.append((message, []))
            continue
        results = [
            r if r.name else r.model_copy(update={"name": names.get(r.call_id)})
            for r in message.tool_results
        ]
        if out and out[-1][0].role == "tool":
            out[-1][1].extend(results)
        else:
            out.append((message, results))
        out[-1][1].sort(key=lambda r: rank.get(r.call_id, len(rank)))
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _signature(part: ReasoningPart) -> str | None:
    value = (part.data or {}).get(_SIGNATURE)
    return value if isinstance(value, str) and value else None


def _media_source(part: ImagePart | FilePart) -> tuple[bytes | None, str | None]:
    if part.data is None and part.url is None:
        raise ValueError(f"the {part.type} {part.sha256} has neither its bytes nor a URL")
    return part.data, part.url


# ------------------------------------------------------------------ generateContent


#: Translations of recent histories (notes, contents, their REST form), and of their
#: whole turns (see ``_kept``).
_HISTORIES: KeptHistories[tuple[list[str], list[Wire], list[Wire]]] = KeptHistories()
_TURNS: KeptTurns[Wire, tuple[list[str], bool]] = KeptTurns()


def to_contents(
    messages: Iterable[Message],
    *,
    history: Sequence[Message] | None = None,
    rest: bool = False,
) -> tuple[list[str], list[Wire]]:
    """``(system notes, contents)`` for generateContent, oldest first. Stored system
    messages and summaries become notes for ``system_instruction``; consecutive
    contents of one role are merged.

    ``history``: the request's history list, when ``messages`` starts with it. A tool
    loop sends the same list on every call of a turn: when it ends with a finished
    turn (an answer without calls, so nothing after it merges into it or refers back
    to it), its translation is kept (by list object) and only the turn's messages are
    translated on the later calls. The kept contents are shared, never changed.

    ``rest``: the contents in the REST API's own JSON (``rest_contents``); a kept
    history's REST form is kept with it."""
    messages = list(messages)
    n = _HISTORIES.prefix(messages, history)
    if (
        history
        and n
        and history[-1].role == "assistant"
        and not history[-1].tool_calls
        and (n == len(messages) or messages[n].role != "assistant")
    ):
        kept_notes, kept, kept_rest = _HISTORIES.get(history, "gemini", lambda: _kept(history))
        notes, contents = _contents(messages[n:])
        if kept and contents and contents[0]["role"] == kept[-1]["role"]:
            return _whole(messages, rest)  # they would merge: no shortcut
        if rest:
            return [*kept_notes, *notes], [*kept_rest, *rest_contents(contents)]
        return [*kept_notes, *notes], [*kept, *contents]
    return _whole(messages, rest)


def _kept(history: Sequence[Message]) -> tuple[list[str], list[Wire], list[Wire]]:
    notes, contents = _history_contents(history)
    return notes, contents, rest_contents(contents)


def _whole(messages: Iterable[Message], rest: bool) -> tuple[list[str], list[Wire]]:
    notes, contents = _contents(messages)
    return notes, rest_contents(contents) if rest else contents


def _history_contents(history: Sequence[Message]) -> tuple[list[str], list[Wire]]:
    """``_contents(history)``, put together from its whole turns translated one by one
    (kept from the turn before): neighbours of one role across a cut are merged into a
    new content, kept contents are never changed. A turn that reads what came before it
    (results before any call of its own, or a result naming no function whose call is
    in an earlier turn) makes the whole history be translated at once."""
    notes: list[str] = []
    out: list[Wire] = []
    for wire, (piece_notes, alone), _ in _TURNS.pieces(history, "gemini", _turn_piece):
        if not alone:
            return _contents(history)
        notes += piece_notes
        if wire and out and out[-1]["role"] == wire[0]["role"]:
            out[-1] = {**out[-1], "parts": [*out[-1]["parts"], *wire[0]["parts"]]}
            out += wire[1:]
        else:
            out += wire
    return notes, out


def _turn_piece(messages: Sequence[Message]) -> tuple[list[Wire], tuple[list[str], bool]]:
    """One whole turn's contents, its notes, and whether it translates alone as it does
    after the turns before it (``_ordered_results`` carries the calls' ranks and names
    across messages)."""
    notes, contents = _contents(messages)
    calls: set[str] | None = None  # None until the turn's first assistant message
    for message in messages:
        if message.role == "assistant":
            calls = (calls or set()) | {c.id for c in message.tool_calls}
        elif message.role == "tool" and (
            calls is None or any(not r.name and r.call_id not in calls for r in message.tool_results)
        ):
            return contents, (notes, False)
    return contents, (notes, True)


def _contents(messages: Iterable[Message]) -> tuple[list[str], list[Wire]]:
    notes, rest = _notes_and_rest(messages)
    contents: list[Wire] = []
    for message, results in _ordered_results(rest):
        if message.role == "tool":
            role, parts = "user", [_function_response(r) for r in results]
        elif message.role == "assistant":
            role, parts = "model", _model_parts(message)
        else:
            role, parts = "user", _user_parts(message)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return notes, contents


#: The REST names of the part fields ``_contents`` writes, as the SDK's own conversion
#: writes them (the fields inside them go as they are).
_REST_FIELDS = {
    "inline_data": "inlineData",
    "file_data": "fileData",
    "function_call": "functionCall",
    "function_response": "functionResponse",
    _SIGNATURE: "thoughtSignature",
}


class _Sent(dict[str, Any]):
    """A REST content: never changed once made, so a deep copy shares it (the SDK deep-
    copies the config that carries the body on every call)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _Sent:
        return self


#: REST forms of contents, by content object (see ``rest_contents``).
_RESTED: KeptForms[Wire, Wire] = KeptForms()


def rest_contents(contents: Sequence[Wire]) -> list[Wire]:
    """``contents`` (from ``to_contents``) in the REST API's own JSON, as the SDK's
    conversion makes it: part fields in camelCase, bytes as URL-safe base64. Sent as
    they are, they spare the SDK validating every content into its types and converting
    it back on each call (7-8 ms for 50 messages). The kept contents are the same
    objects on every later call and turn, so each one's REST form is kept by object;
    contents holding media bytes are converted each time."""
    return [_RESTED.get(content, _rest_content, _without_media) for content in contents]


def _rest_content(content: Wire) -> Wire:
    return _Sent(
        parts=[{_REST_FIELDS.get(k, k): _rest_value(v) for k, v in p.items()}
               for p in content["parts"]],
        role=content["role"],
    )  # fmt: skip


def _without_media(content: Wire) -> bool:
    return not any("inline_data" in p for p in content["parts"])


def _rest_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.urlsafe_b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _rest_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rest_value(v) for v in value]
    return value


def _user_parts(message: Message) -> list[Wire]:
    if not message.parts:
        return [{"text": message.content}] if message.content else []
    parts: list[Wire] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, (ImagePart, FilePart)):
            data, url = _media_source(part)
            if data is not None:
                parts.append({"inline_data": {"mime_type": part.media_type, "data": data}})
            else:
                parts.append({"file_data": {"file_uri": url, "mime_type": part.media_type}})
    return parts


def _model_parts(message: Message) -> list[Wire]:
    if not message.parts:
        return [{"text": message.content}] if message.content else []
    parts: list[Wire] = []
    pending: tuple[str, str] | None = None  # (kind of part it goes on, signature)

    def flush() -> None:
        nonlocal pending
        if pending is not None and pending[0] == "text":  # it came on an empty text part
            parts.append({"text": "", _SIGNATURE: base64.b64decode(pending[1])})
        pending = None

    for part in message.parts:
        if isinstance(part, ReasoningPart):
            flush()
            signature = _signature(part)
            on = (part.data or {}).get("on")
            if on in ("text", "function_call") and signature:
                pending = (on, signature)
                continue
            wire: Wire = {"text": part.text, "thought": True}
            if signature:
                wire[_SIGNATURE] = base64.b64decode(signature)
            parts.append(wire)
            continue
        if isinstance(part, TextPart):
            wire, kind = {"text": part.text}, "text"
        elif isinstance(part, ToolCall):
            call: Wire = {"name": part.name, "args": part.arguments}
            if not part.id.startswith(SYNTHETIC_PREFIX):
                call["id"] = part.id
            wire, kind = {"function_call": call}, "function_call"
        else:
            continue
        if pending is not None and pending[0] == kind:
            wire[_SIGNATURE] = base64.b64decode(pending[1])
            pending = None
        else:
            flush()
        parts.append(wire)
    flush()
    return parts


def _function_response(result: ToolResult) -> Wire:
    response: Wire = {"name": result.name or "unknown",
                      "response": {"error" if result.is_error else "output": result.content}}  # fmt: skip
    if not result.call_id.startswith(SYNTHETIC_PREFIX):
        response["id"] = result.call_id
    return {"function_response": response}


def function_declarations(tools: Sequence[ToolSpec]) -> list[Wire]:
    """generateContent ``tools``: one tool holding every function declaration."""
    declarations = []
    for spec in tools:
        declaration: Wire = {"name": spec.name, "parameters_json_schema": spec.parameters}
        if spec.description:
            declaration["description"] = spec.description
        declarations.append(declaration)
    return [{"function_declarations": declarations}] if declarations else []


def json_config(response_format: dict[str, Any]) -> Wire:
    """The ``GenerateContentConfig`` fields asking for JSON following the schema."""
    return {
        "response_mime_type": "application/json",
        "response_json_schema": response_format["schema"],
    }


# ------------------------------------------------------------------ reading replies


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _signature_text(value: Any) -> str | None:
    """A signature as we keep it (base64 text): the SDK gives bytes, the wire base64."""
    if isinstance(value, bytes) and value:
        return _b64(value)
    if isinstance(value, str) and value:
        return value
    return None


def synthetic_id(response_id: str | None, index: int, name: str, arguments: Any) -> str:
    """A stable id for a function call that came without one: the same call of the same
    response always gets the same id."""
    if not response_id:
        return SYNTHETIC_PREFIX + uuid.uuid4().hex[:24]
    key = json.dumps([response_id, index, name, arguments], sort_keys=True, default=str)
    return SYNTHETIC_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:24]


def parts_from_candidate(
    raw_parts: Iterable[Any], *, model: str | None, response_id: str | None
) -> tuple[str, list[Part]]:
    """``(text, parts)`` of a candidate's parts (SDK ``Part`` objects or dicts)."""
    parts: list[Part] = []
    calls = 0
    for raw in raw_parts:
        signature = _signature_text(_get(raw, _SIGNATURE))
        text = _get(raw, "text")
        call = _get(raw, "function_call")
        if _get(raw, "thought"):
            data = {_SIGNATURE: signature} if signature else None
            parts.append(ReasoningPart(text=text or "", provider=PROVIDER, model=model, data=data))
            continue
        if call is not None:
            kind = "function_call"
        elif isinstance(text, str):
            kind = "text"
        else:
            continue  # a part of a kind we do not keep (executable code and the like)
        if signature:
            parts.append(ReasoningPart(provider=PROVIDER, model=model,
                                       data={_SIGNATURE: signature, "on": kind}))  # fmt: skip
        if call is not None:
            name = _get(call, "name")
            if not isinstance(name, str) or not name:
                raise ProviderBadResponse("a function call without a name", provider=PROVIDER)
            arguments = _get(call, "args") or {}
            ident = _get(call, "id")
            if not isinstance(ident, str) or not ident:
                ident = synthetic_id(response_id, calls, name, arguments)
            calls += 1
            parts.append(ToolCall(id=ident, name=name, arguments=dict(arguments)))
        elif text:
            parts.append(TextPart(text=text))
    return "".join(p.text for p in parts if isinstance(p, TextPart)), parts


class CandidateStream:
    """A candidate's parts put together from stream chunks: text and thought text come
    in pieces (the signature on the last piece), function calls whole."""

    def __init__(self) -> None:
        self._parts: list[dict[str, Any]] = []

    def add(self, raw: Any) -> str | None:
        """Take one part of a chunk; returns the reply text it adds (None: none)."""
        text = _get(raw, "text")
        signature = _get(raw, _SIGNATURE)
        if _get(raw, "function_call") is not None:
            self._parts.append({"function_call": _get(raw, "function_call"), _SIGNATURE: signature})
            return None
        if not isinstance(text, str):
            return None
        thought = bool(_get(raw, "thought"))
        last = self._parts[-1] if self._parts else None
        if (
            last is not None
            and "text" in last
            and last["thought"] == thought
            and not last[_SIGNATURE]
        ):
            last["text"] += text
            last[_SIGNATURE] = signature
        else:
            self._parts.append({"text": text, "thought": thought, _SIGNATURE: signature})
        return None if thought else text

    def parts(self, *, model: str | None, response_id: str | None) -> tuple[str, list[Part]]:
        return parts_from_candidate(self._parts, model=model, response_id=response_id)


# ------------------------------------------------------------------ Interactions


def to_steps(
    messages: Iterable[Message], earlier: Iterable[Message] = ()
) -> tuple[list[str], list[Wire]]:
    """``(system notes, input steps)`` for the Interactions API, oldest first;
    ``earlier``: messages the server holds already (they name the calls that tool
    results answer)."""
    notes, rest = _notes_and_rest(messages)
    steps: list[Wire] = []
    for message, results in _ordered_results(rest, earlier):
        if message.role == "tool":
            steps += [_function_result(r) for r in results]
        elif message.role == "assistant":
            steps += _model_steps(message)
        else:
            content = _user_content(message)
            if content:
                steps.append({"type": "user_input", "content": content})
    return notes, steps


def _user_content(message: Message) -> list[Wire]:
    if not message.parts:
        return [{"type": "text", "text": message.content}] if message.content else []
    content: list[Wire] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            if part.text:
                content.append({"type": "text", "text": part.text})
        elif isinstance(part, (ImagePart, FilePart)):
            data, url = _media_source(part)
            item: Wire = {"type": "image" if isinstance(part, ImagePart) else "document",
                          "mime_type": part.media_type}  # fmt: skip
            if data is not None:
                item["data"] = _b64(data)
            else:
                item["uri"] = url
            content.append(item)
    return content


def _model_steps(message: Message) -> list[Wire]:
    if not message.parts:
        text = [{"type": "text", "text": message.content}] if message.content else []
        return [{"type": "model_output", "content": text}] if text else []
    steps: list[Wire] = []
    for part in message.parts:
        if isinstance(part, ReasoningPart):
            step: Wire = {"type": "thought"}
            signature = _signature(part)
            if signature:
                step["signature"] = signature
            if part.text:
                step["summary"] = [{"type": "text", "text": part.text}]
            if len(step) > 1:
                steps.append(step)
        elif isinstance(part, TextPart):
            if not part.text:
                continue
            if steps and steps[-1]["type"] == "model_output":
                steps[-1]["content"].append({"type": "text", "text": part.text})
            else:
                steps.append({"type": "model_output",
                              "content": [{"type": "text", "text": part.text}]})  # fmt: skip
        elif isinstance(part, ToolCall):
            steps.append({"type": "function_call", "id": part.id, "name": part.name,
                          "arguments": part.arguments})  # fmt: skip
    return steps


def _function_result(result: ToolResult) -> Wire:
    step: Wire = {"type": "function_result", "call_id": result.call_id,
                  "result": result.content}  # fmt: skip
    if result.name:
        step["name"] = result.name
    if result.is_error:
        step["is_error"] = True
    return step


def interaction_tools(tools: Sequence[ToolSpec]) -> list[Wire]:
    """Interactions ``tools``: ``{type: function, name, description, parameters}``."""
    out = []
    for spec in tools:
        tool: Wire = {"type": "function", "name": spec.name, "parameters": spec.parameters}
        if spec.description:
            tool["description"] = spec.description
        out.append(tool)
    return out


def interaction_format(response_format: dict[str, Any]) -> Wire:
    """Interactions ``response_format`` asking for JSON following the schema."""
    return {"type": "text", "mime_type": "application/json", "schema": response_format["schema"]}


_INPUT_STEPS = frozenset({"user_input", "function_result"})


def parts_from_steps(steps: Iterable[Any], *, model: str | None) -> tuple[str, list[Part]]:
    """``(text, parts)`` of an interaction's steps (SDK objects or dicts): the ones
    after the last input step, so an echo of the input is never taken for the reply."""
    listed = list(steps or ())
    starts = [i for i, s in enumerate(listed) if _get(s, "type") in _INPUT_STEPS]
    parts: list[Part] = []
    for step in listed[starts[-1] + 1 if starts else 0 :]:
        kind = _get(step, "type")
        if kind == "thought":
            summary = "".join(
                _get(c, "text") or ""
                for c in _get(step, "summary") or ()
                if _get(c, "type") == "text"
            )
            signature = _signature_text(_get(step, "signature"))
            data = {_SIGNATURE: signature} if signature else None
            parts.append(ReasoningPart(text=summary, provider=PROVIDER, model=model, data=data))
        elif kind == "model_output":
            for item in _get(step, "content") or ():
                text = _get(item, "text")
                if _get(item, "type") == "text" and isinstance(text, str) and text:
                    parts.append(TextPart(text=text))
        elif kind == "function_call":
            ident, name = _get(step, "id"), _get(step, "name")
            if not isinstance(ident, str) or not ident or not isinstance(name, str) or not name:
                raise ProviderBadResponse("function_call step without an id or name",
                                          provider=PROVIDER)  # fmt: skip
            arguments = _get(step, "arguments")
            parts.append(ToolCall(id=ident, name=name, arguments=_arguments(arguments)))
    return "".join(p.text for p in parts if isinstance(p, TextPart)), parts


def _arguments(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else {}
        except ValueError:
            return {"raw": value}
    if value is None:
        return {}
    return dict(value) if isinstance(value, dict) else {"raw": value}


class StepStream:
    """An interaction's output steps put together from ``step.start`` / ``step.delta``
    / ``step.stop`` events, by index."""

    def __init__(self) -> None:
        self._steps: dict[int, dict[str, Any]] = {}

    def start(self, index: int, step: Any) -> None:
        kind = _get(step, "type")
        entry: dict[str, Any] = {"type": kind}
        if kind == "function_call":
            entry.update(id=_get(step, "id"), name=_get(step, "name"),
                         arguments=_get(step, "arguments") or {}, json="")  # fmt: skip
        elif kind == "thought":
            entry.update(summary=list(_get(step, "summary") or ()),
                         signature=_signature_text(_get(step, "signature")) or "")  # fmt: skip
        elif kind == "model_output":
            entry["content"] = list(_get(step, "content") or ())
        self._steps[index] = entry

    def delta(self, index: int, delta: Any) -> str | None:
        """Apply one delta; returns the reply text it adds (None: none)."""
        entry = self._steps.setdefault(index, {"type": "model_output", "content": []})
        kind = _get(delta, "type")
        if kind == "text":
            text = _get(delta, "text")
            if not isinstance(text, str):
                raise ProviderBadResponse("text delta without text", provider=PROVIDER)
            entry.setdefault("content", []).append({"type": "text", "text": text})
            return text
        if kind == "thought_summary":
            content = _get(delta, "content")
            if content is not None:
                entry.setdefault("summary", []).append(content)
        elif kind == "thought_signature":
            entry["signature"] = entry.get("signature", "") + (_get(delta, "signature") or "")
        elif kind == "arguments_delta":
            entry["json"] = entry.get("json", "") + (_get(delta, "arguments") or "")
        return None

    def parts(self, *, model: str | None) -> tuple[str, list[Part]]:
        steps: list[Wire] = []
        for _, entry in sorted(self._steps.items()):
            if entry["type"] == "function_call" and entry.get("json"):
                entry = {**entry, "arguments": entry["json"]}
            steps.append(entry)
        return parts_from_steps(steps, model=model)
