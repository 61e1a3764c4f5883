"""A loopback TCP proxy a test controls: cut it to simulate a lost server, restore it to
bring the server "back", without touching the shared server itself. Storage plugin
authors use it for their fault tests: ``from langswarm_runtime.testing.tcp_proxy import
TcpProxy``.

It can also lose one exchange, for the ambiguous cases a real network produces:
``lose_reply(b"COMMIT")`` lets the next request containing ``COMMIT`` reach the server,
throws the server's answer away and cuts that connection (the request certainly ran, the
client cannot know); ``lose_request(b"COMMIT")`` cuts the connection instead of
forwarding the request (it certainly did not run, the client cannot know either).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

__all__ = ["TcpProxy"]


@dataclass
class _Fault:
    """A one-shot fault armed on the proxy."""

    kind: str  # "reply" (forward, drop the answer, cut) or "request" (drop and cut)
    match: bytes
    skip: int


@dataclass(eq=False)  # compared (and hashed) by identity: links live in a set
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    #: Set when this link's next answer from the server is to be dropped.
    lose_answer: bool = False

    def abort(self) -> None:
        for w in (self.client, self.server):
            w.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``. ``cut()`` drops every open connection and
    refuses new ones; ``restore()`` listens again on the same port. ``lose_reply()`` and
    ``lose_request()`` arm a one-shot fault on the next matching request; ``faults`` counts
    the faults that fired, so a test can check its fault really happened."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        #: How many armed faults have fired.
        self.faults = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fault: _Fault | None = None

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def lose_reply(self, match: bytes = b"", *, skip: int = 0) -> None:
        """Arm: the next client request whose bytes (one read of them) contain ``match``,
        after ``skip`` such requests passed normally, is forwarded to the server; the
        server's answer is discarded, then that connection is cut. The cut waits for the
        answer, so the server has certainly processed the request. Request-reply protocols
        only (the client waits for each answer, as the PostgreSQL and Redis clients do)."""
        self._fault = _Fault("reply", match, skip)

    def lose_request(self, match: bytes = b"", *, skip: int = 0) -> None:
        """Arm: the next client request containing ``match`` (after ``skip`` such) is not
        forwarded; that connection is cut instead, so the server never sees it."""
        self._fault = _Fault("request", match, skip)

    def _take_fault(self, data: bytes) -> str | None:
        """The kind of fault that fires on this chunk of client bytes, if any."""
        fault = self._fault
        if fault is None or fault.match not in data:
            return None
        if fault.skip > 0:
            fault.skip -= 1
            return None
        self._fault = None
        self.faults += 1
        return fault.kind

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        pumps = [
            asyncio.ensure_future(self._upstream(reader, link)),
            asyncio.ensure_future(self._downstream(up_reader, link)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        link.abort()
        self._links.discard(link)

    async def _upstream(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Client to server, where armed faults fire."""
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                kind = self._take_fault(data)
                if kind == "request":
                    link.abort()
                    return
                if kind == "reply":
                    link.lose_answer = True
                link.server.write(data)
                await link.server.drain()

    async def _downstream(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Server to client; drops the answer to a request armed with ``lose_reply``."""
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if link.lose_answer:
                    link.abort()  # the server answered: it ran the request
                    return
                link.client.write(data)
                await link.client.drain()

    async def cut(self) -> None:
        """Drop all connections (as a crashed server would) and refuse new ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.abort()
        self._links.clear()
        await asyncio.sleep(0.05)  # let the pumps notice

    async def restore(self) -> None:
        """Accept connections again, on the same port."""
        await self.start()

    async def close(self) -> None:
        await self.cut()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
