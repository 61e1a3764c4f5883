"""Every example in README.md and docs/ is checked, so the documentation cannot drift.

A fenced block is checked according to its language:

- ``python``: a script. It runs in a temporary directory holding a copy of ``configs/``
  and must exit 0.
- ``py``: a file of an example project, not a script (``tests/test_plugins.py`` builds
  the plugin example of docs/plugins.md and runs its tests); it must parse.
- ``bash``: the block runs with ``bash -e`` in such a temporary directory and must exit
  0. A ``pip install ...`` command is checked instead of run: what it names must already
  be installed (``scripts/test.sh`` installs everything).
- ``yaml``: it must parse; a block shaped like a swarm.yaml (its top-level keys are
  swarm.yaml keys) is loaded with ``load_config``, each ``${VAR}`` without a default set
  to a dummy value.
- ``toml``: it must parse.
- ``text``: free text, except two kinds marked on the line before the fence:
  ``<!-- cli-help: ARGS -->`` (the block is exactly what ``langswarm-run ARGS --help``
  prints; ``python tests/test_docs.py --update`` rewrites them) and ``<!-- output -->``
  (exactly the stdout of the bash block before it).

Any other language is an error, so a new kind of block needs a rule here first.
``<!-- not-run: KEY -->`` on the line before a fence skips a block, for one of the
reviewed reasons in ``NOT_RUN``. ``<!-- file: NAME -->`` before a block (checked by its
own rule) also writes it to NAME in the directory of every later python and bash block of
the page, so an example can use the swarm.yaml shown above it.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = {"python", "py", "bash", "yaml", "toml", "text"}

#: The only reasons a block may be left unchecked (reviewed: a new one is a change here).
NOT_RUN = {
    "suite": "runs this very test suite (or part of it)",
    "edits-the-repo": "rewrites files of this repository",
    "long-running": "starts a server or a live preview that runs until stopped",
    "real-api": "calls a real provider API and needs a real API key",
    "your-server": "needs a server the reader names (their own DSN or URL)",
    "plugin-example": "uses the example plugin's types; tests/test_plugins.py builds that "
    "plugin and loads this block with it",
}
SWARM_KEYS = {"version", "storage", "defaults", "providers", "middleware", "plugins", "tools"}
#: Third-party plugins a swarm.yaml block of the docs may use (installed by test.sh).
DOC_PLUGINS = ("langswarm-storage-postgres", "langswarm-storage-redis",
               "langswarm-middleware-keywords")
HELP_ENV = {"COLUMNS": "100", "LANGSWARM_LOAD_PLUGINS": ""}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```",
                    re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"<!--\s*([\w-]+)(?::\s*(.*?))?\s*-->\s*$")
_REF = re.compile(r"\$\{(\w+)(:?-)?")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str
    marker: str | None  # e.g. "not-run", "cli-help", "output"
    arg: str | None
    span: tuple[int, int]  # of the body in the page's text

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}-{self.lang}"


def _blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        start = match.start()
        line = text.count("\n", 0, start) + 1
        before = text[:start].rstrip("\n").rsplit("\n", 1)[-1].strip()
        marker = _MARKER.match(before)
        body = match.group("body")
        indent = match.group("indent")
        if indent:
            body = "".join(b.removeprefix(indent) for b in body.splitlines(keepends=True))
        found.append(Block(page, line, match.group("lang"), body,
                           marker.group(1) if marker else None,
                           marker.group(2) if marker else None, match.span("body")))
    return found


BLOCKS = [block for page in PAGES for block in _blocks(page)]


def _of(lang: str) -> list[Block]:
    return [b for b in BLOCKS if b.lang == lang and b.marker != "not-run"]


def _files_before(block: Block) -> dict[str, str]:
    return {b.arg: b.body for b in _blocks(block.page)
            if b.marker == "file" and b.arg and b.line < block.line}


def _param(blocks: list[Block]) -> list[object]:
    return [pytest.param(b, id=b.id) for b in blocks]


def _workdir(tmp_path: Path, block: Block) -> Path:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    for name, body in _files_before(block).items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    return tmp_path


def _env() -> dict[str, str]:
    env = {**os.environ, "LANGSWARM_LOAD_PLUGINS": "", "PYTHONPATH": str(ROOT)}
    env.pop("LANGSWARM_CONFIG", None)
    # langswarm-run from this interpreter, whatever is first on PATH.
    env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")])
    return env


# -- the pages as a whole ------------------------------------------------------------------
def test_there_are_examples() -> None:
    assert len(_of("python")) >= 10 and len(_of("bash")) >= 3 and len(_of("yaml")) >= 10


@pytest.mark.parametrize("block", _param(BLOCKS))
def test_every_block_has_a_rule(block: Block) -> None:
    assert block.lang in LANGUAGES, f"{block.id}: no rule for ```{block.lang} blocks"
    if block.marker == "not-run":
        assert block.arg in NOT_RUN, f"{block.id}: not-run reason {block.arg!r} not in NOT_RUN"
    elif block.marker in ("cli-help", "output"):
        assert block.lang == "text", f"{block.id}: {block.marker} marks a ```text block"
    elif block.marker == "file":
        assert block.arg and "/" not in block.arg, f"{block.id}: file needs a plain name"
    else:
        assert block.marker is None, f"{block.id}: unknown marker {block.marker!r}"


def test_readme_is_a_front_page() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[:2] == ["Quick start", "Guarantees"], headings
    commands = [b.body.strip() for b in _blocks(ROOT / "README.md") if b.lang == "bash"]
    assert commands[:2] == [
        'pip install . && langswarm-run --config configs/swarm.yaml -m "Hello, swarm"',
        "bash scripts/test.sh",
    ]
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("bash scripts/test.sh")
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / link).is_file(), link


def test_one_claude_model_name() -> None:
    from langswarm_runtime.providers.anthropic import AnthropicConfig

    name = AnthropicConfig().model
    sources = [*PAGES, *sorted((ROOT / "configs").glob("*.yaml"))]
    for path in sources:
        for other in set(re.findall(r"claude-[a-z]+-[\d-]+\d", path.read_text())):
            assert other == name, f"{path.relative_to(ROOT)} names {other}, not {name}"


# -- python ------------------------------------------------------------------------------
@pytest.mark.parametrize("block", _param(_of("python")))
def test_python_example_runs(block: Block, tmp_path: Path) -> None:
    cwd = _workdir(tmp_path, block)
    script = cwd / "example.py"
    script.write_text(block.body, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=_env(),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"{block.id}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("block", _param(_of("py")))
def test_py_file_parses(block: Block) -> None:
    ast.parse(block.body, filename=block.id)


# -- bash --------------------------------------------------------------------------------
def _commands(body: str) -> list[str]:
    """Logical command lines: continuations joined, comments and blank lines dropped."""
    lines, current = [], ""
    for raw in body.splitlines():
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            lines.append(current.strip())
        current = ""
    return lines


def _requirement_installed(spec: str) -> None:
    """``pip install SPEC`` would have nothing to do: SPEC is installed, extras included."""
    name, _, extras = spec.partition("[")
    wanted = {e.strip() for e in extras.rstrip("]").split(",") if e.strip()}
    if name.startswith(".") or "/" in name:
        pyproject = tomllib.loads((ROOT / name / "pyproject.toml").read_text())
        name = pyproject["project"]["name"]
    dist = metadata.distribution(name)  # raises PackageNotFoundError
    for requirement in dist.requires or []:
        req, _, marker = requirement.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", marker)
        if extra and extra.group(1) in wanted:
            req_name = re.split(r"[\s\[<>=!~]", req.strip(), maxsplit=1)[0]
            if req_name != dist.metadata["Name"]:
                metadata.distribution(req_name)


def _bash_script(block: Block) -> str:
    script = []
    for command in _commands(block.body):
        parts = []
        for part in command.split(" && "):
            words = shlex.split(part, comments=True)
            if words[:2] == ["pip", "install"]:
                for spec in (w for w in words[2:] if not w.startswith("-")):
                    _requirement_installed(spec)
            else:
                parts.append(part)
        if parts:
            script.append(" && ".join(parts))
    return "\n".join(script)


def _output_of(block: Block) -> Block | None:
    blocks = _blocks(block.page)
    index = blocks.index(block)
    following = blocks[index + 1] if index + 1 < len(blocks) else None
    return following if following is not None and following.marker == "output" else None


@pytest.mark.parametrize("block", _param(_of("bash")))
def test_bash_example_runs(block: Block, tmp_path: Path) -> None:
    script = _bash_script(block)
    if not script:
        return  # only pip install commands, checked above
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=_workdir(tmp_path, block), env=_env(),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"{block.id}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    output = _output_of(block)
    if output is not None:
        assert result.stdout == output.body, f"{output.id}: not what {block.id} prints"


def test_every_output_block_follows_a_bash_block() -> None:
    for page in PAGES:
        blocks = _blocks(page)
        for before, block in itertools.pairwise(blocks):
            if block.marker == "output":
                assert before.lang == "bash" and before.marker is None, block.id


# -- yaml and toml -----------------------------------------------------------------------
def _dummy(name: str) -> str:
    if "POSTGRES" in name or "DSN" in name or "DATABASE" in name:
        return "postgresql://app@127.0.0.1:5432/app"
    if "REDIS" in name:
        return "redis://127.0.0.1:6379/0"
    if name.endswith("_URL"):
        return "http://127.0.0.1:9/"
    return "dummy-value-for-docs"


@pytest.mark.parametrize("block", _param(_of("yaml")))
def test_yaml_example_is_valid(block: Block, tmp_path: Path) -> None:
    from langswarm_runtime.config import load_config
    from langswarm_runtime.plugins import PluginManager

    data = yaml.safe_load(block.body)
    assert isinstance(data, dict), f"{block.id}: not a mapping"
    if not set(data) <= SWARM_KEYS:
        return  # a fragment of another file (a plugin's own block, say): parsing is all
    missing = [p for p in DOC_PLUGINS if not _installed(p)]
    if missing and "CI" not in os.environ:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/test.sh installs them)")
    path = tmp_path / "swarm.yaml"
    path.write_text(block.body, encoding="utf-8")
    environ = {name: _dummy(name) for name, default in _REF.findall(block.body) if not default}
    plugins = PluginManager(
        disabled=(data.get("plugins") or {}).get("disabled", []),
        environ={"LANGSWARM_LOAD_PLUGINS": ",".join(DOC_PLUGINS)},
    )
    load_config(path, environ=environ, plugins=plugins)


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize("block", _param(_of("toml")))
def test_toml_example_parses(block: Block) -> None:
    tomllib.loads(block.body)


# -- the CLI reference is the CLI ----------------------------------------------------------
def _help(args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "langswarm_runtime.cli", *shlex.split(args), "--help"],
        env={**_env(), **HELP_ENV}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _help_blocks() -> list[Block]:
    return [b for b in BLOCKS if b.marker == "cli-help"]


@pytest.mark.parametrize("block", _param(_help_blocks()))
def test_cli_help_is_current(block: Block) -> None:
    assert block.body == _help(block.arg or ""), (
        f"{block.id}: `langswarm-run {block.arg} --help` changed; "
        "run `python tests/test_docs.py --update`"
    )


def _commands_of_parser() -> set[str]:
    import argparse

    from langswarm_runtime.cli import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: str) -> set[str]:
        found = {prefix}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found |= walk(sub, f"{prefix} {name}".strip())
        return found

    return walk(build_parser(), "")


def test_every_command_has_its_help_in_the_reference() -> None:
    documented = {(b.arg or "").strip() for b in _help_blocks()}
    assert documented == _commands_of_parser()


def _update() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in reversed([b for b in _blocks(page) if b.marker == "cli-help"]):
            start, end = block.span
            text = text[:start] + _help(block.arg or "") + text[end:]
        page.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_docs.py --update   (rewrites the CLI help blocks)")
    _update()
