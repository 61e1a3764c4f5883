"""``storage: {type: redis, ...}`` in swarm.yaml is all a user writes: the runtime
finds the plugin through its entry point, and ``langswarm-run sessions`` works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from langswarm_runtime import SessionManager


def _write_config(tmp_path: Path) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(
        "version: 1\n"
        "storage: {type: redis, url: '${REDIS_URL}', key_prefix: '${REDIS_PREFIX}'}\n"
        "providers: {local: {type: echo}}\n"
        "defaults: {provider: local}\n"
    )
    return path


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "langswarm_runtime.cli", *args],
        check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, **env},
    )


async def test_config_first_and_cli(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    config = _write_config(tmp_path)
    env = {"REDIS_URL": redis_url, "REDIS_PREFIX": key_prefix}
    manager = SessionManager.from_config(config, environ={**os.environ, **env})
    async with manager:
        assert type(manager.storage).__name__ == "RedisSessionStorage"
        session = await manager.create_session(user_id="cli-user")
        await session.send_message("hello from the config")
    listed = _run(["--config", str(config), "sessions", "list", "--user", "cli-user"], env)
    assert listed.returncode == 0, listed.stderr
    assert session.session_id in listed.stdout
    shown = _run(["--config", str(config), "sessions", "export", session.session_id,
                  "--user", "cli-user"], env)
    assert shown.returncode == 0, shown.stderr
    assert "hello from the config" in shown.stdout


def test_cli_unreachable_server_is_one_clear_line(tmp_path: Path, key_prefix: str) -> None:
    config = _write_config(tmp_path)
    env = {"REDIS_URL": "redis://:pw-SECRET-2@127.0.0.1:9/0", "REDIS_PREFIX": key_prefix}
    result = _run(["--config", str(config), "sessions", "list"], env)
    assert result.returncode == 5  # StorageError's exit code
    assert "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr and "pw-SECRET-2" not in result.stderr
    assert "pw-SECRET-2" not in result.stdout
