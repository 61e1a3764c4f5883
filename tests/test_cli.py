"""langswarm-run as a user runs it: a real process, real config files, real SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LANGSWARM_LOAD_PLUGINS": "", "PYTHONPATH": str(ROOT)}
    full_env.pop("LANGSWARM_CONFIG", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "langswarm_runtime.cli", *args],
        cwd=cwd, env=full_env, input=stdin if stdin is not None else "",
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        "version: 1\n"
        "storage: {type: sqlite, path: chat.db}\n"
        "defaults: {provider: local, user_id: alice}\n"
        "providers:\n"
        "  local: {type: echo}\n"
        "  broken: {type: echo, fail: true}\n",
        encoding="utf-8",
    )
    return path


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("session: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_one_turn_then_resume(cfg: Path) -> None:
    first = run("--config", str(cfg), "-m", "hello there", cwd=cfg.parent)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "echo: hello there [earlier messages: 0]"
    sid = first.stderr.split("session: ")[1].split()[0]
    second = run("--config", str(cfg), "--session", sid, "-m", "again", "--json", cwd=cfg.parent)
    assert second.returncode == 0, second.stderr
    data = json.loads(second.stdout)
    assert data["session_id"] == sid
    assert data["content"] == "echo: again [earlier messages: 2]"
    assert data["usage"]["output_tokens"] > 0


def test_stdin_lines_are_messages_and_history_command(cfg: Path) -> None:
    result = run("--config", str(cfg), "--json", cwd=cfg.parent, stdin="one\ntwo\n/history\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    turns = [json.loads(line) for line in lines[:2]]
    assert [t["content"] for t in turns] == [
        "echo: one [earlier messages: 0]",
        "echo: two [earlier messages: 2]",
    ]
    assert lines[2:] and "user: one" in lines[2]


def test_unknown_or_foreign_session_exits_4(cfg: Path) -> None:
    result = run("--config", str(cfg), "--session", "ses_missing", "-m", "x", cwd=cfg.parent)
    assert result.returncode == 4
    assert "not found" in one_line_error(result)
    made = run("--config", str(cfg), "--json", "-m", "mine", cwd=cfg.parent)
    sid = json.loads(made.stdout)["session_id"]
    foreign = run("--config", str(cfg), "--user", "mallory", "--session", sid, "-m", "x",
                  cwd=cfg.parent)
    assert foreign.returncode == 4
    shown = run("--config", str(cfg), "--user", "mallory", "sessions", "show", sid,
                cwd=cfg.parent)
    assert shown.returncode == 4


def test_provider_failure_exits_3(cfg: Path) -> None:
    result = run("--config", str(cfg), "--provider", "broken", "-m", "x", cwd=cfg.parent)
    assert result.returncode == 3
    assert "broken" in one_line_error(result)


@pytest.mark.parametrize("body", ["version: 1\nstorage: [unclosed\n", "version: 1\nbogus: 1\n"])
def test_bad_config_exits_2_with_file_name(tmp_path: Path, body: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    result = run("--config", str(path), "-m", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.yaml" in one_line_error(result)
    assert not list(tmp_path.glob("*.db"))


def test_missing_explicit_config_exits_2(tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "nope.yaml"), "-m", "x", cwd=tmp_path)
    assert result.returncode == 2
    one_line_error(result)


def test_empty_message_exits_2_and_stores_nothing(cfg: Path) -> None:
    result = run("--config", str(cfg), "-m", "   ", cwd=cfg.parent)
    assert result.returncode == 2
    assert "empty" in one_line_error(result)
    rows = sqlite3.connect(cfg.parent / "chat.db").execute("select count(*) from messages")
    assert rows.fetchone() == (0,)


def test_usage_error_exits_2(cfg: Path) -> None:
    result = run("--config", str(cfg), "--backend", "sideways", cwd=cfg.parent)
    assert result.returncode == 2


def test_sessions_commands(cfg: Path) -> None:
    made = run("--config", str(cfg), "--json", cwd=cfg.parent, stdin="a\nb\n")
    sid = json.loads(made.stdout.splitlines()[0])["session_id"]
    listed = run("--config", str(cfg), "sessions", "list", cwd=cfg.parent)
    assert sid in listed.stdout
    shown = run("--config", str(cfg), "sessions", "show", sid, cwd=cfg.parent)
    assert shown.returncode == 0 and "usage:" in shown.stdout and "echo: b" in shown.stdout
    jsonl = run("--config", str(cfg), "sessions", "export", sid, cwd=cfg.parent)
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [r["role"] for r in rows] == ["user", "assistant", "user", "assistant"]
    md = run("--config", str(cfg), "sessions", "export", sid, "--format", "markdown",
             cwd=cfg.parent)
    assert md.stdout.startswith(f"# Session {sid}") and "## assistant" in md.stdout
    deleted = run("--config", str(cfg), "sessions", "delete", sid, cwd=cfg.parent)
    assert deleted.returncode == 0
    again = run("--config", str(cfg), "sessions", "show", sid, cwd=cfg.parent)
    assert again.returncode == 4


def test_config_commands_redact_secrets(tmp_path: Path) -> None:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        "version: 1\nstorage: {type: memory}\ndefaults: {provider: local}\n"
        "providers:\n  local:\n    type: echo\n    api_key: ${MY_KEY}\n",
        encoding="utf-8",
    )
    env = {"MY_KEY": "sk-very-secret-value"}
    ok = run("--config", str(path), "config", "validate", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    shown = run("--config", str(path), "config", "show", cwd=tmp_path, env=env)
    assert shown.returncode == 0
    assert "sk-very-secret-value" not in shown.stdout and "local" in shown.stdout
    unset = run("--config", str(path), "config", "validate", cwd=tmp_path)
    assert unset.returncode == 2 and "MY_KEY" in one_line_error(unset)
    schema = run("--config", str(path), "config", "schema", cwd=tmp_path, env=env)
    assert "properties" in json.loads(schema.stdout)


def test_plugins_lists_builtins(cfg: Path) -> None:
    result = run("--config", str(cfg), "plugins", "--all", cwd=cfg.parent)
    assert result.returncode == 0, result.stderr
    for name in ("echo", "sqlite", "memory"):
        assert name in result.stdout


def test_one_turn_imports_no_provider_sdk(cfg: Path) -> None:
    code = (
        "import sys\nfrom langswarm_runtime.cli import main\n"
        f"rc = main(['--config', {str(cfg)!r}, '-m', 'hi'])\n"
        "sdks = [m for m in ('openai', 'anthropic', 'google.genai', 'cohere', 'mistralai',"
        " 'httpx') if m in sys.modules]\n"
        "print('SDKS', sdks)\nsys.exit(rc)\n"
    )
    env = {**os.environ, "LANGSWARM_LOAD_PLUGINS": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=cfg.parent, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "SDKS []" in result.stdout


def test_interactive_chat_on_a_terminal(cfg: Path) -> None:
    import pty
    import select
    import time

    master, slave = pty.openpty()
    env = {**os.environ, "LANGSWARM_LOAD_PLUGINS": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "langswarm_runtime.cli", "--config", str(cfg)],
        stdin=slave, stdout=slave, stderr=slave, cwd=cfg.parent, env=env,
    )
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 20) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                seen += os.read(master, 4096)

    try:
        read_until(b"you> ")
        assert b"session: ses_" in seen
        os.write(master, b"hello tty\n")
        read_until(b"echo: hello tty [earlier messages: 0]")  # streamed to the terminal
        os.write(master, b"/history\n")
        read_until(b"assistant: echo: hello tty")
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_rejected_message_exits_6_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        "version: 1\nstorage: {type: sqlite, path: chat.db}\ndefaults: {provider: echo}\n"
        "middleware:\n  - type: validation\n    banned_patterns: ['forbidden\\w*']\n",
        encoding="utf-8",
    )
    result = run("--config", str(path), "-m", "something forbiddenly odd", cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    line = one_line_error(result)
    assert "rejected" in line and "forbiddenly" not in line
    rows = sqlite3.connect(tmp_path / "chat.db").execute("select count(*) from messages")
    assert rows.fetchone() == (0,)


def test_plugins_without_third_party_says_so(cfg: Path) -> None:
    result = run("--config", str(cfg), "plugins", cwd=cfg.parent)
    assert result.returncode == 0
    assert "no third-party plugins" in result.stdout


def test_config_validate_notes_that_native_sessions_ignore_the_context_policy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        "version: 1\nstorage: {type: memory}\ndefaults: {provider: local, backend: native}\n"
        "providers:\n  local: {type: echo, context: {max_messages: 10}}\n",
        encoding="utf-8",
    )
    result = run("--config", str(path), "config", "validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "providers.local" in result.stdout and "native" in result.stdout
    assert "context policy" in result.stdout


PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8ffff3f0005fe02fea7d6a5f60000000049454e44ae426082"
)


def test_attach_history_and_lossless_export(cfg: Path) -> None:
    image = cfg.parent / "cat.png"
    image.write_bytes(PNG_1X1)
    first = run("--config", str(cfg), "-m", "what is it", "--attach", str(image),
                cwd=cfg.parent)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == (
        f"echo: what is it [image/png {len(PNG_1X1)} bytes] [earlier messages: 0]"
    )
    sid = first.stderr.split("session: ")[1].split()[0]
    shown = run("--config", str(cfg), "sessions", "show", sid, cwd=cfg.parent)
    assert f"[image image/png {len(PNG_1X1)} bytes]" in shown.stdout
    markdown = run("--config", str(cfg), "sessions", "export", sid, "--format", "markdown",
                   cwd=cfg.parent).stdout  # fmt: skip
    assert f"what is it\n[image image/png {len(PNG_1X1)} bytes]" in markdown
    lines = run("--config", str(cfg), "sessions", "export", sid, cwd=cfg.parent).stdout
    from langswarm_runtime import Message

    user = Message.model_validate(json.loads(lines.splitlines()[0]))
    assert user.parts[1].data == PNG_1X1  # type: ignore[union-attr]  # bytes in the export
    history = run("--config", str(cfg), "--session", sid, cwd=cfg.parent, stdin="/history\n")
    assert f"[image image/png {len(PNG_1X1)} bytes]" in history.stdout


def test_attach_of_a_missing_file_is_one_line_and_stores_nothing(cfg: Path) -> None:
    result = run("--config", str(cfg), "-m", "x", "--attach", "nope.png", cwd=cfg.parent)
    assert result.returncode == 2
    assert one_line_error(result) == "error: --attach nope.png: no such file"
    assert not (cfg.parent / "chat.db").exists() or sqlite3.connect(
        cfg.parent / "chat.db").execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)



def test_chat_shows_tool_calls_as_they_happen(cfg: Path) -> None:
    (cfg.parent / "mytools.py").write_text(
        "def weather(city: str) -> str:\n"
        "    '''Current weather for a city.'''\n"
        "    return f'Sunny in {city}'\n",
        encoding="utf-8",
    )
    cfg.write_text(
        cfg.read_text(encoding="utf-8")
        + "tools:\n  weather: {type: python, function: 'mytools:weather'}\n",
        encoding="utf-8",
    )
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(
        "defaults: {provider: local, user_id: alice}",
        "defaults: {provider: local, user_id: alice, tools: [weather]}"), encoding="utf-8")
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{cfg.parent}"}
    result = run("--config", str(cfg), cwd=cfg.parent, env=env,
                 stdin='call weather {"city": "Oslo"}\n/history\n')  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '  -> weather {"city": "Oslo"}' in result.stderr  # shown while it runs
    assert "  <- weather (ok): Sunny in Oslo" in result.stderr
    assert "tool weather returned Sunny in Oslo" in result.stdout
    assert '[tool call weather {"city": "Oslo"}]' in result.stdout  # /history renders it
    assert "[tool weather returned: Sunny in Oslo]" in result.stdout
