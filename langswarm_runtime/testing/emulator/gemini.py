"""Gemini wire API: ``models/{model}:generateContent`` and ``:streamGenerateContent``
(``?alt=sse``), and the Interactions API (``POST /{version}/interactions``, JSON or SSE).

Mounted under ``/gemini``; point google-genai at it with
``HttpOptions(base_url=emu.url("gemini"), api_version="v1beta")``.

Interactions are stored (``store`` defaults to true, as on the real API) with the whole
conversation they ended, so ``previous_interaction_id`` continues it; an unknown id is a
404 ``NOT_FOUND``. A key starting with ``invalid`` is refused with 401.

Both APIs follow the model rules of ``_model_rules`` (one model reads both wires): with
functions declared, ``call NAME {json}`` lines of the newest user input are answered
with function calls (generateContent: ``functionCall`` parts without ids, as the Gemini
API gives them; Interactions: ``function_call`` steps with ids, status
``requires_action``); function responses / results with ``tool NAME returned ...``;
inline media (base64 decoded to count bytes) and URIs are acknowledged; a JSON response
mime type with a schema gets a ``structured_reply``; ``thinkingConfig.includeThoughts``
(``generation_config.thinking_summaries: auto``) puts a signed thought first, and signs
the first function call too. As on the real API, the function responses must follow the
calls' turn and be as many as the calls (paired by id, else by name in order), and a
thought signature sent back must be one the emulator gave for that part: else a 400.
Field names are read in camelCase or snake_case, as protobuf JSON allows.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from langswarm_runtime.testing.emulator._cache import Segment, prompt_cache
from langswarm_runtime.testing.emulator._wire import (
    chained_calls,
    media_note,
    reasoning_for,
    signature_of,
    structured_reply,
    tool_answer,
    tool_calls_asked,
)
from langswarm_runtime.testing.emulator.server import (
    EmulatorHTTPError,
    EmulatorRequest,
    JSONResponse,
    SSEResponse,
    count_words,
    echo_reply,
    error_shape,
    new_id,
    route,
    word_deltas,
)

P = "gemini"
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@error_shape(P)
def _error(status: int, message: str, code: str | None) -> Any:
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}


def _check_auth(req: EmulatorRequest) -> None:
    key = req.headers.get("x-goog-api-key") or req.query.get("key", "")
    if key.startswith("invalid"):
        raise EmulatorHTTPError(401, "API key not valid. Please pass a valid API key.")


def _parts_text(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "".join(
        str(p.get("text", "")) for p in parts if isinstance(p, dict) and not p.get("thought")
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` under its camelCase or snake_case spelling (protobuf JSON takes both,
    and the SDK sends both)."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
    return obj.get(camel)


# ------------------------------------------------------------------------- the model
#
# Both wires are read into turns of one shape, so one model answers them: a turn is
# ``(role, items)``, role ``user`` or ``model``, each item a dict with ``k``:
# ``text``, ``media`` (mime, size, url), ``thought`` (text, sig), ``call`` (id, name,
# args, sig) or ``result`` (id, name, content).

Item = dict[str, Any]
Turn = tuple[str, list[Item]]


def _b64sig(text: str) -> str:
    """The signature the emulator gives, as the wire carries it (base64)."""
    return base64.b64encode(signature_of(text).encode()).decode("ascii")


def _call_key(name: str, args: Any) -> str:
    return f"call {name} " + json.dumps(args, sort_keys=True, separators=(",", ":"))


def _check_signature(item: Item, where: str) -> None:
    signature = item.get("sig")
    if signature is None:
        return
    key = _call_key(item["name"], item["args"]) if item["k"] == "call" else item.get("text", "")
    if _unb64(signature) != signature_of(key).encode():
        raise EmulatorHTTPError(400, f"{where}: Thought signature is not valid.")


def _unb64(data: Any) -> bytes | None:
    # Protobuf JSON takes standard and URL-safe base64 (the SDK sends the latter).
    text = str(data).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _decoded_size(data: Any, where: str) -> int:
    decoded = _unb64(data)
    if decoded is None:
        raise EmulatorHTTPError(400, f"{where}.data: invalid base64")
    return len(decoded)


def _check_pairs(turns: list[Turn]) -> None:
    """Function responses as the API wants them: right after the model turn that made
    the calls, as many as there were calls, answering them (by id, else by name in
    order)."""
    for i, (role, items) in enumerate(turns):
        results = [it for it in items if it["k"] == "result"]
        if not results:
            continue
        before = turns[i - 1][1] if i and turns[i - 1][0] == "model" else []
        calls = [it for it in before if it["k"] == "call"]
        if len(results) != len(calls):
            raise EmulatorHTTPError(
                400,
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn.",
            )
        for call, result in zip(calls, results, strict=True):
            ids = (call.get("id"), result.get("id"))
            if (all(ids) and ids[0] != ids[1]) or (not all(ids) and call["name"] != result["name"]):
                raise EmulatorHTTPError(
                    400, f"function response {result.get('id') or result['name']!r} answers no call"
                )
            result.setdefault("call_name", call["name"])


def _answer(
    turns: list[Turn], offered: list[str], schema: Any, thinking: bool, *, ids: bool
) -> list[Item]:
    """The model's reply items to ``turns`` (see ``_model_rules``)."""
    last = turns[-1][1]
    results = [it for it in last if it["k"] == "result"]
    items: list[Item] = []
    calls: list[Item] = []
    pairs = [(r.get("name") or r.get("call_name"), r["content"]) for r in results]
    chained = chained_calls(pairs, offered) if results else []
    if results and not chained:
        prompt = tool_answer(pairs)
        items.append({"k": "text", "text": prompt})
    else:
        if chained:  # the results ask for more calls
            prompt = "\n".join(c for _, c in pairs)
        else:
            prompt = "".join(it["text"] for it in last if it["k"] == "text")
        asked = tool_calls_asked(prompt, offered)
        if asked:
            calls = [{"k": "call", "name": name, "args": args, "id": new_id("call_") if ids else None}
                     for name, args in asked]  # fmt: skip
            items += calls
        elif schema is not None:
            items.append({"k": "text", "text": structured_reply(schema, prompt)})
        else:
            media = [(it["mime"], it["size"], it["url"]) for it in last if it["k"] == "media"]
            items.append(
                {"k": "text", "text": echo_reply(prompt + media_note(media), len(turns) - 1)}
            )
    if thinking:
        thought, _ = reasoning_for(prompt)
        items.insert(0, {"k": "thought", "text": thought, "sig": _b64sig(thought)})
        if calls:  # as Gemini 3 does: the first call of a step carries a signature too
            calls[0]["sig"] = _b64sig(_call_key(calls[0]["name"], calls[0]["args"]))
    return items


