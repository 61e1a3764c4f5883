"""Hostile config is a clear error, fast, in bounded memory.

Each malformed or malicious swarm.yaml (or environment, or system prompt template) goes
through ``langswarm-run`` as a real process under a 1 GiB address-space limit: it must exit
2 with exactly one line on stderr naming the problem (and the file, and the line where
there is one), never a traceback, a hang or an exhausted machine. The same inputs through
``load_config`` / ``SessionManager`` in process raise ``ConfigError``.

No timing is asserted; the subprocess timeout is only a safety net.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import langswarm_runtime
from langswarm_runtime import SessionManager
from langswarm_runtime.config import load_config
from langswarm_runtime.errors import ConfigError
from langswarm_runtime.templating import render_system_prompt

#: The package under test, whichever checkout it is imported from.
ROOT = Path(langswarm_runtime.__file__).resolve().parent.parent
MEMORY_LIMIT = 1 << 30
HEAD = "version: 1\nstorage: {type: memory}\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LANGSWARM_")}
    full_env.update({"LANGSWARM_LOAD_PLUGINS": "", "PYTHONPATH": str(ROOT)}, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "langswarm_runtime.cli", "--config", str(config), *args],
        cwd=config.parent, env=full_env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=120, check=False, preexec_fn=_limit_memory,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: ")
    return lines[0]


# -- the hostile inputs ------------------------------------------------------------------
def _laughs() -> str:
    # Nine levels of ten aliases each: 10**9 strings once expanded.
    lines = ["  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return HEAD + "providers:\n  local:\n    type: echo\n    extra:\n" + "\n".join(
        "    " + line for line in lines
    ) + "\n"


def _block_mappings(depth: int) -> str:
    return HEAD + "defaults:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(depth))


@dataclass
class Case:
    name: str
    text: Callable[[], str | bytes]
    problem: str  #: what the one line must say
    line: int | None = None  #: the line it must name (None: not checked)
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("billion_laughs", _laughs, "YAML expands to more than 10,000 values", line=7),
    Case("deep_lists", lambda: HEAD + "defaults: " + "[" * 100_000 + "]" * 100_000 + "\n",
         "YAML nested more than 64 levels deep", line=3),
    Case("deep_flow_mappings",
         lambda: HEAD + "defaults: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n",
         "YAML nested more than 64 levels deep", line=3),
    Case("deep_block_mappings", lambda: _block_mappings(1_000),
         "YAML nested more than 64 levels deep", line=66),
    Case("nul_byte", lambda: HEAD + "defaults:\n  user_id: a\x00b\n",
         "character U+0000 is not allowed", line=4),
    Case("huge_integer",
         lambda: HEAD + "defaults:\n  max_message_bytes: " + "9" * 100_000 + "\n",
         "defaults.max_message_bytes: integer too large", line=4),
    Case("huge_float", lambda: HEAD + "providers:\n  local: {type: echo, timeout: 1.0e+999}\n",
         "providers.local.timeout: number too large for a float", line=4),
    Case("very_large_file", lambda: HEAD + "# padding\n" * 300_000,
         "config file is larger than 1 MiB"),
    Case("huge_variable_expansion",
         lambda: HEAD + "defaults:\n  system_prompt: '" + "${BIG}" * 20 + "'\n",
         "defaults.system_prompt: ${VAR} expansion produces more than 1 MiB", line=4,
         env={"BIG": "x" * 100_000}),
    Case("deep_json_override", lambda: HEAD,
         "environment variable LANGSWARM_PROVIDERS: JSON nested more than 64 levels deep",
         env={"LANGSWARM_PROVIDERS": "[" * 100_000}),
    Case("huge_integer_override", lambda: HEAD,
         "environment variable LANGSWARM_PROVIDERS: integer too large",
         env={"LANGSWARM_PROVIDERS": '{"local": {"type": "echo", "timeout": '
              + "9" * 100_000 + "}}"}),
]


def _template(source: str) -> Callable[[], str]:
    return lambda: HEAD + "defaults:\n  system_prompt: " + repr(source) + "\n"


TEMPLATE_CASES = [
    Case("nested_loops", _template(
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"),
        "system prompt template exceeded 100,000 steps", line=4),
    Case("string_multiplication", _template("{{ 'a' * 10**10 }}"),
         "system prompt template exceeded 1,000,000 characters in one value", line=4),
    Case("power", _template("{{ 9 ** (9 ** 9) }}"),
         "system prompt template exceeded 10,000-bit integers", line=4),
    Case("huge_output", _template("{{ 'x' * 600000 }}{{ 'y' * 600000 }}"),
         "system prompt template exceeded 1,000,000 characters of output", line=4),
    Case("huge_writes", _template(
        "{% set s %}{% for i in range(50) %}{{ 'z' * 900000 }}{% endfor %}{% endset %}"),
        "system prompt template exceeded 4,000,000 characters written", line=4),
    Case("macro_recursion", _template(
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}"), "system prompt template exceeded 100,000 steps", line=4),
    Case("filter_width", _template("{{ 'x'|center(10**9) }}"),
         "system prompt template exceeded 1,000,000 characters in one value", line=4),
]


def _write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / f"{case.name}.yaml"
    text = case.text()
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def _check(line: str, path: Path, case: Case) -> None:
    where = f"{path}:{case.line}: " if case.line is not None else f"{path}"
    assert line.startswith(f"error: {where}"), line
    assert case.problem in line, line
    assert len(line) < 400, line


@pytest.mark.parametrize("case", CASES + TEMPLATE_CASES, ids=lambda c: c.name)
def test_cli_refuses_hostile_config_in_one_line(tmp_path: Path, case: Case) -> None:
    path = _write(tmp_path, case)
    _check(one_line_error(run_cli(path, "config", "validate", env=case.env)), path, case)


@pytest.mark.parametrize("case", TEMPLATE_CASES, ids=lambda c: c.name)
def test_cli_chat_refuses_hostile_template_before_any_session(
    tmp_path: Path, case: Case
) -> None:
    path = _write(tmp_path, case)
    text = path.read_text(encoding="utf-8").replace("{type: memory}", "{type: sqlite, path: s.db}")
    path.write_text(text, encoding="utf-8")
    _check(one_line_error(run_cli(path, "-m", "hi")), path, case)
    assert not (tmp_path / "s.db").exists()  # refused while loading: nothing was opened


@pytest.mark.parametrize("case", CASES + TEMPLATE_CASES, ids=lambda c: c.name)
def test_load_config_raises_config_error(tmp_path: Path, case: Case) -> None:
    path = _write(tmp_path, case)
    environ = {"LANGSWARM_LOAD_PLUGINS": "", **case.env}
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=environ)
    assert case.problem in str(err.value)
    assert err.value.file == str(path)
    if case.line is not None:
        assert err.value.line == case.line


def test_huge_override_value_is_refused_naming_the_variable(tmp_path: Path) -> None:
    # Too big for a real process's environment (the OS caps one variable at 128 KiB),
    # but a mapping given in code can hold anything.
    path = tmp_path / "swarm.yaml"
    path.write_text(HEAD, encoding="utf-8")
    environ = {"LANGSWARM_LOAD_PLUGINS": "", "LANGSWARM_DEFAULTS__SYSTEM_PROMPT": "x" * (2 << 20)}
    with pytest.raises(ConfigError, match="LANGSWARM_DEFAULTS__SYSTEM_PROMPT is larger than 1 MiB"):
        load_config(path, environ=environ)
    environ = {"LANGSWARM_LOAD_PLUGINS": "", "LANGSWARM_PROVIDERS": '{"a": ' * 5_000 + "1" + "}" * 5_000}
    with pytest.raises(ConfigError, match="LANGSWARM_PROVIDERS: JSON nested more than 64"):
        load_config(path, environ=environ)


def test_self_referential_variable_is_expanded_once(tmp_path: Path) -> None:
    path = tmp_path / "swarm.yaml"
    path.write_text(HEAD + "defaults:\n  user_id: ${ME}${ME}\n", encoding="utf-8")
    config, _ = load_config(path, environ={"LANGSWARM_LOAD_PLUGINS": "", "ME": "${ME}"})
    assert config.defaults.user_id == "${ME}${ME}"
    result = run_cli(path, "config", "validate", env={"ME": "${ME}"})
    assert result.returncode == 0, result.stderr


async def test_template_that_explodes_on_session_values_fails_create_session(
    tmp_path: Path,
) -> None:
    # Placeholder values at load time cannot reach the loops; the session's metadata does.
    path = tmp_path / "swarm.yaml"
    path.write_text(HEAD + "defaults:\n  system_prompt: " + repr(
        "{% for i in range(metadata.n) %}{% for j in range(metadata.n) %}{% endfor %}"
        "{% endfor %}ok"
    ) + "\n", encoding="utf-8")
    manager = SessionManager.from_config(path, environ={"LANGSWARM_LOAD_PLUGINS": ""})
    try:
        with pytest.raises(ConfigError, match="system prompt template exceeded 100,000 steps"):
            await manager.create_session(user_id="u1", metadata={"n": 100_000})
        assert await manager.list_sessions(user_id="u1") == []
        fine = await manager.create_session(user_id="u1", metadata={"n": 3})
        assert fine.system_prompt == "ok"
    finally:
        await manager.close()


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            id="silent_nested_loops",
        ),
        pytest.param("{{ ('a' * 100000).replace('a', 'a' * 100000) }}", id="str_replace"),
        pytest.param("{{ ('a' * 100000)|replace('a', 'a' * 100000) }}", id="replace_filter"),
        pytest.param("{{ '{:>999999999}'.format(1) }}", id="format_width"),
        pytest.param("{{ '%0999999999d' % 1 }}", id="printf_width"),
        pytest.param("{{ (1).to_bytes(10**9, 'big') }}", id="builtin_method_size"),
        pytest.param("{% set s = 'a' * 900000 %}{{ [s, s, s, s, s] }}", id="list_of_references"),
        pytest.param(
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            id="doubling_concatenation",
        ),
        pytest.param(
            "{% set ns = namespace(x=3) %}{% for i in range(40) %}"
            "{% set ns.x = ns.x * ns.x %}{% endfor %}",
            id="squaring_integer",
        ),
        pytest.param(
            "{% for x in [1] recursive %}{{ loop(range(100000)) if x == 1 }}{% endfor %}",
            id="recursive_loop",
        ),
        pytest.param(
            "{% set s %}{% for i in range(90000) %}" + "y" * 900_000 + "{% endfor %}{% endset %}",
            id="literal_text_captured_in_a_loop",
        ),
        pytest.param("{{ [1]|batch(10**9, 'x')|list }}", id="batch_padding"),
        pytest.param("{{ range(90000)|batch(1)|sum(start=[])|length }}", id="quadratic_sum"),
    ],
)
def test_every_render_stays_within_its_budget(template: str) -> None:
    with pytest.raises(ConfigError, match=r"^system prompt template exceeded "):
        render_system_prompt(template, user_id="u")
