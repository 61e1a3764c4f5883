"""What a new user hits: the project tried as a new user would, each time as a real process
(a pip-installed plugin under pytest, the chat on a terminal, the emulator on a busy port, a
provider SDK that is really not installed, the offline config, the built wheel)."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import _BACKEND  # tests/conftest.py: builds throwaway wheels offline

from langswarm_runtime.config import load_config
from langswarm_runtime.testing.emulator import DEFAULT_PORT, ProviderEmulator

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ROOT / "configs" / "offline.yaml"
#: offline.yaml entry -> (provider type, SDK module, extra).
OFFLINE_ENTRIES = {
    "gpt": ("openai", "openai", "openai"),
    "claude": ("anthropic", "anthropic", "anthropic"),
    "gemini": ("gemini", "google.genai", "gemini"),
    "cohere": ("cohere", "cohere", "cohere"),
    "mistral": ("mistral", "mistralai", "mistral"),
}


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "LANGSWARM_LOAD_PLUGINS": "", "PYTHONPATH": str(ROOT)}
    env.pop("LANGSWARM_CONFIG", None)
    env.pop("LANGSWARM_EMULATOR_URL", None)
    env.update(extra)
    return env


def run(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "langswarm_runtime.cli", *args],
        cwd=cwd, env=env or _env(), input=stdin, capture_output=True, text=True,
        timeout=120, check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("session: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def stored_sessions(db: Path) -> int:
    """Session records in a SQLite file (0 when the file or table is not there)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        if not conn.execute(
            "select 1 from sqlite_master where type='table' and name='sessions'"
        ).fetchone():
            return 0
        return int(conn.execute("select count(*) from sessions").fetchone()[0])


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        "version: 1\n"
        "storage: {type: sqlite, path: chat.db}\n"
        "defaults: {provider: local, user_id: alice, max_message_bytes: 64}\n"
        "providers:\n"
        "  local: {type: echo}\n"
        "  broken: {type: echo, fail: true}\n"
        "middleware:\n"
        "  - {type: validation, banned_patterns: ['forbidden\\w*']}\n",
        encoding="utf-8",
    )
    return path


# -- the plugin author's test, with the plugin pip-installed ------------------------------

#: The plugin of the docs' "Writing a plugin" example.
PLUGIN_MODULE = '''
"""A storage, a middleware and a provider, registered through the same hooks as core's."""

from pydantic import BaseModel, ConfigDict

from langswarm_runtime import hookimpl
from langswarm_runtime.providers.base import Provider, ProviderConfig, ProviderReply
from langswarm_runtime.session.middleware import ISessionMiddleware
from langswarm_runtime.session.storage.memory import MemorySessionStorage


class ScratchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = "scratch"


class ScratchStorage(MemorySessionStorage):
    """A real storage implements ISessionStorage; this one borrows the memory store."""

    def __init__(self, config: ScratchConfig) -> None:
        super().__init__()
        self.label = config.label


class ShoutConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suffix: str = "!"


class Shout(ISessionMiddleware):
    name = "shout"

    def __init__(self, config: ShoutConfig) -> None:
        self.suffix = config.suffix

    def process_outgoing_message(self, session, message):
        return message.model_copy(update={"content": message.content.upper() + self.suffix})


class ReverseConfig(ProviderConfig):
    model: str | None = "reverse-1"


class ReverseProvider(Provider):
    """Offline: answers with the message reversed."""

    async def send(self, request):
        return ProviderReply(content=request.message.content[::-1])


@hookimpl
def register_storages(register):
    register("scratch", ScratchStorage, ScratchConfig)


@hookimpl
def register_middlewares(register):
    register("shout", Shout, ShoutConfig)


@hookimpl
def register_providers(register):
    register("reverse", ReverseProvider, ReverseConfig)
'''

