"""The CLI's default user is a user: every command that takes a session id acts as
``--user``, else ``defaults.user_id``, and another user's session is exactly a missing one;
reaching every user's sessions takes an explicit ``--all-users``. Run as real processes on
SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING = "ses_nobodyhasthisid0000000"


class Cli:
    def __init__(self, tmp_path: Path, storage_config: dict[str, Any], kind: str) -> None:
        self.cwd = tmp_path
        self.config = tmp_path / "swarm.yaml"
        self.config.write_text(
            "version: 1\n"
            f"storage: {json.dumps(storage_config)}\n"
            "defaults: {provider: local, user_id: alice}\n"
            "providers:\n  local: {type: echo}\n",
            encoding="utf-8",
        )
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            # The storage plugin under test, and nothing else installed.
            "LANGSWARM_LOAD_PLUGINS": "" if kind == "sqlite" else kind,
        }
        self.env.pop("LANGSWARM_CONFIG", None)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "langswarm_runtime.cli", "--config", str(self.config), *args],
            cwd=self.cwd, env=self.env, input="", capture_output=True, text=True,
            timeout=120, check=False,
        )

    def new_session(self, *user: str) -> str:
        made = self(*user, "--json", "-m", "hello")
        assert made.returncode == 0, made.stderr
        return str(json.loads(made.stdout)["session_id"])


@pytest.fixture
def cli(tmp_path: Path, storage_config: dict[str, Any], storage_kind: str) -> Cli:
    return Cli(tmp_path, storage_config, storage_kind)


def _as_missing(result: subprocess.CompletedProcess[str], sid: str) -> tuple[int, str, str]:
    """What a user can observe, with the id itself taken out."""
    return result.returncode, result.stdout, result.stderr.replace(sid, "ID")


COMMANDS = [
    ("sessions", "show"),
    ("sessions", "show", "--json"),
    ("sessions", "export"),
    ("sessions", "export", "--format", "markdown"),
    ("sessions", "delete"),
]


def test_another_users_session_is_a_missing_one_without_user(cli: Cli) -> None:
    bobs = cli.new_session("--user", "bob")
    for command in COMMANDS:
        foreign = cli(*command, bobs)
        missing = cli(*command, MISSING)
        assert foreign.returncode == 4, (command, foreign.stdout, foreign.stderr)
        assert _as_missing(foreign, bobs) == _as_missing(missing, MISSING), command
        assert "Traceback" not in foreign.stderr
    # Resuming it as the default user neither answers nor writes anything.
    resumed = cli("--session", bobs, "-m", "let me in")
    assert _as_missing(resumed, bobs) == _as_missing(cli("--session", MISSING, "-m", "x"), MISSING)
    assert resumed.returncode == 4
    # Bob's session is intact: one turn, not deleted, nothing added.
    export = cli("--user", "bob", "sessions", "export", bobs)
    assert export.returncode == 0, export.stderr
    assert [json.loads(line)["content"] for line in export.stdout.splitlines()] == [
        "hello", "echo: hello [earlier messages: 0]",
    ]


def test_list_shows_the_default_users_sessions_and_all_users_says_so(cli: Cli) -> None:
    alices = cli.new_session()
    bobs = cli.new_session("--user", "bob")
    default = cli("sessions", "list")
    assert default.returncode == 0, default.stderr
    assert alices in default.stdout and bobs not in default.stdout
    as_bob = cli("--user", "bob", "sessions", "list", "--json")
    assert [json.loads(line)["session_id"] for line in as_bob.stdout.splitlines()] == [bobs]
    everyone = cli("sessions", "list", "--all-users")
    assert everyone.returncode == 0, everyone.stderr
    assert alices in everyone.stdout and bobs in everyone.stdout


def test_all_users_reaches_another_users_session_explicitly(cli: Cli) -> None:
    bobs = cli.new_session("--user", "bob")
    shown = cli("sessions", "show", bobs, "--all-users")
    assert shown.returncode == 0, shown.stderr
    assert "user:     bob" in shown.stdout
    exported = cli("sessions", "export", bobs, "--all-users")
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 2
    deleted = cli("sessions", "delete", bobs, "--all-users")
    assert deleted.returncode == 0, deleted.stderr
    assert cli("--user", "bob", "sessions", "show", bobs).returncode == 4


def test_the_owner_reaches_their_session(cli: Cli) -> None:
    alices = cli.new_session()
    assert cli("sessions", "show", alices).returncode == 0
    again = cli("--session", alices, "-m", "again")
    assert again.returncode == 0 and "earlier messages: 2" in again.stdout
    assert cli("--user", "alice", "sessions", "delete", alices).returncode == 0


@pytest.mark.parametrize("storage_kind", ["sqlite"], indirect=True)
def test_all_users_and_user_exclude_each_other(cli: Cli) -> None:
    result = cli("--user", "bob", "sessions", "list", "--all-users")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --all-users and --user exclude each other"
    ]


@pytest.mark.parametrize("storage_kind", ["sqlite"], indirect=True)
def test_help_says_whose_sessions_commands_see(cli: Cli) -> None:
    top = cli("--help")
    assert "defaults.user_id" in top.stdout and "--all-users" in top.stdout
    for action in ("list", "show", "export", "delete"):
        sub = cli("sessions", action, "--help")
        assert sub.returncode == 0 and "--all-users" in sub.stdout, action
        assert "defaults.user_id" in sub.stdout, action
    # Chat writes in the user's name: no operator override there.
    assert "--all-users" not in cli("chat", "--help").stdout
