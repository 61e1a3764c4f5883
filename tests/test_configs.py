"""The example configs in configs/: every file loads, and every provider example holds a real
conversation through its official SDK against the loopback emulator, across a restart.

Files are globbed, so a new example is covered the day it is added. The ``${VAR}`` names a
test sets are read from each file itself (api_key / base_url references), not hard-coded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from langswarm_runtime import SessionManager
from langswarm_runtime.config import load_config
from langswarm_runtime.errors import ConfigError
from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.session.models import SessionBackend
from langswarm_runtime.testing.emulator import ProviderEmulator

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
BUILTIN_STORAGES = {"memory", "sqlite"}
SECRET = "sk-dummy-config-test-0123456789abcdef"
_REF = re.compile(r"\$\{(\w+)")


def _raw(path: Path) -> dict[str, Any]:
    """The file as written (``${VAR}`` references unexpanded)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _refs(value: Any) -> list[str]:
    return _REF.findall(value) if isinstance(value, str) else []


def _all_refs(path: Path) -> set[str]:
    return set(_REF.findall(path.read_text(encoding="utf-8")))


def _default_entry(path: Path) -> tuple[str, dict[str, Any]]:
    raw = _raw(path)
    name = raw.get("defaults", {}).get("provider", "echo")
    return name, raw.get("providers", {}).get(name) or {"type": name}