def _reply_text(items: list[Item]) -> str:
    return "".join(it["text"] for it in items if it["k"] == "text")


def _output_words(items: list[Item]) -> int:
    return sum(count_words(it.get("text")) + (it["k"] == "call") for it in items)


def _input_words(system: str | None, turns: list[Turn]) -> int:
    texts = [it.get("text") or it.get("content") for _, items in turns for it in items
             if it["k"] in ("text", "result")]  # fmt: skip
    return count_words(system, *texts)


# ------------------------------------------------------------------------- generateContent

_GENERATE = r"/(?P<ver>v1[a-z0-9]*)/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"


def _content_items(role: str, parts: Any, where: str) -> list[Item]:
    if not isinstance(parts, list):
        raise EmulatorHTTPError(400, f"{where}.parts: expected a list")
    items: list[Item] = []
    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise EmulatorHTTPError(400, f"{at}: expected an object")
        signature = _field(part, "thought_signature")
        blob, file = _field(part, "inline_data"), _field(part, "file_data")
        call, response = _field(part, "function_call"), _field(part, "function_response")
        item: Item
        if call is not None:
            if role != "model" or not isinstance(call.get("name"), str):
                raise EmulatorHTTPError(400, f"{at}.functionCall: a model part with a name")
            item = {"k": "call", "id": call.get("id"), "name": call["name"],
                    "args": call.get("args") or {}, "sig": signature}  # fmt: skip
        elif response is not None:
            if role != "user" or not isinstance(response.get("name"), str):
                raise EmulatorHTTPError(400, f"{at}.functionResponse: a user part with a name")
            answer = response.get("response")
            if not isinstance(answer, dict):
                raise EmulatorHTTPError(400, f"{at}.functionResponse.response: expected an object")
            value = answer.get("output", answer.get("error", answer))
            content = value if isinstance(value, str) else json.dumps(value)
            item = {"k": "result", "id": response.get("id"), "name": response["name"],
                    "content": content}  # fmt: skip
        elif blob is not None:
            size = _decoded_size(_field(blob, "data"), f"{at}.inlineData")
            item = {"k": "media", "mime": _field(blob, "mime_type"), "size": size, "url": None}
        elif file is not None:
            item = {"k": "media", "mime": _field(file, "mime_type"), "size": None,
                    "url": _field(file, "file_uri")}  # fmt: skip
        elif isinstance(part.get("text"), str):
            kind = "thought" if part.get("thought") else "text"
            item = {"k": kind, "text": part["text"], "sig": signature}
        else:
            raise EmulatorHTTPError(400, f"{at}: the part holds no data")
        _check_signature(item, at)
        items.append(item)
    return items


