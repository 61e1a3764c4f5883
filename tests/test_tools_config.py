"""Tools from swarm.yaml: the ``tools:`` block, ``python`` entries, references from
``defaults.tools`` and provider entries, hydration by name, errors, the JSON Schema, and
tool types from plugins (the ``register_tools`` hook)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langswarm_runtime import SessionManager, hookimpl
from langswarm_runtime.config import build_config, config_json_schema, load_config
from langswarm_runtime.errors import ConfigError, PluginError
from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.runtime import Runtime
from langswarm_runtime.session.parts import ToolResult
from langswarm_runtime.tools.spec import Tool, ToolSpec

NONE = {"LANGSWARM_LOAD_PLUGINS": ""}

TOOLS_MODULE = '''
from langswarm_runtime import tool

CALLS = []


def weather(city: str, unit: str = "C") -> str:
    """Current weather for a city.

    Args:
        city: Name of the city.
    """
    CALLS.append(city)
    return f"sunny in {city}, 21 {unit}"


@tool(name="add_numbers", description="Adds two numbers.")
async def add(a: int, b: int) -> int:
    return a + b


def boom() -> str:
    """Always raises."""
    raise RuntimeError("the tool broke")


def varargs(*items: str) -> str:
    return ""


NOT_CALLABLE = 42


class Box:
    @staticmethod
    def size(side: int) -> int:
        """The area of a square box."""
        return side * side
'''


@pytest.fixture
def tools_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module of tool functions (``lsdemo_tools``), fresh for each test."""
    (tmp_path / "lsdemo_tools.py").write_text(TOOLS_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("lsdemo_tools", None)
    yield "lsdemo_tools"
    sys.modules.pop("lsdemo_tools", None)


def write(tmp_path: Path, text: str, name: str = "swarm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


SWARM = """
version: 1
storage: {type: sqlite, path: sessions.db}
defaults:
  provider: local
  tools: [weather]
providers:
  local:
    type: echo
    tools: [sum]
  other: {type: echo}
tools:
  weather: {type: python, function: "lsdemo_tools:weather"}
  sum: {type: python, function: "lsdemo_tools:add"}
  area:
    type: python
    function: "lsdemo_tools:Box.size"
    name: box_area
    description: Area of a box.
"""


def manager_for(path: Path) -> SessionManager:
    return SessionManager.from_config(path, environ=NONE)


# -- sessions from swarm.yaml ----------------------------------------------------------------
async def test_session_gets_defaults_and_provider_tools(tmp_path: Path, tools_module: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, SWARM)
    async with manager_for(path) as manager:
        session = await manager.create_session(user_id="u1")
        assert [t.name for t in session.tools] == ["weather", "add_numbers"]
        weather = session.tools[0]
        assert weather.description == "Current weather for a city."
        assert weather.parameters["required"] == ["city"]
        assert weather.parameters["properties"]["city"]["description"] == "Name of the city."
        # Another entry gets defaults.tools only; "area" is referenced by nobody.
        other = await manager.create_session(user_id="u1", provider="other")
        assert [t.name for t in other.tools] == ["weather"]

        reply = await session.send_message(
            'call weather {"city": "Paris"}\ncall add_numbers {"a": 2, "b": 40}'
        )
        assert reply.content == (
            "tool weather returned sunny in Paris, 21 C; tool add_numbers returned 42"
        )
        assert reply.tool_calls == []
        history = await session.get_history()
        assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
        calls = history[1].tool_calls
        assert [(c.name, c.arguments) for c in calls] == [
            ("weather", {"city": "Paris"}), ("add_numbers", {"a": 2, "b": 40})]
        results = history[2].tool_results
        assert [(r.call_id, r.content, r.is_error) for r in results] == [
            (calls[0].id, "sunny in Paris, 21 C", False), (calls[1].id, "42", False)]
    assert sys.modules[tools_module].CALLS == ["Paris"]


async def test_hydrated_session_gets_its_implementations_back_by_name(
    tmp_path: Path, tools_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, SWARM)
    async with manager_for(path) as manager:
        session = await manager.create_session(user_id="u1")
        session_id = session.session_id
    # A new manager on the same SQLite file: the record names the tools, swarm.yaml has them.
    async with manager_for(path) as manager:
        hydrated = await manager.get_session(session_id)
        assert hydrated is not None
        assert [t.name for t in hydrated.tools] == ["weather", "add_numbers"]
        reply = await hydrated.send_message('call add_numbers {"a": 1, "b": 2}')
        assert reply.content == "tool add_numbers returned 3"
        assert reply.tool_calls == []
    # Without the entries, the same call goes to the caller.
    bare = write(tmp_path, """
        storage: {type: sqlite, path: sessions.db}
        providers: {local: {type: echo}}
        """, "bare.yaml")
    async with manager_for(bare) as manager:
        hydrated = await manager.get_session(session_id)
        assert hydrated is not None
        reply = await hydrated.send_message('call add_numbers {"a": 1, "b": 2}')
        [call] = reply.tool_calls
        assert call.name == "add_numbers"
        reply = await hydrated.send_tool_results([ToolResult(call_id=call.id, content="3!")])
        assert reply.content == "tool add_numbers returned 3!"


async def test_a_failing_python_tool_is_an_error_result(tmp_path: Path, tools_module: str) -> None:
    config, pm = build_config({
        "storage": {"type": "memory"},
        "defaults": {"tools": ["boom"]},
        "tools": {"boom": {"type": "python", "function": f"{tools_module}:boom"}},
    }, environ=NONE)
    async with SessionManager(config=config, plugins=pm) as manager:
        session = await manager.create_session(user_id="u")
        reply = await session.send_message("call boom")
        assert reply.content == "tool boom returned tool boom failed: RuntimeError: the tool broke"
        [result] = (await session.get_history())[2].tool_results
        assert result.is_error


def test_name_and_description_overrides(tmp_path: Path, tools_module: str) -> None:
    config, pm = build_config({
        "storage": {"type": "memory"},
        "tools": {
            "area": {"type": "python", "function": f"{tools_module}:Box.size",
                     "name": "box_area", "description": "Area of a box."},
            "plain": {"type": "python", "function": f"{tools_module}:Box.size"},
            "sum": {"type": "python", "function": f"{tools_module}:add"},
            "sum2": {"type": "python", "function": f"{tools_module}:add", "name": "plus"},
        },
    }, environ=NONE)
    runtime = Runtime(config=config, plugins=pm)
    area, plain, total, plus = runtime.tools_named(["area", "plain", "sum", "sum2"])
    assert (area.spec.name, area.spec.description) == ("box_area", "Area of a box.")
    assert (plain.spec.name, plain.spec.description) == ("size", "The area of a square box.")
    # A @tool target keeps its own name and description unless the entry overrides them.
    assert (total.spec.name, total.spec.description) == ("add_numbers", "Adds two numbers.")
    assert (plus.spec.name, plus.spec.description) == ("plus", "Adds two numbers.")
    assert isinstance(area, Tool) and area.spec.parameters["required"] == ["side"]


def test_entries_are_built_once_and_only_when_needed(tmp_path: Path, tools_module: str) -> None:
    config, pm = build_config({
        "storage": {"type": "memory"},
        "tools": {
            "weather": {"type": "python", "function": f"{tools_module}:weather"},
            "broken": {"type": "python", "function": "lsdemo_no_such_module:fn"},
        },
    }, environ=NONE)
    runtime = Runtime(config=config, plugins=pm)
    [first] = runtime.tools_named(["weather"])
    [again] = runtime.tools_named(["weather", "weather"])
    assert first is again
    # A tool name (as a hydrated record has it) finds its entry; unknown names are skipped.
    assert runtime.tools_named(["weather"]) == [first]
    assert runtime.tools_named([]) == []
    with pytest.raises(ConfigError, match="lsdemo_no_such_module"):
        runtime.tools_named(["broken"])
    # A name no working entry gives: the broken entry may have been meant to.
    with pytest.raises(ConfigError, match="lsdemo_no_such_module"):
        runtime.tools_named(["nobody", "weather"])
    healthy = Runtime(config=build_config({
        "storage": {"type": "memory"},
        "tools": {"weather": {"type": "python", "function": f"{tools_module}:weather"}},
    }, environ=NONE)[0])
    [found] = healthy.tools_named(["nobody", "weather"])
    assert found.spec.name == "weather"


# -- errors ------------------------------------------------------------------------------------
BAD_BLOCKS = [
    ("tools:\n  w: {type: nosuch}\n", 3, "tools.w.type",
     "unknown tool type 'nosuch'; known: mcp, python"),
    ("tools:\n  w: {function: 'a:b'}\n", 3, "tools.w", "missing 'type'; known tool types"),
    ("tools:\n  w:\n", 3, "tools.w", "missing 'type'"),
    ("tools:\n  w: {type: python}\n", 3, "tools.w.function", "required key is missing"),
    ("tools:\n  w:\n    type: python\n    function: not-a-target\n", 5, "tools.w.function",
     "should match pattern"),
    ("tools:\n  w: {type: python, function: 'a:b', fn: 1}\n", 3, "tools.w.fn",
     "unknown key 'fn' (allowed: description, function, name)"),
    ("tools:\n  w: {type: python, function: 'a:b', name: 'two words'}\n", 3, "tools.w.name",
     "should match pattern"),
    ("tools:\n  w: {type: mcp}\n", 3, "tools.w", "set either command"),
    ("tools:\n  w: {type: mcp, command: [x], url: 'http://h/mcp'}\n", 3, "tools.w",
     "set either command"),
    ("tools:\n  w: {type: mcp, command: []}\n", 3, "tools.w.command", "at least 1 item"),
    ("tools:\n  w: {type: mcp, command: [x], headers: {a: b}}\n", 3, "tools.w",
     "headers are for an url"),
    ("tools:\n  w: {type: mcp, url: 'http://h/mcp', cwd: /tmp}\n", 3, "tools.w",
     "env and cwd are for a command"),
    ("tools:\n  w: {type: mcp, url: 'ftp://h/mcp'}\n", 3, "tools.w", "http:// or https://"),
    ("tools:\n  'a b': {type: python, function: 'a:b'}\n", 3, "tools.a b",
     "a tools entry name is 1 to 64 letters"),
    ("defaults:\n  tools: [w, nope]\ntools:\n  w: {type: python, function: 'a:b'}\n", 3,
     "defaults.tools[1]", "unknown tool 'nope'; tools entries: w"),
    ("defaults:\n  tools: [nope]\n", 3, "defaults.tools[0]",
     "unknown tool 'nope'; tools entries: none"),
    ("providers:\n  p:\n    type: echo\n    tools:\n      - x\n", 6, "providers.p.tools[0]",
     "unknown tool 'x'"),
]


@pytest.mark.parametrize(("text", "line", "key_path", "message"), BAD_BLOCKS)
def test_bad_entries_are_config_errors_with_file_key_path_and_line(
    tmp_path: Path, text: str, line: int, key_path: str, message: str
) -> None:
    path = write(tmp_path, "version: 1\n" + text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=NONE)
    exc = err.value
    assert (exc.file, exc.key_path, exc.line) == (str(path), key_path, line), str(exc)
    assert message in exc.message
    assert "\n" not in str(exc)


@pytest.mark.parametrize(("target", "message"), [
    ("lsdemo_no_such_module:fn", "cannot import module 'lsdemo_no_such_module'"),
    ("lsdemo_tools:nope", "module 'lsdemo_tools' has no 'nope'"),
    ("lsdemo_tools:NOT_CALLABLE", "is a int, not a callable"),
    ("lsdemo_tools:varargs", "cannot be a tool: tool varargs: *args/**kwargs"),
])
async def test_unusable_function_is_a_config_error_naming_the_entry(
    tmp_path: Path, tools_module: str, target: str, message: str
) -> None:
    path = write(tmp_path, f"""
        storage: {{type: memory}}
        defaults:
          tools: [w]
        tools:
          w:
            type: python
            function: "{target}"
        """)
    manager = manager_for(path)
    with pytest.raises(ConfigError) as err:
        await manager.create_session(user_id="u")
    exc = err.value
    assert (exc.file, exc.key_path, exc.line) == (str(path), "tools.w.function", 7)
    assert message in exc.message
    # `langswarm-run config validate` finds it too, without a session.
    with pytest.raises(ConfigError, match=r"tools\.w\.function"):
        Runtime(config=manager.config).validate()
    await manager.close()


def test_tool_entries_are_shown_redacted_and_in_the_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pm = PluginManager(environ=NONE)
    data: dict[str, Any] = {
        "version": 1,
        "storage": {"type": "memory"},
        "tools": {
            "w": {"type": "python", "function": "pkg.mod:fn"},
            "web": {"type": "mcp", "url": "https://mcp.example/mcp",
                    "headers": {"Authorization": "Bearer s3cret"}},
            "files": {"type": "mcp", "command": ["server"], "env": {"TOKEN": "s3cret"}},
        },
    }
    config, _ = build_config(data, plugins=pm)
    shown = json.dumps(config.redacted())
    assert "s3cret" not in shown and '"function": "pkg.mod:fn"' in shown
    assert config.redacted()["tools"]["web"]["headers"] == {"Authorization": "**********"}

    schema = config_json_schema(pm)
    tools = schema["properties"]["tools"]["additionalProperties"]
    assert set(tools["discriminator"]["mapping"]) == {"mcp", "python"}
    jsonschema.validate(data, schema)
    for bad in ({"type": "python"}, {"type": "python", "function": "a:b", "x": 1},
                {"type": "nosuch"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**data, "tools": {"w": bad}}, schema)


def test_environment_overrides_a_tool_entry(tmp_path: Path, tools_module: str) -> None:
    path = write(tmp_path, SWARM)
    config, _ = load_config(path, environ={
        **NONE, "LANGSWARM_TOOLS__AREA__NAME": "square_area"})
    assert config.tools["area"].options.name == "square_area"  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={**NONE, "LANGSWARM_TOOLS__AREA__NAME": "bad name"})
    assert "LANGSWARM_TOOLS__AREA__NAME" in str(err.value)


def test_loading_and_validating_mcp_entries_imports_no_mcp_sdk(tmp_path: Path) -> None:
    write(tmp_path, """
        storage: {type: memory}
        defaults: {tools: [files]}
        tools:
          files: {type: mcp, command: [no-such-mcp-server-program]}
          web: {type: mcp, url: "http://127.0.0.1:9/mcp"}
        """)
    code = (
        "import sys\nimport langswarm_runtime\n"
        "from langswarm_runtime.plugins import PluginManager\nPluginManager()\n"
        "from langswarm_runtime.runtime import Runtime\n"
        "runtime = Runtime.from_file('swarm.yaml')\nruntime.validate()\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, **NONE}, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- tool types from plugins -------------------------------------------------------------------
PLUGIN_MODULE = '''
from pydantic import BaseModel, ConfigDict

from langswarm_runtime import hookimpl, tool

EVENTS = []


class DiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sides: int = 6


class Dice:
    """A tool set: its tools are listed on first use, and it is closed with the runtime."""

    def __init__(self, config):
        self.config = config

    def list_tools(self):
        EVENTS.append("listed")
        sides = self.config.sides

        @tool
        def roll(times: int) -> list[int]:
            """Roll the dice."""
            return [sides] * times

        def sides_of() -> int:
            """How many sides the dice have."""
            return sides

        return [roll, sides_of]

    async def close(self):
        EVENTS.append("closed")


def coin():
    def flip() -> str:
        """Flip a coin."""
        return "heads"
    return flip


@hookimpl
def register_tools(register):
    register("dice", Dice, DiceConfig)
    register("coin", coin)
'''


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed third-party package ``lsdemo-dice`` (a module and its dist-info, as pip
    leaves them), found through its ``langswarm_runtime`` entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "lsdemo_dice.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    info = site / "lsdemo_dice-2.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lsdemo-dice\nVersion: 2.0.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[langswarm_runtime]\nlsdemo_dice = lsdemo_dice\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("lsdemo_dice", None)
    yield site
    sys.modules.pop("lsdemo_dice", None)


async def test_a_plugin_registers_a_tool_type(tmp_path: Path, plugin_site: Path) -> None:
    env = {"LANGSWARM_LOAD_PLUGINS": "lsdemo-dice"}
    path = write(tmp_path, """
        storage: {type: memory}
        defaults: {tools: [d20, coin]}
        tools:
          d20: {type: dice, sides: 20}
          coin: {type: coin}
        """)
    config, pm = load_config(path, environ=env)
    [info] = pm.plugins(include_builtin=False)
    assert (info.name, info.package, info.version) == ("lsdemo_dice", "lsdemo-dice", "2.0.0")
    assert info.types == ["tool:coin", "tool:dice"]
    assert info.hooks == ["register_tools"]
    import lsdemo_dice  # type: ignore[import-not-found]

    assert lsdemo_dice.EVENTS == []  # nothing built at load
    manager = SessionManager(config=config, plugins=pm)
    session = await manager.create_session(user_id="u")
    assert [t.name for t in session.tools] == ["roll", "sides_of", "flip"]
    assert lsdemo_dice.EVENTS == ["listed"]
    reply = await session.send_message('call roll {"times": 2}\ncall sides_of\ncall flip')
    assert reply.content == (
        "tool roll returned [20, 20]; tool sides_of returned 20; tool flip returned heads")
    await manager.close()
    assert lsdemo_dice.EVENTS == ["listed", "closed"]

    # Its config model validates the block like a built-in's.
    bad = write(tmp_path, "storage: {type: memory}\ntools:\n  d: {type: dice, sides: x}\n",
                "bad.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(bad, environ=env)
    assert (err.value.key_path, err.value.line) == ("tools.d.sides", 3)
    bad = write(tmp_path, "storage: {type: memory}\ntools:\n  c: {type: coin, x: 1}\n",
                "bad.yaml")
    with pytest.raises(ConfigError, match="tool type 'coin' takes no options"):
        load_config(bad, environ=env)
    # Not loaded, the type is unknown.
    with pytest.raises(ConfigError, match="unknown tool type 'dice'"):
        load_config(path, environ=NONE)


def test_a_plugin_tool_type_that_builds_no_tool_is_a_plugin_error() -> None:
    class Plugin:
        @hookimpl
        def register_tools(self, register: Any) -> None:
            register("nothing", lambda: 42)
            register("spec", lambda: ToolSpec(name="s"))
            register("crash", self.crash)

        @staticmethod
        def crash() -> None:
            raise OSError("disk on fire")

    pm = PluginManager(environ=NONE)
    pm.register(Plugin(), name="lsdemo_bad_tools")
    config, _ = build_config({
        "storage": {"type": "memory"},
        "tools": {"n": {"type": "nothing"}, "c": {"type": "crash"}, "s": {"type": "spec"}},
    }, plugins=pm)
    runtime = Runtime(config=config, plugins=pm)
    with pytest.raises(PluginError, match=r"tools\.n: tool type 'nothing' gave something that"):
        runtime.tools_named(["n"])
    with pytest.raises(PluginError, match=r"tools\.s: .*a ToolSpec is run by the caller"):
        runtime.tools_named(["s"])
    with pytest.raises(PluginError,
                       match=r"tool type 'crash' \(plugin 'lsdemo_bad_tools'\) failed to start"):
        runtime.tools_named(["c"])


def test_plugin_tool_types_in_a_fresh_process(plugin_site: Path, tmp_path: Path) -> None:
    # Found through the entry point alone, as an installed package is.
    write(tmp_path, "storage: {type: memory}\ntools:\n  d: {type: dice}\n")
    result = subprocess.run(
        [sys.executable, "-m", "langswarm_runtime.cli", "plugins", "--json"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "PYTHONPATH": str(plugin_site),
             "LANGSWARM_LOAD_PLUGINS": "lsdemo_dice"},
    )
    assert result.returncode == 0, result.stderr
    [info] = json.loads(result.stdout)
    assert info["name"] == "lsdemo_dice" and info["types"] == ["tool:coin", "tool:dice"]


def test_builtin_tool_types_are_listed_as_plugins() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "langswarm_runtime.cli", "plugins", "--all", "--json"],
        capture_output=True, text=True, check=False, timeout=120, env={**os.environ, **NONE},
    )
    assert result.returncode == 0, result.stderr
    infos = {i["name"]: i for i in json.loads(result.stdout)}
    assert infos["python"]["types"] == ["tool:python"] and infos["python"]["builtin"]
    assert infos["mcp"]["types"] == ["tool:mcp"] and infos["mcp"]["builtin"]
    pm = PluginManager(disabled=["mcp"], environ=NONE)
    assert pm.tools.names() == ["python"]
