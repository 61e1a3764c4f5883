"""Gemini wire API: ``models/{model}:generateContent`` and ``:streamGenerateContent``
(``?alt=sse``), and the Interactions API (``POST /{version}/interactions``, JSON or SSE).

Mounted under ``/gemini``; point google-genai at it with
``HttpOptions(base_url=emu.url("gemini"), api_version="v1beta")``.

Interactions are stored (``store`` defaults to true, as on the real API) with the whole
conversation they ended, so ``previous_interaction_id`` continues it; an unknown id is a
404 ``NOT_FOUND``. A key starting with ``invalid`` is refused with 401.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from langswarm_runtime.testing.emulator._cache import Segment, prompt_cache
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
    return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------- generateContent

_GENERATE = r"/(?P<ver>v1[a-z0-9]*)/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"


@route("POST", _GENERATE, provider=P)
def generate_content(req: EmulatorRequest) -> JSONResponse | SSEResponse:
    _check_auth(req)
    body = req.json
    if not isinstance(body, dict):
        raise EmulatorHTTPError(400, "Invalid JSON payload: expected an object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise EmulatorHTTPError(400, "* GenerateContentRequest.contents: contents is not specified")
    turns = []
    for c in contents:
        role = c.get("role", "user") if isinstance(c, dict) else None
        if role not in ("user", "model"):
            raise EmulatorHTTPError(400, "Please use a valid role: user, model.")
        turns.append((role, _parts_text(c.get("parts"))))
    if turns[-1][0] != "user":
        raise EmulatorHTTPError(400, "the last content must have role 'user'")
    system = _parts_text((body.get("systemInstruction") or {}).get("parts"))
    reply = echo_reply(turns[-1][1], len(turns) - 1)
    input_words = count_words(system, *(t for _, t in turns))
    output_words = count_words(reply)
    usage = {
        "promptTokenCount": input_words,
        "candidatesTokenCount": output_words,
        "totalTokenCount": input_words + output_words,
        "cachedContentTokenCount": min(_cached(req, body, contents), input_words),
    }
    rid, model = new_id("resp-"), req.match["model"]

    def chunk(text: str, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": text}]},
            "index": 0,
        }
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": rid}
        if final:
            candidate["finishReason"] = "STOP"
            out["usageMetadata"] = usage
        return out

    if req.match["method"] == "generateContent":
        return JSONResponse(chunk(reply, True))
    deltas = word_deltas(reply)
    return SSEResponse((None, chunk(delta, i == len(deltas) - 1)) for i, delta in enumerate(deltas))


def _cached(req: EmulatorRequest, body: dict[str, Any], contents: list[Any]) -> int:
    """Implicit caching: the system instruction, then each content, as cacheable segments."""
    system = body.get("systemInstruction")
    segments = [
        Segment(
            {"systemInstruction": system}, count_words(_parts_text((system or {}).get("parts")))
        )
    ]
    segments += [Segment(c, count_words(_parts_text(c.get("parts")))) for c in contents]
    return prompt_cache(req.emulator, P, req.match["model"], segments).read


# ------------------------------------------------------------------------- interactions


def _input_turns(raw: Any) -> list[tuple[str, str]]:
    """(role, text) turns of an interaction ``input``: a str, one content, a list of
    contents (one user turn) or a list of steps (user_input / model_output)."""
    if isinstance(raw, str):
        return [("user", raw)]
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise EmulatorHTTPError(400, "input: expected a string, content or list of steps")
    if all(isinstance(s, dict) and s.get("type") in ("user_input", "model_output") for s in raw):
        return [
            ("user" if s["type"] == "user_input" else "model", _parts_text(s.get("content")))
            for s in raw
        ]
    return [("user", _parts_text(raw))]


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
        reply = echo_reply(context[-1][1], len(context) - 1)
        if store:
            stored[iid] = {"turns": context + [("model", reply)], "system": system}
    input_words = count_words(system, *(t for _, t in context))
    output_words = count_words(reply)
    usage = {
        "total_input_tokens": input_words,
        "total_output_tokens": output_words,
        "total_cached_tokens": min(req.emulator.cached_tokens, input_words),
        "total_tokens": input_words + output_words,
    }
    step = {"type": "model_output", "content": [{"type": "text", "text": reply}]}
    interaction = {
        "id": iid,
        "status": "completed",
        "model": body["model"],
        "created": _now(),
        "updated": _now(),
        "steps": [step],
        "usage": usage,
    }
    if prev_id:
        interaction["previous_interaction_id"] = prev_id
    if not body.get("stream"):
        return JSONResponse(interaction)
    return SSEResponse(_interaction_events(interaction, reply))


def _interaction_events(
    interaction: dict[str, Any], reply: str
) -> Iterator[tuple[str | None, Any]]:
    def ev(kind: str, **data: Any) -> tuple[str, Any]:
        return kind, {"event_type": kind, "event_id": new_id("evt_"), **data}

    head = {"id": interaction["id"], "status": "in_progress", "model": interaction["model"]}
    yield ev("interaction.created", interaction=head)
    yield ev("step.start", index=0, step={"type": "model_output", "content": []})
    for delta in word_deltas(reply):
        yield ev("step.delta", index=0, delta={"type": "text", "text": delta})
    yield ev("step.stop", index=0)
    yield ev(
        "interaction.completed", interaction={k: v for k, v in interaction.items() if k != "steps"}
    )
