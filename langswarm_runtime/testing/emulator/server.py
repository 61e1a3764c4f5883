"""The emulator core: a loopback HTTP/1.1 server, a route table that provider modules fill,
request recording, fault injection and in-memory server-side state.

Provider modules (``openai.py``, ``anthropic.py``, ...) in this package register handlers
with :func:`route` and their error body shape with :func:`error_shape`. Every provider is
mounted under its own path prefix (``/openai``, ``/anthropic``, ...) because several real
APIs share paths (OpenAI and Mistral both have ``/v1/chat/completions`` and
``/v1/conversations``); point an SDK at ``emu.url("openai")``.

Fault kinds (:data:`FAULT_KINDS`, injected with :meth:`ProviderEmulator.inject` or the
``x-emulator-fault`` request header):

- ``429``, ``500``, ``503``, ``529``, ``not_found``: that HTTP error, in the provider's
  own error shape, before the route runs (a 429 carries Retry-After).
- ``slow``: the answer waits ``delay`` seconds (2 by default); ``drop``: the connection is
  closed without an answer; ``malformed``: a 200 whose body is not JSON (the route never
  runs, so no server-side state changes).
- The rest spoil the route's own answer, after it ran (server-side state has changed, as
  when a real answer is lost on the way back):

  - ``stream_break``: about half of a stream's events, then the connection is cut (half
    of a whole-body answer, likewise).
  - ``bad_event``: one event in the middle of a stream carries data that is not JSON
    (its JSON cut short), the rest are intact; a whole-body answer is cut short instead
    (complete HTTP, invalid JSON).
  - ``truncated``: about half of a stream's events, then a clean end (the HTTP answer
    is complete, the stream's terminal event never comes); a whole-body answer is cut
    short as for ``bad_event``.
  - ``out_of_order``: the stream's terminal event (the last before a ``[DONE]``
    sentinel, if any) is sent second, right after the opening event, so the content
    comes after the end; every event is sent, and the HTTP answer is complete. A
    whole-body answer is sent unchanged.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from langswarm_runtime.testing.emulator._cache import PrefixCache
from langswarm_runtime.testing.emulator._wire import (
    _ERROR_SHAPES,
    _ROUTES,
    EmulatorHTTPError,
    EmulatorRequest,
    JSONResponse,
    RecordedRequest,
    SSEResponse,
    _default_error,
    _Route,
    count_words,
    echo_reply,
    error_shape,
    iter_routes,
    load_provider_modules,
    new_id,
    route,
    word_deltas,
)

__all__ = [
    "DEFAULT_PORT",
    "FAULT_KINDS",
    "EmulatorHTTPError",
    "EmulatorRequest",
    "JSONResponse",
    "ProviderEmulator",
    "RecordedRequest",
    "SSEResponse",
    "count_words",
    "echo_reply",
    "error_shape",
    "iter_routes",
    "main",
    "new_id",
    "route",
    "serve",
    "word_deltas",
]

#: Fault kinds understood by ``inject`` and the ``x-emulator-fault`` header.
FAULT_KINDS = frozenset(
    {"429", "500", "503", "529", "slow", "drop", "malformed", "not_found", "stream_break",
     "bad_event", "out_of_order", "truncated"}
)  # fmt: skip
#: Fault kinds that spoil the route's answer after it ran (see the module docstring).
_ANSWER_FAULTS = frozenset({"stream_break", "bad_event", "out_of_order", "truncated"})
FAULT_HEADER = "x-emulator-fault"
_REDACTED_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization", "cookie"}
)
_REDACTED_QUERY = frozenset({"key", "api_key", "apikey"})


@dataclass
class _Fault:
    kind: str
    path: re.Pattern[str] | None
    remaining: int
    retry_after: float | None
    delay: float | None
    #: Matching requests still to let through before this fault applies.
    skip: int = 0


# ---------------------------------------------------------------------------- the server


class ProviderEmulator:
    """Loopback server speaking the providers' wire APIs. Use as a context manager::

    with ProviderEmulator() as emu:
        client = AsyncOpenAI(base_url=emu.url("openai") + "/v1", api_key="k")
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        cached_tokens: int = 0,
        prompt_cache: bool = True,
    ) -> None:
        load_provider_modules()
        self.host = host
        self._port = port
        #: When non-zero: reported as cached input tokens in every usage block (capped at
        #: the input), instead of the prefix cache's count.
        self.cached_tokens = cached_tokens
        #: Whether stateless routes account prompt caching (see ``_cache``): automatic
        #: prefix caching, and Anthropic's ``cache_control`` breakpoints.
        self.prompt_cache = prompt_cache
        self.prefix_cache = PrefixCache()
        self.requests: list[RecordedRequest] = []
        self.lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._state: dict[str, dict[str, Any]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        #: Requests being handled (a ``slow`` one keeps running after its client left).
        self._busy = 0
        self._idle = threading.Condition(self.lock)

    # -- lifecycle
    def start(self) -> Self:
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_RequestHandler,), {"emulator": self})
        server = _Server((self.host, self._port), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self.lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:  # idle keep-alive connections would otherwise linger
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no provider prefix)."""
        return f"http://{self.host}:{self.port}"

    def url(self, provider: str) -> str:
        """Root URL of one provider's API, e.g. ``http://127.0.0.1:5000/openai``."""
        return f"{self.base_url}/{provider}"

    # -- state
    def provider_state(self, provider: str) -> dict[str, Any]:
        with self.lock:
            return self._state.setdefault(provider, {})

    def forget_conversations(self) -> None:
        """Drop all server-side state, as if the provider lost every conversation."""
        with self.lock:
            for state in self._state.values():
                state.clear()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until no request is being handled, so server-side state is final: a
        request whose client timed out or was killed still runs to its end, as on a real
        server. ``TimeoutError`` after ``timeout`` seconds."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._busy == 0, timeout):
                raise TimeoutError(f"emulator still busy after {timeout:g}s")

    def clear(self) -> None:
        """Forget recorded requests and pending injected faults."""
        with self.lock:
            self.requests.clear()
            self._faults.clear()

    # -- faults
    def inject(
        self,
        kind: str,
        *,
        path: str | None = None,
        count: int = 1,
        retry_after: float | None = None,
        delay: float | None = None,
        after: int = 0,
    ) -> None:
        """Make the next ``count`` requests whose path matches ``path`` (regex, searched;
        None = any) fail with ``kind``, once ``after`` such requests have passed (e.g.
        ``after=1``: the second call of a tool loop)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be >= 1")
        if after < 0:
            raise ValueError("after must be >= 0")
        with self.lock:
            fault = _Fault(kind, re.compile(path) if path else None, count, retry_after, delay)
            fault.skip = after
            self._faults.append(fault)

    def _take_fault(self, path: str, headers: dict[str, str]) -> _Fault | None:
        kind = headers.get(FAULT_HEADER)
        if kind:
            if kind not in FAULT_KINDS:
                return None
            ra = headers.get("x-emulator-retry-after")
            dl = headers.get("x-emulator-delay")
            return _Fault(kind, None, 1, float(ra) if ra else None, float(dl) if dl else None)
        with self.lock:
            for fault in self._faults:
                if fault.path is None or fault.path.search(path):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _dispatch(
        self, method: str, path: str
    ) -> tuple[_Route | None, re.Match[str] | None, str | None]:
        for r in _ROUTES:
            prefix = f"/{r.provider}"
            if not path.startswith(prefix + "/"):
                continue
            m = r.pattern.fullmatch(path[len(prefix) :])
            if m and r.method == method:
                return r, m, r.provider
        provider = path.split("/")[1] if path.count("/") >= 2 else None
        return None, None, provider

    def error_body(self, provider: str | None, status: int, message: str, code: str | None) -> Any:
        shape = _ERROR_SHAPES.get(provider or "", _default_error)
        return shape(status, message, code)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up mid-answer is routine here, not an error.
        pass


def _redact(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k in _REDACTED_HEADERS else v) for k, v in headers.items()}


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from real APIs
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would add ~40 ms to every answer and swamp the overhead benchmarks.
    disable_nagle_algorithm = True
    emulator: ProviderEmulator

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and demos read the recording instead

    def setup(self) -> None:
        super().setup()
        with self.emulator.lock:
            self.emulator._sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.emulator.lock:
                self.emulator._sockets.discard(self.connection)

    def _tracked(self) -> None:
        emu = self.emulator
        with emu.lock:
            emu._busy += 1
        try:
            self._handle()
        finally:
            with emu._idle:
                emu._busy -= 1
                emu._idle.notify_all()

    def do_GET(self) -> None:
        self._tracked()

    def do_POST(self) -> None:
        self._tracked()

    def do_DELETE(self) -> None:
        self._tracked()

    def do_PUT(self) -> None:
        self._tracked()

    def do_PATCH(self) -> None:
        self._tracked()

    def _handle(self) -> None:
        emu = self.emulator
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        route_, match, provider = emu._dispatch(self.command, path)
        fault = emu._take_fault(path, headers)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with emu.lock:
            emu.requests.append(
                RecordedRequest(
                    method=self.command,
                    path=path,
                    query={
                        k: ("<redacted>" if k in _REDACTED_QUERY else v) for k, v in query.items()
                    },
                    headers=_redact(headers),
                    json=body,
                    provider=provider,
                    fault=fault.kind if fault else None,
                )
            )
        if (
            fault is not None
            and fault.kind not in _ANSWER_FAULTS
            and self._apply_fault(fault, provider)
        ):
            return
        if raw and body is None:
            self._send_json(400, emu.error_body(provider, 400, "request body is not JSON", None))
            return
        if route_ is None or match is None or provider is None:
            self._send_json(
                404, emu.error_body(provider, 404, f"no route for {self.command} {path}", None)
            )
            return
        request = EmulatorRequest(
            self.command, path[len(provider) + 1 :], query, headers, body, provider, match, emu
        )
        try:
            response = route_.handler(request)
        except EmulatorHTTPError as err:
            self._send_json(err.status, emu.error_body(provider, err.status, err.message, err.code))
            return
        spoil = fault.kind if fault is not None and fault.kind in _ANSWER_FAULTS else None
        if isinstance(response, SSEResponse):
            self._send_sse(response, spoil)
        elif spoil in ("bad_event", "truncated"):
            payload = json.dumps(response.body).encode()
            cut = payload[: len(payload) // 2]
            self._send_raw(response.status, cut, "application/json", response.headers)
        else:
            broken = spoil == "stream_break"
            self._send_json(response.status, response.body, response.headers, broken=broken)

    # -- faults: True when the fault fully answered the request
    def _apply_fault(self, fault: _Fault, provider: str | None) -> bool:
        emu = self.emulator
        kind = fault.kind
        if kind == "slow":
            time.sleep(fault.delay if fault.delay is not None else 2.0)
            return False
        if kind == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        if kind == "malformed":
            self._send_raw(200, b'{"id": "broken", "output": [', "application/json")
            return True
        if kind == "429":
            ra = fault.retry_after if fault.retry_after is not None else 1.0
            body = emu.error_body(
                provider, 429, "Rate limit reached (emulated)", "rate_limit_exceeded"
            )
            self._send_json(429, body, {"retry-after": _fmt_seconds(ra)})
            return True
        if kind == "not_found":
            body = emu.error_body(provider, 404, "Conversation not found (emulated)", "not_found")
            self._send_json(404, body)
            return True
        status = int(kind)  # 500, 503, 529
        body = emu.error_body(provider, status, f"Server error {status} (emulated)", "server_error")
        self._send_json(status, body)
        return True

    # -- writers
    def _send_raw(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        *,
        broken: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-request-id", new_id("req_"))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if broken:  # promise the whole body, deliver half, hang up
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self._hang_up()
            return
        # Headers and body in one write: one packet for small answers.
        self._headers_buffer.append(b"\r\n" + payload)  # type: ignore[attr-defined]
        self.flush_headers()

    def _send_json(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        broken: bool = False,
    ) -> None:
        payload = json.dumps(body).encode()
        self._send_raw(status, payload, "application/json", headers, broken=broken)

    def _send_sse(self, response: SSEResponse, spoil: str | None) -> None:
        events = _spoiled(list(response.events), spoil)
        broken = spoil == "stream_break"
        self.send_response(response.status)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", new_id("req_"))
        for k, v in response.headers.items():
            self.send_header(k, v)
        self.end_headers()
        for event, data in events:
            text = data if isinstance(data, str) else json.dumps(data)
            frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
            chunk = frame.encode()
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        if broken:
            self._hang_up()
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _spoiled(
    events: list[tuple[str | None, Any]], spoil: str | None
) -> list[tuple[str | None, Any]]:
    """A stream's events as a fault kind spoils them (see the module docstring)."""
    if spoil in ("stream_break", "truncated"):  # roughly half the events (then a hang-up)
        return events[: max(1, len(events) // 2)]
    # The ``[DONE]`` sentinel some wires end with is not an event of the reply.
    real = len(events) - 1 if events and events[-1][1] == "[DONE]" else len(events)
    if spoil == "bad_event" and real:
        event, data = events[real // 2]
        text = data if isinstance(data, str) else json.dumps(data)
        events[real // 2] = (event, text[: max(1, len(text) // 2)])
    elif spoil == "out_of_order" and real > 2:
        events.insert(1, events.pop(real - 1))
    return events


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# ---------------------------------------------------------------------------- by hand


#: Where ``langswarm-run emulator`` (and ``python -m langswarm_runtime.testing.emulator``)
#: listens unless told otherwise, and where ``configs/offline.yaml`` points.
DEFAULT_PORT = 8765


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    print_fn: Callable[[str], None] = print,
) -> None:
    """Run the emulator in the foreground until Ctrl-C (for offline demos). A port that
    cannot be bound raises ``OSError`` before anything is printed."""
    emu = ProviderEmulator(host, port).start()
    print_fn(f"provider emulator listening on {emu.base_url}")
    for provider in sorted({p for p, _, _ in iter_routes()}):
        print_fn(f"  {provider}: {emu.url(provider)}")
    print_fn("Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {value}")
    return value


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``python -m langswarm_runtime.testing.emulator [--host H] [--port N]``. A busy or
    forbidden port is one line on stderr and exit code 2."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m langswarm_runtime.testing.emulator",
        description="Run the loopback provider emulator in the foreground until Ctrl-C.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT,
        help="port (default: %(default)s; 0: any free one)",
    )
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = " (is an emulator already running? pick another with --port)"
        print(
            f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: {reason}{hint}",
            file=sys.stderr,
        )
        return 2
    return 0