def _generation_thinking(config: Any) -> bool:
    thinking = _field(config, "thinking_config")
    return bool(_field(thinking, "include_thoughts"))


def _generation_schema(config: Any) -> Any:
    if _field(config, "response_mime_type") != "application/json":
        return None
    schema = _field(config, "response_json_schema") or _field(config, "response_schema")
    return schema if isinstance(schema, dict) else {}


def _declared(tools: Any) -> list[str]:
    names: list[str] = []
    for tool in tools or []:
        for declaration in _field(tool, "function_declarations") or []:
            if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
                raise EmulatorHTTPError(400, "tools.functionDeclarations: each needs a name")
            names.append(declaration["name"])
    return names


def _wire_parts(items: list[Item]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for it in items:
        if it["k"] == "call":
            call = {"name": it["name"], "args": it["args"]}
            if it.get("id"):
                call["id"] = it["id"]
            part: dict[str, Any] = {"functionCall": call}
        elif it["k"] == "thought":
            part = {"text": it["text"], "thought": True}
        else:
            part = {"text": it["text"]}
        if it.get("sig"):
            part["thoughtSignature"] = it["sig"]
        parts.append(part)
    return parts


def _stream_pieces(items: list[Item]) -> list[list[dict[str, Any]]]:
    """The reply's parts as stream chunks: a thought in two pieces (the signature on the
    second), text word by word, the calls in one chunk."""
    chunks: list[list[dict[str, Any]]] = []
    calls = [it for it in items if it["k"] == "call"]
    for it in items:
        if it["k"] == "thought":
            half = len(it["text"]) // 2
            chunks.append([{"text": it["text"][:half], "thought": True}])
            chunks.append([{"text": it["text"][half:], "thought": True,
                            "thoughtSignature": it["sig"]}])  # fmt: skip
        elif it["k"] == "text":
            chunks += [[{"text": piece}] for piece in word_deltas(it["text"])]
    if calls:
        chunks.append(_wire_parts(calls))
    return chunks


@route("POST", _GENERATE, provider=P)
def generate_content(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    _check_auth(req)
    body = req.json
    if not isinstance(body, dict):
        raise EmulatorHTTPError(400, "Invalid JSON payload: expected an object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise EmulatorHTTPError(400, "* GenerateContentRequest.contents: contents is not specified")
    turns: list[Turn] = []
    for i, c in enumerate(contents):
        role = c.get("role", "user") if isinstance(c, dict) else None
        if role not in ("user", "model"):
            raise EmulatorHTTPError(400, "Please use a valid role: user, model.")
        turns.append((role, _content_items(role, c.get("parts"), f"contents[{i}]")))
    if turns[-1][0] != "user":
        raise EmulatorHTTPError(400, "the last content must have role 'user'")
    _check_pairs(turns)
    config = _field(body, "generation_config") or {}
    system = _parts_text((_field(body, "system_instruction") or {}).get("parts"))
    items = _answer(turns, _declared(body.get("tools")), _generation_schema(config),
                    _generation_thinking(config), ids=False)  # fmt: skip
    input_words = _input_words(system, turns)
    output_words = _output_words(items)
    usage = {
        "promptTokenCount": input_words,
        "candidatesTokenCount": output_words,
        "totalTokenCount": input_words + output_words,
        "cachedContentTokenCount": min(_cached(req, body, contents), input_words),
    }
    rid, model = new_id("resp-"), req.match["model"]

    def chunk(parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": rid}
        if final:
            candidate["finishReason"] = "STOP"
            out["usageMetadata"] = usage
        return out

    if req.match["method"] == "generateContent":
        return JSONResponse(chunk(_wire_parts(items), True))
    pieces = _stream_pieces(items)
    return SSEResponse((None, chunk(p, i == len(pieces) - 1)) for i, p in enumerate(pieces))


def _cached(req: EmulatorRequest, body: dict[str, Any], contents: list[Any]) -> int:
    """Implicit caching: the system instruction, then each content, as cacheable segments."""
    system = _field(body, "system_instruction")
    segments = [
        Segment(
            {"systemInstruction": system}, count_words(_parts_text((system or {}).get("parts")))
        )
    ]
    segments += [Segment(c, count_words(_parts_text(c.get("parts")))) for c in contents]
    return prompt_cache(req.emulator, P, req.match["model"], segments).read


# ------------------------------------------------------------------------- interactions

_MODEL_STEPS = frozenset({"model_output", "thought", "function_call"})
_USER_STEPS = frozenset({"user_input", "function_result"})


def _user_items(content: Any, where: str) -> list[Item]:
    if isinstance(content, str):
        return [{"k": "text", "text": content}]
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        raise EmulatorHTTPError(400, f"{where}.content: expected a list of contents")
    items: list[Item] = []
    for j, c in enumerate(content):
        kind = c.get("type") if isinstance(c, dict) else None
        if kind == "text":
            items.append({"k": "text", "text": str(c.get("text", ""))})
        elif kind in ("image", "document", "audio", "video"):
            if c.get("data") is not None:
                size = _decoded_size(c["data"], f"{where}.content[{j}]")
                items.append({"k": "media", "mime": c.get("mime_type"), "size": size, "url": None})
            elif isinstance(c.get("uri"), str):
                items.append({"k": "media", "mime": c.get("mime_type"), "size": None,
                              "url": c["uri"]})  # fmt: skip
            else:
                raise EmulatorHTTPError(400, f"{where}.content[{j}]: data or uri is required")
        else:
            raise EmulatorHTTPError(400, f"{where}.content[{j}]: unknown content type {kind!r}")
    return items


def _step_items(step: dict[str, Any], where: str) -> list[Item]:
    kind = step["type"]
    if kind == "user_input":
        return _user_items(step.get("content"), where)
    if kind == "model_output":
        return [{"k": "text", "text": str(c.get("text", ""))}
                for c in step.get("content") or [] if isinstance(c, dict)
                and c.get("type") == "text"]  # fmt: skip
    if kind == "thought":
        summary = "".join(str(c.get("text", "")) for c in step.get("summary") or []
                          if isinstance(c, dict))  # fmt: skip
        item = {"k": "thought", "text": summary, "sig": step.get("signature")}
    elif kind == "function_call":
        if not step.get("id") or not isinstance(step.get("name"), str):
            raise EmulatorHTTPError(400, f"{where}: function_call needs an id and a name")
        item = {"k": "call", "id": step["id"], "name": step["name"],
                "args": step.get("arguments") or {}, "sig": None}  # fmt: skip
    else:  # function_result
        if not step.get("call_id"):
            raise EmulatorHTTPError(400, f"{where}: function_result needs a call_id")
        result = step.get("result")
        content = result if isinstance(result, str) else json.dumps(result)
        item = {"k": "result", "id": step["call_id"], "name": step.get("name"),
                "content": content}  # fmt: skip
    _check_signature(item, where)
    return [item]


def _input_turns(raw: Any) -> list[Turn]:
    """Turns of an interaction ``input``: a str, one content, a list of contents (one
    user turn) or a list of steps (consecutive model steps make one model turn, user
    inputs and function results one user turn)."""
    if isinstance(raw, str):
        return [("user", [{"k": "text", "text": raw}])]
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise EmulatorHTTPError(400, "input: expected a string, content or list of steps")
    steps = _MODEL_STEPS | _USER_STEPS
    if not all(isinstance(s, dict) and s.get("type") in steps for s in raw):
        return [("user", _user_items(raw, "input"))]
    turns: list[Turn] = []
    for i, step in enumerate(raw):
        role = "model" if step["type"] in _MODEL_STEPS else "user"
        items = _step_items(step, f"input[{i}]")
        # A user input after function results is a turn of its own (as generateContent
        # keeps them apart), so the results stay next to their calls.
        joins = (
            turns
            and turns[-1][0] == role
            and not (
                step["type"] == "user_input" and any(it["k"] == "result" for it in turns[-1][1])
            )
        )
        if joins:
            turns[-1][1].extend(items)
        else:
            turns.append((role, items))
    return turns


def _interaction_schema(body: dict[str, Any]) -> Any:
    formats = body.get("response_format")
    for fmt in formats if isinstance(formats, list) else [formats]:
        if isinstance(fmt, dict) and fmt.get("mime_type") == "application/json":
            schema = fmt.get("schema")
            return schema if isinstance(schema, dict) else {}
    return None


def _functions(body: dict[str, Any]) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function":
            if not isinstance(tool.get("name"), str):
                raise EmulatorHTTPError(400, "tools: a function needs a name")
            names.append(tool["name"])
    return names


def _steps(items: list[Item]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for it in items:
        if it["k"] == "thought":
            steps.append({"type": "thought", "signature": it["sig"],
                          "summary": [{"type": "text", "text": it["text"]}]})  # fmt: skip
        elif it["k"] == "call":
            steps.append({"type": "function_call", "id": it["id"], "name": it["name"],
                          "arguments": it["args"]})  # fmt: skip
        else:
            steps.append(
                {"type": "model_output", "content": [{"type": "text", "text": it["text"]}]}
            )
    return steps


@route("POST", r"/(?P<ver>v1[a-z0-9]*)/interactions", provider=P)
def create_interaction(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    _check_auth(req)
    body = req.json
    if not isinstance(body, dict) or not body.get("model"):
        raise EmulatorHTTPError(400, "model: required")
    new = _input_turns(body.get("input"))
    prev_id = body.get("previous_interaction_id")
    store = body.get("store", True) is not False
    system = body.get("system_instruction")
    generation = body.get("generation_config") or {}
    thinking = isinstance(generation, dict) and generation.get("thinking_summaries") == "auto"
    iid = new_id("int_")
    with req.lock:
        stored = req.state.setdefault("interactions", {})
        if prev_id:
            prev = stored.get(prev_id)
            if prev is None:
                raise EmulatorHTTPError(404, f"Interaction '{prev_id}' not found.")
            context = prev["turns"] + new
            system = system or prev["system"]
        else:
            context = new
        if context[-1][0] != "user":
            raise EmulatorHTTPError(400, "input: the last step must be user_input")
        _check_pairs(context)
        items = _answer(context, _functions(body), _interaction_schema(body), thinking, ids=True)
        if store:
            stored[iid] = {"turns": context + [("model", items)], "system": system}
    input_words = _input_words(system, context)
    output_words = _output_words(items)
    usage = {
        "total_input_tokens": input_words,
        "total_output_tokens": output_words,
        "total_cached_tokens": min(req.emulator.cached_tokens, input_words),
        "total_tokens": input_words + output_words,
    }
    calls = any(it["k"] == "call" for it in items)
    interaction = {
        "id": iid,
        "status": "requires_action" if calls else "completed",
        "model": body["model"],
        "created": _now(),
        "updated": _now(),
        "steps": _steps(items),
        "usage": usage,
    }
    if prev_id:
        interaction["previous_interaction_id"] = prev_id
    if not body.get("stream"):
        return JSONResponse(interaction)
    return SSEResponse(_interaction_events(interaction))


def _interaction_events(interaction: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    def ev(kind: str, **data: Any) -> tuple[str, Any]:
        return kind, {"event_type": kind, "event_id": new_id("evt_"), **data}

    head = {"id": interaction["id"], "status": "in_progress", "model": interaction["model"]}
    yield ev("interaction.created", interaction=head)
    for index, step in enumerate(interaction["steps"]):
        kind = step["type"]
        if kind == "thought":
            yield ev("step.start", index=index, step={"type": "thought"})
            for summary in step["summary"]:
                yield ev("step.delta", index=index,
                         delta={"type": "thought_summary", "content": summary})  # fmt: skip
            yield ev("step.delta", index=index,
                     delta={"type": "thought_signature", "signature": step["signature"]})  # fmt: skip
        elif kind == "function_call":
            yield ev("step.start", index=index, step={**step, "arguments": {}})
            yield ev("step.delta", index=index,
                     delta={"type": "arguments_delta", "arguments": json.dumps(step["arguments"])})  # fmt: skip
        else:
            yield ev("step.start", index=index, step={"type": "model_output", "content": []})
            for delta in word_deltas(step["content"][0]["text"]):
                yield ev("step.delta", index=index, delta={"type": "text", "text": delta})
        yield ev("step.stop", index=index)
    yield ev(
        "interaction.completed", interaction={k: v for k, v in interaction.items() if k != "steps"}
    )