def _env(path: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A dummy value for every secret the file references; data files under tmp_path;
    base URLs left unset (so they expand to null) unless given in ``extra``."""
    env = {"PATH": os.environ.get("PATH", ""), "LANGSWARM_LOAD_PLUGINS": ""}
    for var in _all_refs(path):
        if var.endswith(("_API_KEY", "_KEY")):
            env[var] = SECRET
    env["LANGSWARM_DB"] = str(tmp_path / "sessions.db")
    env["LANGSWARM_AUDIT_LOG"] = str(tmp_path / "audit.jsonl")
    env.update(extra)
    return env


def _storage_plugin_env(path: Path, env: dict[str, str]) -> None:
    """configs/postgres.yaml etc. belong to storage plugins: load that plugin, or skip."""
    storage_type = _raw(path).get("storage", {}).get("type", "sqlite")
    if storage_type in BUILTIN_STORAGES:
        return
    found = [ep for ep in entry_points(group="langswarm_runtime") if ep.name == storage_type]
    if not found:
        pytest.skip(f"storage plugin {storage_type!r} is not installed")
    try:
        found[0].load()
    except ImportError as exc:
        pytest.skip(f"storage plugin {storage_type!r} is not importable: {exc}")
    env["LANGSWARM_LOAD_PLUGINS"] = storage_type


def _is_provider_example(path: Path) -> bool:
    _, entry = _default_entry(path)
    return entry.get("type") not in (None, "echo")


PROVIDER_CONFIGS = [p for p in CONFIGS if _is_provider_example(p)]


# -- every file loads ----------------------------------------------------------------------


def test_configs_dir_has_every_example() -> None:
    names = {p.name for p in CONFIGS}
    assert "swarm.yaml" in names and "multi-provider.yaml" in names
    pm = PluginManager(environ={"LANGSWARM_LOAD_PLUGINS": ""})
    covered = {_default_entry(p)[1]["type"]: p for p in PROVIDER_CONFIGS}
    for provider in pm.providers.names():
        if provider == "echo":
            continue
        assert provider in covered, f"no example config for provider {provider!r}"
        plugin = pm.providers.get(provider)
        assert plugin is not None
        if getattr(plugin.factory, "supports_native", False):
            native = [p for p in PROVIDER_CONFIGS if _default_entry(p)[1]["type"] == provider
                      and _raw(p)["defaults"].get("backend") == "native"]
            assert native, f"no native example config for provider {provider!r}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path: Path, tmp_path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith("#"), "start with a header comment"
    env = _env(path, tmp_path)
    _storage_plugin_env(path, env)
    config, pm = load_config(path, environ=env)
    assert config.source == str(path)
    default = config.defaults.provider
    assert default in config.providers or default in pm.providers
    shown = json.dumps(config.redacted())
    assert SECRET not in shown  # keys are SecretStr, masked wherever config is shown
    for name, block in config.providers.items():
        raw = _raw(path)["providers"][name] or {}
        options: Any = block.options
        if "api_key" in raw:
            assert options.api_key is not None or _refs(raw["api_key"])
        if re.fullmatch(r"\$\{\w+:-\}", str(raw.get("base_url"))):
            assert options.base_url is None  # unset: the SDK's default host
    if _raw(path).get("storage", {}).get("type") == "sqlite":
        storage: Any = config.storage.options
        assert storage.path == env["LANGSWARM_DB"]


@pytest.mark.parametrize("path", PROVIDER_CONFIGS, ids=lambda p: p.name)
def test_provider_config_needs_its_key(path: Path, tmp_path: Path) -> None:
    """A required ``${X_API_KEY}`` that is unset is a ConfigError naming the variable
    (and never a request with an empty key)."""
    _, entry = _default_entry(path)
    required = [v for v in _refs(entry.get("api_key")) if ":-" not in entry["api_key"]]
    if not required:
        pytest.skip("the key has a default (an OpenAI-compatible local server)")
    env = _env(path, tmp_path)
    env.pop(required[0])
    with pytest.raises(ConfigError, match=required[0]):
        load_config(path, environ=env)


def test_provider_base_urls_default_to_the_sdk() -> None:
    """Hosted-provider examples leave base_url to the SDK unless ``X_BASE_URL`` is set."""
    for path in PROVIDER_CONFIGS:
        for name, entry in (_raw(path).get("providers") or {}).items():
            if (entry or {}).get("type") in (None, "echo") or "api" in (entry or {}):
                continue
            assert re.fullmatch(r"\$\{\w+:-\}", entry["base_url"]), (path.name, name)


# -- real turns against the emulator -------------------------------------------------------


async def _say(session: Any, text: str, streamed: bool) -> str:
    if streamed:
        return "".join([d async for d in session.stream_message(text)])
    return str((await session.send_message(text)).content)


def _emulator_env(path: Path, tmp_path: Path, emu: ProviderEmulator) -> dict[str, str]:
    """Point every entry's ``base_url`` variable at the emulator's root for its SDK (the
    adapters add or drop the version segment each SDK expects)."""
    extra: dict[str, str] = {}
    for entry in (_raw(path).get("providers") or {}).values():
        entry = entry or {}
        for var in _refs(entry.get("base_url")):
            extra[var] = emu.url(entry["type"])
    return _env(path, tmp_path, **extra)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("path", PROVIDER_CONFIGS, ids=lambda p: p.name)
async def test_provider_config_turns_across_restart(
    path: Path, tmp_path: Path, provider_emulator: ProviderEmulator, streamed: bool
) -> None:
    name, entry = _default_entry(path)
    env = _emulator_env(path, tmp_path, provider_emulator)
    configured = _raw(path)["defaults"].get("backend", "auto")

    async with SessionManager.from_config(path, environ=env) as manager:
        session = await manager.create_session(user_id="u1")
        sid = session.session_id
        assert session.provider == name
        if configured != "auto":
            assert session.backend is SessionBackend(configured)
        assert await _say(session, "one", streamed) == "echo: one [earlier messages: 0]"
        assert await _say(session, "two", streamed) == "echo: two [earlier messages: 2]"

    async with SessionManager.from_config(path, environ=env) as manager:  # the "restart"
        resumed = await manager.get_session(sid, user_id="u1")
        assert resumed is not None
        session = resumed
        assert await _say(session, "three", streamed) == "echo: three [earlier messages: 4]"
        history = await session.get_history()
        assert [m.role for m in history] == ["user", "assistant"] * 3
        assert [m.content for m in history if m.role == "user"] == ["one", "two", "three"]

    sent = [r for r in provider_emulator.requests if r.provider == entry["type"]]
    assert sent, "no request reached the emulator for this provider"
    assert all(r.provider == entry["type"] for r in provider_emulator.requests)
    assert SECRET not in repr(provider_emulator.requests)
    assert SECRET not in (tmp_path / "sessions.db").read_bytes().decode("latin-1")


async def test_multi_provider_entries_switch_and_middleware(
    tmp_path: Path, provider_emulator: ProviderEmulator
) -> None:
    """Every entry of the multi-provider example answers through its SDK; one session
    walks through all of them carrying its history; the middleware chain keeps an e-mail
    address away from every provider, the database and the audit log."""
    path = CONFIG_DIR / "multi-provider.yaml"
    env = _emulator_env(path, tmp_path, provider_emulator)
    entries = [n for n, e in _raw(path)["providers"].items() if (e or {}).get("type") != "echo"]
    async with SessionManager.from_config(path, environ=env) as manager:
        session = await manager.create_session(user_id="u1", backend=SessionBackend.HYBRID)
        assert session.provider == "local"
        reply = await session.send_message("write to bob@example.com")
        assert "bob@example.com" not in reply.content
        sid = session.session_id
        for i, entry in enumerate(entries, start=1):
            await session.switch_provider(entry, backend=SessionBackend.HYBRID)
            streamed = i % 2 == 0
            text = await _say(session, f"turn {i}", streamed)
            assert text == f"echo: turn {i} [earlier messages: {2 * i}]", entry

    async with SessionManager.from_config(path, environ=env) as manager:
        resumed = await manager.get_session(sid, user_id="u1")
        assert resumed is not None and resumed.provider == entries[-1]  # switch persisted
        history = await resumed.get_history()
        assert len(history) == 2 * (len(entries) + 1)

    providers_hit = {r.provider for r in provider_emulator.requests}
    assert providers_hit == {e["type"] for n, e in _raw(path)["providers"].items()
                             if n in entries}
    assert "bob@example.com" not in repr([r.json for r in provider_emulator.requests])
    assert b"bob@example.com" not in (tmp_path / "sessions.db").read_bytes()
    audit = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(audit) == 2 * (len(entries) + 1)
    assert "bob@example.com" not in "".join(audit)


async def test_default_swarm_yaml_turns_across_restart(tmp_path: Path) -> None:
    path = CONFIG_DIR / "swarm.yaml"
    env = _env(path, tmp_path, USER="carol")
    async with SessionManager.from_config(path, environ=env) as manager:
        session = await manager.create_session()
        assert session.user_id == "carol"
        assert session.system_prompt == "You are a helpful assistant talking to carol."
        first = await session.send_message("hello")
        sid = session.session_id
    async with SessionManager.from_config(path, environ=env) as manager:
        resumed = await manager.get_session(sid, user_id="carol")
        assert resumed is not None
        second = "".join([d async for d in resumed.stream_message("again")])
        history = await resumed.get_history()
    assert first.content and second
    assert [m.content for m in history] == ["hello", first.content, "again", second]
    assert (tmp_path / "sessions.db").is_file()


def test_cli_turn_on_multi_provider_config_imports_no_sdk(tmp_path: Path) -> None:
    """With five SDK-backed entries configured, a turn on the echo entry imports none of
    their SDKs (tests/test_cli.py checks the same for a config with only echo)."""
    path = CONFIG_DIR / "multi-provider.yaml"
    code = (
        "import sys\nfrom langswarm_runtime.cli import main\n"
        f"rc = main(['--config', {str(path)!r}, '--no-stream', '-m', 'hi'])\n"
        "sdks = [m for m in ('openai', 'anthropic', 'google.genai', 'cohere', 'mistralai',"
        " 'httpx') if m in sys.modules]\n"
        "print('SDKS', sdks)\nsys.exit(rc)\n"
    )
    env = {**_env(path, tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "SDKS []" in result.stdout
    assert "echo" in result.stdout.lower() or "hi" in result.stdout