#: The docs' tests/test_shout.py: the langswarm_plugins fixture does the isolation.
PLUGIN_TEST = '''
import pytest

import langswarm_shout
from langswarm_runtime import SessionManager
from langswarm_runtime.config import build_config
from langswarm_runtime.testing import StorageConformance


class TestScratchConformance(StorageConformance):
    shared_backing = False  # two instances do not share data

    @pytest.fixture
    def storage_factory(self):
        return lambda: langswarm_shout.ScratchStorage(langswarm_shout.ScratchConfig())


async def test_a_turn_through_all_three(langswarm_plugins):
    # The built-ins plus this plugin (installed or not); no other installed plugin loads.
    plugins = langswarm_plugins(langswarm_shout)
    config, _ = build_config(
        {"storage": {"type": "scratch"}, "defaults": {"provider": "reverse"},
         "middleware": [{"type": "shout", "suffix": "!"}]},
        plugins=plugins,
    )
    async with SessionManager(config=config, plugins=plugins) as manager:
        session = await manager.create_session(user_id="u1")
        reply = await session.send_message("hello")
    assert reply.content == "!OLLEH"
'''

#: What the docs said before: a bare PluginManager (every installed plugin) and the
#: plugin registered by hand on top. Registering the same module twice is not a duplicate.
OLD_PLUGIN_TEST = '''
import langswarm_shout
from langswarm_runtime import SessionManager
from langswarm_runtime.config import build_config
from langswarm_runtime.plugins import PluginManager


async def test_a_turn_through_all_three():
    plugins = PluginManager()
    plugins.register(langswarm_shout, name="langswarm_shout")  # or rely on the entry point
    config, _ = build_config(
        {"storage": {"type": "scratch"}, "defaults": {"provider": "reverse"},
         "middleware": [{"type": "shout", "suffix": "!"}]},
        plugins=plugins,
    )
    async with SessionManager(config=config, plugins=plugins) as manager:
        session = await manager.create_session(user_id="u1")
        reply = await session.send_message("hello")
    assert reply.content == "!OLLEH"
'''


@pytest.fixture(scope="module")
def shout_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(project dir, site dir): the docs' langswarm-shout project, pip-installed (not
    editable) into the site dir, as ``pip install .`` would."""
    root = tmp_path_factory.mktemp("shout")
    project = root / "langswarm-shout"
    (project / "tests").mkdir(parents=True)
    (project / "_backend.py").write_text(_BACKEND)
    (project / "langswarm_shout.py").write_text(PLUGIN_MODULE.lstrip())
    (project / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = []
        build-backend = "_backend"
        backend-path = ["."]

        [project]
        name = "langswarm-shout"
        version = "0.1.0"

        [project.entry-points.langswarm_runtime]
        langswarm_shout = "langswarm_shout"
        """))
    site = root / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
         str(project)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    return project, site


