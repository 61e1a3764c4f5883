"""``type: mcp`` tools: a real MCP server (tests/data/mcp_server.py, written with the SDK's
own server API) run as a subprocess, over stdio and over streamable HTTP, used by
sessions built from swarm.yaml with the offline echo provider."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LoopTicker  # tests/conftest.py

from langswarm_runtime import SessionManager
from langswarm_runtime.config import build_config
from langswarm_runtime.errors import ConfigError, PluginError
from langswarm_runtime.runtime import Runtime

SERVER = Path(__file__).resolve().parent / "data" / "mcp_server.py"
NONE = {"LANGSWARM_LOAD_PLUGINS": ""}


def write(tmp_path: Path, text: str, name: str = "swarm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def started(pidfile: Path) -> list[int]:
    """Process ids of the servers started so far (each writes its own at start)."""
    if not pidfile.exists():
        return []
    return [int(line) for line in pidfile.read_text(encoding="utf-8").split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def stdio_swarm(tmp_path: Path) -> tuple[Path, Path]:
    """A swarm.yaml whose echo entry gets the stdio server's tools (prefix ``calc_``)."""
    workdir = tmp_path / "server-cwd"
    workdir.mkdir()
    pidfile = tmp_path / "pids"
    path = write(tmp_path, f"""
        storage: {{type: sqlite, path: "{tmp_path / 'sessions.db'}"}}
        defaults:
          provider: local
          tool_timeout: 2
        providers:
          local: {{type: echo, tools: [calc]}}
        tools:
          calc:
            type: mcp
            command: ["{sys.executable}", "{SERVER}"]
            cwd: "{workdir}"
            env: {{MCP_DEMO_GREETING: hello, MCP_DEMO_PIDFILE: "{pidfile}"}}
            prefix: calc_
        """)
    return path, pidfile


