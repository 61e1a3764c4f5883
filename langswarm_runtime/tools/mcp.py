"""The ``mcp`` tool type: the tools of a Model Context Protocol server, through the
official ``mcp`` SDK (``pip install 'langswarm-runtime[mcp]'``).

```yaml
tools:
  files: {type: mcp, command: [npx, -y, "@modelcontextprotocol/server-filesystem", .]}
  search: {type: mcp, url: "https://mcp.example.com/mcp", prefix: search_}
```

One entry gives one tool per server tool, named ``<prefix><tool>``. The SDK is imported
only when an entry is first used. The connection (a subprocess over stdio, or a
streamable HTTP session) opens on first use and stays open until the runtime closes.

The client runs on an event loop of its own, in a daemon thread: the runtime asks for
a session's tools synchronously (their specs are recorded with the session), and the
SDK's transports must be entered and left in one task, which a long-lived task on a
private loop gives whatever loop (or thread) the sessions run on. Tool calls from a
session's loop wait on that loop without blocking.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from langswarm_runtime.errors import ConfigError, PluginError
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.tools.spec import ToolFailed, ToolSpec

__all__ = ["McpTool", "McpToolConfig", "McpToolSet"]

_T = TypeVar("_T")
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_PAGES = 100


class McpToolConfig(BaseModel):
    """Options of a ``type: mcp`` entry: ``command`` (stdio) or ``url`` (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    #: The server's command line, run as a subprocess spoken to over stdio.
    command: list[str] | None = Field(default=None, min_length=1)
    #: Environment variables for the subprocess, over a minimal inherited set
    #: (``PATH``, ``HOME``...: the SDK's default), so secrets are passed on purpose only.
    env: dict[str, SecretStr] = Field(default_factory=dict)
    #: Working directory of the subprocess.
    cwd: str | None = None
    #: The endpoint of a server speaking streamable HTTP.
    url: str | None = None
    #: HTTP headers sent with every request (an ``Authorization`` header, say).
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    #: Put before each server tool's name (``fs_`` makes ``read_file`` ``fs_read_file``).
    prefix: str = Field(default="", pattern=r"^[a-zA-Z0-9_-]*$", max_length=32)
    #: Seconds to start or reach the server and list its tools.
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpToolConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("set either command (a server run over stdio) or url"
                             " (streamable HTTP), not both")
        if self.url is not None:
            if not re.match(r"^https?://", self.url):
                raise ValueError("url must start with http:// or https://")
            if self.env or self.cwd is not None:
                raise ValueError("env and cwd are for a command; an url takes headers")
        elif self.headers:
            raise ValueError("headers are for an url; a command takes env and cwd")
        return self


class McpTool:
    """One tool of an MCP server: ``spec`` as the server describes it, and ``run``
    calling it there. A result the server marks ``isError`` raises ``ToolFailed``, so the
    model reads the server's message as an error result."""

    def __init__(self, toolset: McpToolSet, remote_name: str, spec: ToolSpec) -> None:
        self.spec = spec
        self.remote_name = remote_name
        self._toolset = toolset

    @property
    def name(self) -> str:
        return self.spec.name

    async def run(self, arguments: dict[str, Any]) -> str:
        return await self._toolset.call(self.remote_name, arguments)

    def __repr__(self) -> str:
        return f"<McpTool {self.name}>"


class McpToolSet:
    """The connection to one MCP server and the tools it lists (once, on first use)."""

    def __init__(self, config: McpToolConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._tools: list[McpTool] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        # Owned by the private loop:
        self._client: Any = None
        self._holder: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._connecting: asyncio.Lock | None = None

    @property
    def where(self) -> str:
        """The server, for messages: its program or its URL's host and path (never
        arguments, query, user info, env or headers, which may hold secrets)."""
        if self.config.command is not None:
            return f"command {os.path.basename(self.config.command[0])}"
        parts = urlsplit(self.config.url or "")
        return f"url {parts.scheme}://{parts.hostname or ''}" + (
            f":{parts.port}" if parts.port else "") + parts.path

    # -- the caller's side ----------------------------------------------------------------
    def list_tools(self) -> list[McpTool]:
        """The server's tools (connecting and listing on the first call; blocks until
        then, ``timeout`` at most). ``PluginError`` when the server cannot be reached."""
        with self._lock:
            if self._tools is None:
                future = self._submit(self._list())
                try:
                    listed = future.result(self.config.timeout + 5)
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    raise self._unreachable(TimeoutError("no answer")) from None
                self._tools = [McpTool(self, remote, spec) for remote, spec in listed]
            return list(self._tools)

    async def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Call the server's tool ``name``; its text content, joined. Cancelling the
        caller (the runner's ``tool_timeout``) cancels the call."""
        return await asyncio.wrap_future(self._submit(self._call(name, arguments)))

    async def close(self) -> None:
        """Close the connection (the subprocess exits) and stop the private loop."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._disconnect(), loop))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, 10)

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        loop = self._ensure_loop(coro)
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _ensure_loop(self, coro: Coroutine[Any, Any, Any]) -> asyncio.AbstractEventLoop:
        if self._closed:
            coro.close()
            raise PluginError(f"MCP server ({self.where}): its tools were closed with the runtime")
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_run_loop, args=(loop,), name="langswarm-mcp",
                                      daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _unreachable(self, exc: BaseException) -> PluginError:
        return PluginError(f"MCP server ({self.where}) cannot be used: {_describe(exc)}")

    # -- the private loop's side ----------------------------------------------------------
    async def _list(self) -> list[tuple[str, ToolSpec]]:
        try:
            async with asyncio.timeout(self.config.timeout):
                client = await self._connected()
                listed: list[Any] = []
                cursor: str | None = None
                for _ in range(_MAX_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except (ConfigError, PluginError):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the SDK or the server raised
            raise self._unreachable(exc) from None
        out: list[tuple[str, ToolSpec]] = []
        seen: set[str] = set()
        for item in listed:
            name = (self.config.prefix + _INVALID_NAME_CHARS.sub("_", item.name))[:64]
            if name in seen or not name:
                continue
            seen.add(name)
            parameters = dict(item.input_schema or {})
            parameters.pop("title", None)
            parameters.setdefault("type", "object")
            parameters.setdefault("properties", {})
            out.append((item.name, ToolSpec(
                name=name,
                description=item.description or item.title or "",
                parameters=parameters,
            )))
        return out

    async def _call(self, name: str, arguments: dict[str, Any]) -> str:
        client = await self._connected()
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        try:
            result = await client.call_tool(name, arguments)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._drop()
                raise ToolFailed("the MCP server closed the connection; the next call"
                                 " reconnects") from None
            raise ToolFailed(str(exc) or f"MCP error {exc.code}") from None  # the server's
        except Exception:
            # A transport failure: the call may or may not have run, so it is not retried;
            # the next call starts from a new connection.
            self._drop()
            raise
        text = result_text(result)
        if result.is_error:
            raise ToolFailed(text or f"tool {name} reported an error")
        return text

    async def _connected(self) -> Any:
        """The open client: connects on first use, and again when the connection ended
        (the server exited, say)."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            holder = self._holder
            if self._client is not None and holder is not None and not holder.done():
                return self._client
            self._client = None
            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._holder = asyncio.create_task(self._hold(ready, self._stop))
            try:
                self._client = await ready
            except BaseException:
                if not self._holder.done():
                    self._holder.cancel()
                raise
            return self._client

    def _drop(self) -> None:
        """Forget a connection that failed: its task closes it, the next call opens anew."""
        if self._stop is not None:
            self._stop.set()
        self._client = None

    async def _hold(self, ready: asyncio.Future[Any], stop: asyncio.Event) -> None:
        # Enters and leaves the SDK's client in this one task, as its transports require.
        try:
            async with self._new_client() as client:
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else
                                    ConnectionError("the connection was cancelled"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if self._holder is asyncio.current_task():
                self._client = None

    async def _disconnect(self) -> None:
        holder, stop = self._holder, self._stop
        if holder is None or stop is None:
            return
        stop.set()
        try:
            async with asyncio.timeout(10):
                await asyncio.shield(holder)
        except (TimeoutError, asyncio.CancelledError):
            holder.cancel()
        except Exception:  # noqa: BLE001,S110 - closing: a connection that failed is closed
            pass

    def _new_client(self) -> Any:
        try:
            from mcp import Client
        except ImportError:
            raise ConfigError(
                "the mcp tool type needs the mcp SDK (version 2 or later): pip install"
                " 'langswarm-runtime[mcp]' (from a clone: pip install '.[mcp]')"
            ) from None
        config = self.config
        if config.command is not None:
            from mcp import StdioServerParameters

            params = StdioServerParameters(
                command=config.command[0],
                args=list(config.command[1:]),
                env={k: v.get_secret_value() for k, v in config.env.items()} or None,
                cwd=config.cwd,
            )
            return Client(params)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        assert config.url is not None
        http = httpx2.AsyncClient(
            headers={k: v.get_secret_value() for k, v in config.headers.items()},
            timeout=httpx2.Timeout(config.timeout, read=300.0),
        )
        return _OwnedHttp(http, Client(streamable_http_client(config.url, http_client=http)))


class _OwnedHttp:
    """The SDK's client over an HTTP client we made (for the headers), closing both."""

    def __init__(self, http: Any, client: Any) -> None:
        self._http = http
        self._client = client

    async def __aenter__(self) -> Any:
        await self._http.__aenter__()
        try:
            return await self._client.__aenter__()
        except BaseException:
            await self._http.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._client.__aexit__(*exc)
        finally:
            await self._http.__aexit__(None, None, None)


def result_text(result: Any) -> str:
    """What the model reads of a ``CallToolResult``: the text blocks joined by newlines;
    other blocks named (``[image image/png]``); the structured content as JSON when
    there is no text."""
    parts: list[str] = []
    for block in result.content or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} {block.mime_type}]")
        elif kind == "resource":
            text = getattr(block.resource, "text", None)
            parts.append(text if text is not None else f"[resource {block.resource.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The private loop's thread: runs until stopped, then finishes what is left."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _describe(exc: BaseException) -> str:
    # anyio's task groups wrap the cause in ExceptionGroups: name the first real one.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def mcp_tools(config: McpToolConfig) -> McpToolSet:
    """The tool set of one ``type: mcp`` entry (nothing is started until it is used)."""
    from langswarm_runtime.providers._common import install_hint, sdk_available

    if not sdk_available("mcp"):
        raise ConfigError(f"the mcp tool type needs the mcp SDK: {install_hint('mcp')}")
    return McpToolSet(config)


@hookimpl
def register_tools(register: Any) -> None:
    register("mcp", mcp_tools, McpToolConfig)
