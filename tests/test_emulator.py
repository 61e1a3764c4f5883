"""The provider emulator core over raw HTTP: routing, recording, state and every fault."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from langswarm_runtime.testing.emulator import FAULT_KINDS, ProviderEmulator

RESPONSES = "/openai/v1/responses"


def _body(text: str = "hello world", **extra: object) -> dict[str, object]:
    return {"model": "m", "input": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def client(provider_emulator: ProviderEmulator):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=provider_emulator.base_url, timeout=5) as c:
        yield c


def test_binds_loopback_free_port_and_stops() -> None:
    with ProviderEmulator() as emu:
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.port > 0
        url = emu.url("openai")
        assert url == f"{emu.base_url}/openai"
        port = emu.port
    with pytest.raises(httpx.ConnectError), httpx.Client() as c:
        c.post(f"http://127.0.0.1:{port}{RESPONSES}", json=_body(), timeout=1)


def test_routes_deterministic_reply_and_usage(client: httpx.Client) -> None:
    body = {
        "model": "m",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two words"},
            {"role": "user", "content": "three four five"},
        ],
    }
    r = client.post(RESPONSES, json=body)
    assert r.status_code == 200
    data = r.json()
    text = data["output"][0]["content"][0]["text"]
    assert text == "echo: three four five [earlier messages: 2]"
    # input = every word the model saw (instructions + all items); output = reply words
    assert data["usage"]["input_tokens"] == 2 + 1 + 2 + 3
    assert data["usage"]["output_tokens"] == len(text.split())
    assert data["usage"]["input_tokens_details"]["cached_tokens"] == 0


def test_cached_tokens_configurable() -> None:
    with ProviderEmulator(cached_tokens=3) as emu, httpx.Client(base_url=emu.base_url) as c:
        usage = c.post(RESPONSES, json=_body("a b c d e")).json()["usage"]
        assert usage["input_tokens_details"]["cached_tokens"] == 3
        usage = c.post(RESPONSES, json=_body("a")).json()["usage"]
        assert usage["input_tokens_details"]["cached_tokens"] == 1  # capped at the input


def test_unknown_route_is_404_in_provider_shape(client: httpx.Client) -> None:
    r = client.post("/openai/v1/nothing", json={})
    assert r.status_code == 404
    assert "no route" in r.json()["error"]["message"]
    assert client.get(RESPONSES).status_code == 404  # wrong method


def test_bad_json_is_400(client: httpx.Client) -> None:
    r = client.post(RESPONSES, content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_recording_redacts_credentials_and_clear(
    client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    client.post(
        RESPONSES + "?key=abc",
        json=_body(),
        headers={"authorization": "Bearer sk-topsecret", "x-api-key": "sk-other"},
    )
    [rec] = provider_emulator.requests
    assert (rec.method, rec.path, rec.provider) == ("POST", RESPONSES, "openai")
    assert rec.json == _body()
    assert rec.headers["authorization"] == "<redacted>"
    assert rec.headers["x-api-key"] == "<redacted>"
    assert rec.query["key"] == "<redacted>"
    assert "topsecret" not in repr(provider_emulator.requests)
    provider_emulator.inject("500")
    provider_emulator.clear()
    assert provider_emulator.requests == []
    assert client.post(RESPONSES, json=_body()).status_code == 200  # fault cleared too


def test_keep_alive_reuses_connection(client: httpx.Client) -> None:
    ports = set()
    for _ in range(3):
        r = client.post(RESPONSES, json=_body(), extensions={})
        assert r.status_code == 200
        stream = r.extensions["network_stream"]
        ports.add(stream.get_extra_info("client_addr"))
    assert len(ports) == 1


def test_conversation_state_and_forget(
    client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    conv = client.post(
        "/openai/v1/conversations",
        json={"items": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ).json()
    r = client.post(RESPONSES, json={**_body("c"), "conversation": conv["id"]}).json()
    assert r["output"][0]["content"][0]["text"] == "echo: c [earlier messages: 2]"
    r = client.post(RESPONSES, json={**_body("d"), "conversation": conv["id"]}).json()
    assert r["output"][0]["content"][0]["text"] == "echo: d [earlier messages: 4]"
    items = client.get(f"/openai/v1/conversations/{conv['id']}/items").json()["data"]
    assert [i["role"] for i in items] == ["user", "assistant"] * 3
    provider_emulator.forget_conversations()
    r2 = client.post(RESPONSES, json={**_body("e"), "conversation": conv["id"]})
    assert r2.status_code == 404
    assert conv["id"] in r2.json()["error"]["message"]


def _sse_events(text: str) -> list[dict[str, object]]:
    out = []
    for block in text.strip().split("\n\n"):
        data = [ln[6:] for ln in block.splitlines() if ln.startswith("data: ")]
        if data and data[0] != "[DONE]":
            out.append(json.loads(data[0]))
    return out


def test_sse_stream_is_chunked_and_complete(client: httpx.Client) -> None:
    with client.stream("POST", RESPONSES, json=_body("hi", stream=True)) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["transfer-encoding"] == "chunked"
        text = r.read().decode()
    events = _sse_events(text)
    assert events[-1]["type"] == "response.completed"
    deltas = "".join(str(e["delta"]) for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "echo: hi [earlier messages: 0]"


# ----------------------------------------------------------------------------- faults


def test_fault_429_has_retry_after_and_counts(
    client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("429", count=2, retry_after=7)
    for _ in range(2):
        r = client.post(RESPONSES, json=_body())
        assert r.status_code == 429
        assert r.headers["retry-after"] == "7"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert client.post(RESPONSES, json=_body()).status_code == 200
    assert [rec.fault for rec in provider_emulator.requests] == ["429", "429", None]


@pytest.mark.parametrize("kind", ["500", "503", "529"])
def test_fault_server_errors(
    kind: str, client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject(kind)
    r = client.post(RESPONSES, json=_body())
    assert r.status_code == int(kind)
    assert "error" in r.json()


def test_fault_path_filter(client: httpx.Client, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("500", path=r"/chat/completions$")
    assert client.post(RESPONSES, json=_body()).status_code == 200
    r = client.post(
        "/openai/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 500


def test_fault_header_selects_per_request(client: httpx.Client) -> None:
    h = {"x-emulator-fault": "429", "x-emulator-retry-after": "2"}
    r = client.post(RESPONSES, json=_body(), headers=h)
    assert (r.status_code, r.headers["retry-after"]) == (429, "2")
    assert client.post(RESPONSES, json=_body()).status_code == 200


def test_fault_slow(client: httpx.Client, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("slow", delay=0.3)
    start = time.perf_counter()
    assert client.post(RESPONSES, json=_body()).status_code == 200
    assert time.perf_counter() - start >= 0.3
    provider_emulator.inject("slow", delay=2)
    with pytest.raises(httpx.ReadTimeout):
        client.post(RESPONSES, json=_body(), timeout=0.2)


def test_fault_drop(client: httpx.Client, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(RESPONSES, json=_body())
    assert client.post(RESPONSES, json=_body()).status_code == 200


def test_fault_malformed(client: httpx.Client, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("malformed")
    r = client.post(RESPONSES, json=_body())
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_fault_not_found(client: httpx.Client, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("not_found")
    r = client.post(RESPONSES, json=_body())
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_fault_stream_break(client: httpx.Client, provider_emulator: ProviderEmulator) -> None:
    provider_emulator.inject("stream_break")
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", RESPONSES, json=_body("hi", stream=True)) as r,
    ):
        assert r.status_code == 200
        received.extend(r.iter_text())
    text = "".join(received)
    assert "response.created" in text
    assert "response.completed" not in text


def test_fault_stream_break_on_plain_json(
    client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("stream_break")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(RESPONSES, json=_body())


def _raw_events(client: httpx.Client, path: str, body: dict[str, object]) -> list[str]:
    """The data of every event of a complete (cleanly ended) stream, as sent."""
    with client.stream("POST", path, json=body) as r:
        assert r.status_code == 200
        text = r.read().decode()  # raises if the stream did not end cleanly
    return [
        "\n".join(ln[6:] for ln in block.splitlines() if ln.startswith("data: "))
        for block in text.strip().split("\n\n")
    ]


def _types(events: list[str]) -> list[str]:
    return [str(json.loads(e)["type"]) for e in events if e != "[DONE]"]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


CHAT = "/openai/v1/chat/completions"


def _chat_body() -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hello world"}],
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip


@pytest.mark.parametrize("path", [RESPONSES, CHAT])
def test_fault_bad_event(
    client: httpx.Client, provider_emulator: ProviderEmulator, path: str
) -> None:
    body = _body("hi", stream=True) if path == RESPONSES else _chat_body()
    clean = _raw_events(client, path, body)
    provider_emulator.inject("bad_event")
    spoiled = _raw_events(client, path, body)
    assert len(spoiled) == len(clean)
    broken = [i for i, data in enumerate(spoiled) if not _is_json(data) and data != "[DONE]"]
    assert len(broken) == 1, "exactly one event is not JSON"
    [i] = broken
    assert 0 < i < len(clean) - 1, "in the middle of the stream"
    # its JSON cut short (ids differ per request, but not in length)
    assert spoiled[i].startswith("{") and len(spoiled[i]) == len(clean[i]) // 2


def test_fault_out_of_order_moves_the_terminal_event_second(
    client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    clean = _types(_raw_events(client, RESPONSES, _body("hi", stream=True)))
    provider_emulator.inject("out_of_order")
    spoiled = _types(_raw_events(client, RESPONSES, _body("hi", stream=True)))
    assert spoiled == [clean[0], clean[-1], *clean[1:-1]]
    assert spoiled[1] == "response.completed"


def test_fault_out_of_order_keeps_the_done_sentinel_last(
    client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    clean = _raw_events(client, CHAT, _chat_body())
    provider_emulator.inject("out_of_order")
    spoiled = _raw_events(client, CHAT, _chat_body())
    assert spoiled[-1] == clean[-1] == "[DONE]"
    usage = json.loads(spoiled[1])
    assert usage["choices"] == [] and usage["usage"], "the usage chunk (the last) comes second"
    assert len(spoiled) == len(clean)


def test_fault_truncated_ends_cleanly_before_the_end(
    client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    clean = _types(_raw_events(client, RESPONSES, _body("hi", stream=True)))
    provider_emulator.inject("truncated")
    spoiled = _types(_raw_events(client, RESPONSES, _body("hi", stream=True)))  # no error
    assert spoiled == clean[: len(spoiled)] and len(spoiled) < len(clean)
    assert "response.completed" not in spoiled


@pytest.mark.parametrize("kind", ["bad_event", "truncated"])
def test_fault_spoils_a_whole_body_answer_after_the_route_ran(
    client: httpx.Client, provider_emulator: ProviderEmulator, kind: str
) -> None:
    provider_emulator.inject(kind)
    r = client.post("/openai/v1/conversations", json={"items": []})
    assert r.status_code == 200 and not _is_json(r.text)
    assert provider_emulator.provider_state("openai"), "the route ran: state changed"


def test_fault_out_of_order_leaves_a_whole_body_answer(
    client: httpx.Client, provider_emulator: ProviderEmulator
) -> None:
    provider_emulator.inject("out_of_order")
    assert client.post(RESPONSES, json=_body()).json()["status"] == "completed"


def test_inject_validates_kind(provider_emulator: ProviderEmulator) -> None:
    assert "stream_break" in FAULT_KINDS
    with pytest.raises(ValueError, match="unknown fault kind"):
        provider_emulator.inject("teapot")
    with pytest.raises(ValueError, match="count"):
        provider_emulator.inject("500", count=0)


def test_runs_by_hand_and_prints_urls() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "langswarm_runtime.testing.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("provider emulator listening on http://127.0.0.1:")
            base = first.rsplit(" ", 1)[1].strip()
            urls = [proc.stdout.readline().strip() for _ in range(len(_providers()))]
            assert f"openai: {base}/openai" in urls
            r = httpx.post(base + RESPONSES, json=_body("demo"), timeout=5)
            assert r.json()["output"][0]["content"][0]["text"].startswith("echo: demo")
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def _providers() -> set[str]:
    from langswarm_runtime.testing.emulator.server import iter_routes

    return {p for p, _, _ in iter_routes()}
