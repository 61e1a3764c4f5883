"""A small Model Context Protocol server, written with the SDK's own server API, that the
tests run as a subprocess: ``python mcp_server.py`` speaks stdio, ``python mcp_server.py
--http PORT`` streamable HTTP on 127.0.0.1:PORT (path ``/mcp``).

Its tools say where they run, so a test can tell them apart: ``whoami`` returns the
``MCP_DEMO_GREETING`` environment variable and the working directory; ``headers``
returns the HTTP request's ``x-demo`` header. With ``MCP_DEMO_PIDFILE`` set, the server
writes its process id there when it starts (a line per start).
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("calc")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(name="shout.loud")
def shout(text: str) -> str:
    """The text in capitals (a name with a dot, which providers refuse)."""
    return text.upper()


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"refused: {reason}")


@server.tool()
async def slow(seconds: float) -> str:
    """Answers after a while."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def whoami() -> str:
    """Where the server runs."""
    return f"{os.environ.get('MCP_DEMO_GREETING', 'no greeting')} in {os.getcwd()}"


@server.tool()
def headers(ctx: Context) -> str:
    """The x-demo header of the HTTP request (stdio has none)."""
    request = ctx.request_context.request
    found = request.headers.get("x-demo") if request is not None else None
    return found or "no header"


if __name__ == "__main__":
    pidfile = os.environ.get("MCP_DEMO_PIDFILE")
    if pidfile:
        with open(pidfile, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
    if sys.argv[1:2] == ["--http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