def _pytest_in(project: Path, test_src: str, *, installed: Path | None) -> str:
    (project / "tests" / "test_shout.py").write_text(test_src.lstrip())
    # The runtime under test (this tree) stands for the installed langswarm-runtime.
    path = [str(installed) if installed else str(project), str(ROOT)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    # As on a user's machine: every installed plugin may load (no allow-list).
    env.pop("LANGSWARM_LOAD_PLUGINS", None)
    probe = subprocess.run(
        [sys.executable, "-c", "from importlib.metadata import entry_points as e\n"
         + "print(sorted(x.name for x in e(group='langswarm_runtime')))"],
        cwd=project.parent, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert ("'langswarm_shout'" in probe.stdout) is (installed is not None), probe.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         "asyncio_mode=auto", "tests/test_shout.py",
         "-k", "not stateful"],  # the long hypothesis run: tests/test_storage_conformance.py
        cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    return result.stdout


@pytest.mark.parametrize("installed", [True, False], ids=["pip-installed", "not-installed"])
def test_documented_plugin_test_passes_installed_or_not(
    shout_package: tuple[Path, Path], installed: bool
) -> None:
    project, site = shout_package
    _pytest_in(project, PLUGIN_TEST, installed=site if installed else None)


def test_registering_an_installed_plugin_again_is_not_a_duplicate(
    shout_package: tuple[Path, Path],
) -> None:
    project, site = shout_package
    _pytest_in(project, OLD_PLUGIN_TEST, installed=site)


def test_fixture_loads_exactly_the_plugin_under_test(shout_package: tuple[Path, Path]) -> None:
    """Another installed plugin (here: the postgres storage, if present, and a second
    throwaway one) stays out; the plugin under test is listed with its package."""
    project, site = shout_package
    test = '''
import langswarm_shout


def test_only_builtins_and_the_plugin(langswarm_plugins):
    plugins = langswarm_plugins(langswarm_shout)
    third_party = [(i.name, i.package) for i in plugins.plugins(include_builtin=False)]
    assert third_party == [("langswarm_shout", "langswarm-shout")], third_party
    assert "reverse" in plugins.providers and "sqlite" in plugins.storages
    assert "postgres" not in plugins.storages
'''
    out = _pytest_in(project, test, installed=site)
    assert "1 passed" in out


# -- the chat on a terminal ---------------------------------------------------------------


#: In the new session: take the pty on stdin as controlling terminal, then become the CLI.
_ON_TERMINAL = (
    "import fcntl, os, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'langswarm_runtime.cli', *sys.argv[1:]])\n"
)


class Terminal:
    """langswarm-run chatting on a pseudo-terminal that is its controlling terminal, so
    Ctrl-C (\\x03) is a real SIGINT from the line discipline."""

    def __init__(self, cfg: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ON_TERMINAL, "--config", str(cfg)],
            stdin=slave, stdout=slave, stderr=slave, cwd=cfg.parent, env=_env(),
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 30, *, count: int = 1) -> None:
        """Read until ``marker`` has been seen ``count`` times in all."""
        deadline = time.monotonic() + timeout
        while self.seen.count(marker) < count:
            assert time.monotonic() < deadline, self.seen.decode(errors="replace")
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    break
        assert self.seen.count(marker) >= count, self.seen.decode(errors="replace")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 30) -> int:
        """Exit code; the safety timeout only guards against a hang (no Enter is sent)."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.drain()

    def drain(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                return
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.seen += chunk

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal(cfg: Path) -> Iterator[Terminal]:
    term = Terminal(cfg)
    try:
        yield term
    finally:
        term.close()


def test_ctrl_c_at_an_idle_prompt_ends_the_chat_at_once(terminal: Terminal, cfg: Path) -> None:
    terminal.read_until(b"you> ")
    terminal.send(b"hello tty\n")
    terminal.read_until(b"echo: hello tty [earlier messages: 0]")
    terminal.read_until(b"you> ", count=2)  # idle at the next prompt
    terminal.send(b"\x03")  # Ctrl-C, and no Enter after it
    assert terminal.wait() == 130
    text = terminal.seen.decode(errors="replace")
    after = text.rsplit("you> ", 1)[1]
    assert [line for line in after.replace("^C", "").split() if line] == ["interrupted"], text
    assert "Traceback" not in text
    # The session and its turn are kept.
    listed = run("--config", str(cfg), "sessions", "list", "--all-users", cwd=cfg.parent)
    assert len(listed.stdout.splitlines()) == 1


def test_ctrl_c_before_any_message_leaves_no_session(terminal: Terminal, cfg: Path) -> None:
    terminal.read_until(b"you> ")
    terminal.send(b"\x03")
    assert terminal.wait() == 130
    assert stored_sessions(cfg.parent / "chat.db") == 0


def test_unknown_command_on_a_terminal_is_an_error_and_the_chat_goes_on(
    terminal: Terminal, cfg: Path
) -> None:
    terminal.read_until(b"you> ")
    terminal.send(b"/frobnicate now\n")
    terminal.read_until(b"known commands: /exit, /help, /history, /quit")
    terminal.read_until(b"you> ", count=2)
    terminal.send(b"//frobnicate is text\n")  # the escape: sent as "/frobnicate is text"
    terminal.read_until(b"echo: /frobnicate is text [earlier messages: 0]")
    terminal.send(b"/exit\n")
    assert terminal.wait() == 0
    sid = terminal.seen.split(b"session: ")[1].split()[0].decode()
    export = run("--config", str(cfg), "sessions", "export", sid, "--include-failed",
                 cwd=cfg.parent)
    contents = [json.loads(line)["content"] for line in export.stdout.splitlines()]
    assert contents == ["/frobnicate is text", "echo: /frobnicate is text [earlier messages: 0]"]


def test_unknown_command_on_stdin_is_an_error_and_nothing_is_sent(cfg: Path) -> None:
    result = run("--config", str(cfg), "--json", cwd=cfg.parent,
                 stdin="hello\n/usr/bin is a path, not a command\n/frobnicate\nafter\n")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "unknown command '/frobnicate'" in line
    assert "/exit, /help, /history, /quit" in line
    turns = [json.loads(x) for x in result.stdout.splitlines()]
    assert [t["content"] for t in turns] == [
        "echo: hello [earlier messages: 0]",
        "echo: /usr/bin is a path, not a command [earlier messages: 2]",
    ]
    export = run("--config", str(cfg), "sessions", "export", turns[0]["session_id"],
                 "--include-failed", cwd=cfg.parent)
    assert "frobnicate" not in export.stdout and "after" not in export.stdout


# -- a refused first message leaves nothing behind ----------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        (["-m", "   "], "", 2),                                   # empty
        (["-m", "x" * 100], "", 2),                               # over max_message_bytes
        (["-m", "something forbiddenly odd"], "", 6),             # rejected by a middleware
        (["--json"], "something forbiddenly odd\n", 6),           # the same, from stdin
        (["--json"], "/frobnicate\n", 2),                         # not a message at all
    ],
    ids=["empty", "too-large", "middleware", "middleware-stdin", "unknown-command"],
)
def test_a_refused_first_message_leaves_no_session(
    cfg: Path, args: list[str], stdin: str, code: int
) -> None:
    result = run("--config", str(cfg), *args, cwd=cfg.parent, stdin=stdin)
    assert result.returncode == code, result.stderr
    one_line_error(result)
    listed = run("--config", str(cfg), "sessions", "list", "--all-users", cwd=cfg.parent)
    assert listed.returncode == 0 and listed.stdout == ""
    assert stored_sessions(cfg.parent / "chat.db") == 0


def test_a_turn_that_reached_the_provider_keeps_its_session(cfg: Path) -> None:
    failed = run("--config", str(cfg), "--provider", "broken", "-m", "hello", cwd=cfg.parent)
    assert failed.returncode == 3
    assert stored_sessions(cfg.parent / "chat.db") == 1  # with its failed turn


def test_a_refused_message_in_an_existing_session_keeps_it(cfg: Path) -> None:
    made = run("--config", str(cfg), "--json", "-m", "hello", cwd=cfg.parent)
    sid = json.loads(made.stdout)["session_id"]
    empty = run("--config", str(cfg), "--session", sid, "-m", "forbidden", cwd=cfg.parent)
    assert empty.returncode == 6
    assert run("--config", str(cfg), "sessions", "show", sid, cwd=cfg.parent).returncode == 0


# -- a provider whose SDK is not installed -------------------------------------------------

#: Installed through sitecustomize: the named modules (and their submodules) cannot be
#: found, exactly as when the package is not installed.
_BLOCKER = '''
import os, sys

_BLOCKED = tuple(m for m in os.environ.get("BLOCK_MODULES", "").split(",") if m)


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in _BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
'''


@pytest.fixture
def without_sdk(tmp_path: Path) -> Path:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_BLOCKER)
    return blocker


@pytest.mark.parametrize("entry", sorted(OFFLINE_ENTRIES))
def test_missing_sdk_is_a_config_error_before_anything_is_stored(
    entry: str, tmp_path: Path, without_sdk: Path
) -> None:
    _, module, extra = OFFLINE_ENTRIES[entry]
    env = _env(
        PYTHONPATH=os.pathsep.join([str(without_sdk), str(ROOT)]),
        BLOCK_MODULES=module,
        LANGSWARM_DB=str(tmp_path / "offline.db"),
    )
    sanity = subprocess.run([sys.executable, "-c", f"import {module}"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert sanity.returncode != 0 and "ModuleNotFoundError" in sanity.stderr
    result = run("--config", str(OFFLINE), "--provider", entry, "-m", "hello",
                 cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert f"pip install 'langswarm-runtime[{extra}]'" in line
    assert f"from a clone: pip install '.[{extra}]'" in line
    assert stored_sessions(tmp_path / "offline.db") == 0
    # The library says the same from create_session, and stores nothing either.
    code = textwrap.dedent(f"""
        import asyncio
        from langswarm_runtime import SessionManager
        from langswarm_runtime.errors import ConfigError

        async def main():
            async with SessionManager.from_config({str(OFFLINE)!r}) as manager:
                try:
                    await manager.create_session(user_id="u1", provider={entry!r})
                except ConfigError as exc:
                    print("ConfigError", exc)
                print("stored", len(await manager.list_sessions()))

        asyncio.run(main())
        """)
    lib = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert lib.returncode == 0, lib.stderr
    assert "ConfigError" in lib.stdout and "stored 0" in lib.stdout, lib.stdout


def test_the_sdk_check_does_not_import_the_sdk(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import asyncio, sys
        from langswarm_runtime import SessionManager

        async def main():
            async with SessionManager.from_config({str(OFFLINE)!r}) as manager:
                for entry in {sorted(OFFLINE_ENTRIES)!r}:
                    await manager.create_session(user_id="u1", provider=entry)
            sdks = [m for m in sys.modules
                    if m.split(".")[0] in ("openai", "anthropic", "cohere", "mistralai")
                    or m.startswith("google.genai")]
            print("SDKS", sdks)

        asyncio.run(main())
        """)
    env = _env(LANGSWARM_DB=str(tmp_path / "offline.db"))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "SDKS []" in result.stdout