async def test_stdio_server_tools_in_a_session(stdio_swarm: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    path, pidfile = stdio_swarm
    manager = SessionManager.from_config(path, environ=NONE)
    assert started(pidfile) == []  # nothing runs until a session needs the tools
    session = await manager.create_session(user_id="u1")
    [pid] = started(pidfile)
    specs = {t.name: t for t in session.tools}
    assert sorted(specs) == ["calc_add", "calc_fail", "calc_headers", "calc_shout_loud",
                             "calc_slow", "calc_whoami"]
    add = specs["calc_add"]
    assert add.description == "Add two integers."
    assert add.parameters["required"] == ["a", "b"]
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert "title" not in add.parameters

    reply = await session.send_message(
        'call calc_add {"a": 2, "b": 40}\ncall calc_shout_loud {"text": "hey"}\n'
        'call calc_whoami\ncall calc_fail {"reason": "no"}'
    )
    assert reply.content.startswith(
        "tool calc_add returned 42; tool calc_shout_loud returned HEY; "
        f"tool calc_whoami returned hello in {tmp_path / 'server-cwd'}; tool calc_fail returned "
    )
    assert "refused: no" in reply.content
    history = await session.get_history()
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    calls, results = history[1].tool_calls, history[2].tool_results
    assert [c.name for c in calls] == ["calc_add", "calc_shout_loud", "calc_whoami", "calc_fail"]
    assert [r.call_id for r in results] == [c.id for c in calls]
    assert [r.is_error for r in results] == [False, False, False, True]
    assert results[0].content == "42"

    # A second session shares the connection: no second server.
    other = await manager.create_session(user_id="u2")
    reply = await other.send_message('call calc_add {"a": 1, "b": 1}')
    assert reply.content == "tool calc_add returned 2"
    assert started(pidfile) == [pid]
    await manager.close()
    assert wait_gone(pid), "the server outlived Runtime.close()"
    await manager.close()  # idempotent


async def test_hydrated_session_gets_the_server_tools_back(stdio_swarm: tuple[Path, Path]) -> None:
    path, pidfile = stdio_swarm
    async with SessionManager.from_config(path, environ=NONE) as manager:
        session = await manager.create_session(user_id="u1")
        await session.send_message('call calc_add {"a": 1, "b": 2}')
        session_id = session.session_id
    [first] = started(pidfile)
    assert wait_gone(first)
    # A new manager on the same SQLite file: the record names calc_add, and the entry with
    # prefix calc_ gives it; the server starts again.
    async with SessionManager.from_config(path, environ=NONE) as manager:
        hydrated = await manager.get_session(session_id)
        assert hydrated is not None
        reply = await hydrated.send_message('call calc_add {"a": 20, "b": 22}')
        assert reply.content == "tool calc_add returned 42"
        assert reply.tool_calls == []
        history = await hydrated.get_history()
        assert [r.content for m in history for r in m.tool_results] == ["3", "42"]
        assert len(started(pidfile)) == 2


async def test_a_slow_call_times_out_and_the_connection_stays_usable(
    stdio_swarm: tuple[Path, Path],
) -> None:
    path, _ = stdio_swarm
    async with SessionManager.from_config(path, environ=NONE) as manager:
        session = await manager.create_session(user_id="u1")
        reply = await session.send_message('call calc_slow {"seconds": 30}')
        assert reply.content == "tool calc_slow returned tool calc_slow timed out after 2s"
        reply = await session.send_message('call calc_slow {"seconds": 0.1}')
        assert reply.content == "tool calc_slow returned slept 0.1"


async def test_a_server_that_died_is_started_again(stdio_swarm: tuple[Path, Path]) -> None:
    path, pidfile = stdio_swarm
    async with SessionManager.from_config(path, environ=NONE) as manager:
        session = await manager.create_session(user_id="u1")
        [pid] = started(pidfile)
        os.kill(pid, signal.SIGKILL)
        assert wait_gone(pid)
        reply = await session.send_message('call calc_add {"a": 1, "b": 1}')
        assert reply.content == (
            "tool calc_add returned the MCP server closed the connection; the next call"
            " reconnects"
        )
        reply = await session.send_message('call calc_add {"a": 1, "b": 1}')
        assert reply.content == "tool calc_add returned 2"
        assert len(started(pidfile)) == 2


async def test_concurrent_calls_share_one_connection(stdio_swarm: tuple[Path, Path]) -> None:
    path, pidfile = stdio_swarm
    async with SessionManager.from_config(path, environ=NONE) as manager:
        sessions = [await manager.create_session(user_id=f"u{i}") for i in range(3)]
        replies = await asyncio.gather(*(
            s.send_message(f'call calc_slow {{"seconds": 0.3}}\ncall calc_add {{"a": {i}, "b": 1}}')
            for i, s in enumerate(sessions)
        ))
        assert [r.content for r in replies] == [
            f"tool calc_slow returned slept 0.3; tool calc_add returned {i + 1}" for i in range(3)
        ]
        assert len(started(pidfile)) == 1


# -- streamable HTTP ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """The server on a free loopback port, as a subprocess; yields its URL."""
    port = free_port()
    log = (tmp_path / "server.log").open("w", encoding="utf-8")
    process = subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError("the MCP server did not start: "
                                       + (tmp_path / "server.log").read_text()) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


async def test_streamable_http_server_tools_in_a_session(http_server: str, tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        storage: {{type: sqlite, path: "{tmp_path / 'sessions.db'}"}}
        defaults: {{tools: [remote]}}
        tools:
          remote:
            type: mcp
            url: "{http_server}"
            headers: {{x-demo: "${{DEMO_HEADER}}"}}
        """)
    environ = {**NONE, "DEMO_HEADER": "from-the-config"}
    async with SessionManager.from_config(path, environ=environ) as manager:
        assert manager.config.redacted()["tools"]["remote"]["headers"] == {
            "x-demo": "**********"}
        session = await manager.create_session(user_id="u1")
        assert {t.name for t in session.tools} >= {"add", "headers", "shout_loud"}
        reply = await session.send_message('call headers\ncall add {"a": 3, "b": 4}')
        assert reply.content == "tool headers returned from-the-config; tool add returned 7"
        reply = await session.send_message('call add {"a": "x"}')
        [result] = (await session.get_history())[-2].tool_results
        assert result.is_error and "validation error" in result.content
        session_id = session.session_id
    async with SessionManager.from_config(path, environ=environ) as manager:
        hydrated = await manager.get_session(session_id)
        assert hydrated is not None
        reply = await hydrated.send_message('call add {"a": 1, "b": 1}')
        assert reply.content == "tool add returned 2"


# -- failures ----------------------------------------------------------------------------------
def runtime_with(entry: dict[str, object]) -> Runtime:
    config, pm = build_config({"storage": {"type": "memory"}, "tools": {"t": entry}},
                              environ=NONE)
    return Runtime(config=config, plugins=pm)


async def test_a_server_that_cannot_start_is_a_plugin_error() -> None:
    runtime = runtime_with({"type": "mcp",
                            "command": ["lsdemo-no-such-mcp-server", "--token", "s3cret"]})
    runtime.validate()  # nothing is started to validate
    with pytest.raises(PluginError) as err:
        runtime.tools_named(["t"])
    text = str(err.value)
    assert text.startswith("tools.t: MCP server (command lsdemo-no-such-mcp-server)")
    assert "s3cret" not in text and "\n" not in text
    await runtime.close()


async def test_an_unreachable_url_is_a_plugin_error_within_the_timeout() -> None:
    url = f"http://user:pw@127.0.0.1:{free_port()}/mcp?key=s3cret"
    runtime = runtime_with({"type": "mcp", "url": url, "timeout": 5})
    began = time.monotonic()
    with pytest.raises(PluginError) as err:
        runtime.tools_named(["t"])
    assert time.monotonic() - began < 15
    text = str(err.value)
    assert f"MCP server (url http://127.0.0.1:{url.split(':')[3].split('/')[0]}/mcp)" in text
    assert "s3cret" not in text and "pw" not in text
    await runtime.close()


async def test_without_the_sdk_the_entry_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langswarm_runtime.providers import _common

    monkeypatch.setattr(_common, "sdk_available", lambda module: module != "mcp")
    runtime = runtime_with({"type": "mcp", "command": ["x"]})
    with pytest.raises(ConfigError) as err:
        runtime.validate()
    assert err.value.key_path == "tools.t"
    assert "pip install 'langswarm-runtime[mcp]'" in err.value.message


async def test_open_tools_lists_a_server_without_holding_up_the_event_loop(
    stdio_swarm: tuple[Path, Path],
) -> None:
    path, pidfile = stdio_swarm
    runtime = Runtime.from_file(path, environ=NONE)
    async with LoopTicker() as loop:
        await runtime.open_tools(provider="local")
    assert loop.ticks >= 10  # the loop ran while the server started (about a second)
    assert len(started(pidfile)) == 1
    began = time.monotonic()
    tools = runtime.tools_for("local")  # built already: no wait
    assert time.monotonic() - began < 0.05
    assert "calc_add" in {t.spec.name for t in tools}
    await runtime.open_tools(["calc_add"])
    assert len(started(pidfile)) == 1
    await runtime.close()