# -- the emulator from the command line ----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["-m", "langswarm_runtime.cli", "emulator"], ["-m", "langswarm_runtime.testing.emulator"]],
    ids=["langswarm-run", "python-m"],
)
def test_emulator_on_a_busy_port_is_one_line_and_non_zero(
    command: list[str], tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, *command, "--port", str(port)], cwd=tmp_path, env=_env(),
            capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "already in use" in lines[0].lower()
    assert result.stdout == ""


def test_emulator_default_port_is_in_help(tmp_path: Path) -> None:
    from langswarm_runtime.cli import EMULATOR_PORT

    assert EMULATOR_PORT == DEFAULT_PORT == 8765
    for command in (["-m", "langswarm_runtime.cli", "emulator"],
                    ["-m", "langswarm_runtime.testing.emulator"]):
        shown = subprocess.run([sys.executable, *command, "--help"], cwd=tmp_path, env=_env(),
                               capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0
        assert f"default: {DEFAULT_PORT}" in shown.stdout, shown.stdout
    top = run("--help", cwd=tmp_path)
    assert f"port {DEFAULT_PORT}" in " ".join(top.stdout.split())


# -- every provider offline ---------------------------------------------------------------


def test_offline_config_never_falls_back_to_a_real_endpoint() -> None:
    hostile = {  # what a user's shell may well have
        "OPENAI_BASE_URL": "https://api.example.invalid/v1",
        "ANTHROPIC_BASE_URL": "https://api.example.invalid",
        "GOOGLE_GEMINI_BASE_URL": "https://api.example.invalid",
        "CO_API_URL": "https://api.example.invalid",
        "MISTRAL_BASE_URL": "https://api.example.invalid",
        "OPENAI_API_KEY": "sk-real-key-0123456789", "LANGSWARM_LOAD_PLUGINS": "",
    }
    for environ in ({"LANGSWARM_LOAD_PLUGINS": ""}, hostile):
        config, _ = load_config(OFFLINE, environ=environ)
        entries = {n: b for n, b in config.providers.items() if b.type != "echo"}
        assert {n: b.type for n, b in entries.items()} == {
            n: t for n, (t, _, _) in OFFLINE_ENTRIES.items()}
        for name, block in entries.items():
            options = block.options
            assert options.base_url == f"http://127.0.0.1:{DEFAULT_PORT}/{block.type}", name
            assert options.api_key.get_secret_value() == "offline-dummy-key", name


def test_offline_config_validates_and_runs_a_turn_on_every_provider(tmp_path: Path) -> None:
    with ProviderEmulator() as emu:
        env = _env(LANGSWARM_EMULATOR_URL=emu.base_url, LANGSWARM_DB=str(tmp_path / "o.db"),
                   OPENAI_BASE_URL="https://api.example.invalid/v1")
        valid = run("--config", str(OFFLINE), "config", "validate", cwd=tmp_path, env=env)
        assert valid.returncode == 0, valid.stderr
        for entry, (provider_type, _, _) in sorted(OFFLINE_ENTRIES.items()):
            emu.clear()
            turn = run("--config", str(OFFLINE), "--provider", entry, "--json", "-m", "hello",
                       cwd=tmp_path, env=env)
            assert turn.returncode == 0, (entry, turn.stderr)
            assert json.loads(turn.stdout)["content"] == "echo: hello [earlier messages: 0]"
            assert {r.provider for r in emu.requests} == {provider_type}, entry


# -- the built wheel ---------------------------------------------------------------------


def test_wheel_ships_py_typed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "langswarm_runtime", src / "langswarm_runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("langswarm_runtime-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "langswarm_runtime/py.typed" in names
    assert "langswarm_runtime/cli.py" in names
