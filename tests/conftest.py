"""Shared fixtures.

Installed third-party plugins must never change what the tests see, so plugin loading is
restricted to none before anything builds a PluginManager; a test that wants a plugin names
it (``environ={"LANGSWARM_LOAD_PLUGINS": "..."}`` or ``monkeypatch.setenv``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Self

import pytest


class LoopTicker:
    """Counts 10 ms ticks of the running event loop while the block runs: a test that
    ``ticks`` kept growing shows the loop was never held up.
    ``async with LoopTicker() as loop: ...; assert loop.ticks >= 10``."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


os.environ["LANGSWARM_LOAD_PLUGINS"] = ""
os.environ.pop("LANGSWARM_TRACE_PLUGINS", None)
os.environ.pop("LANGSWARM_CONFIG", None)

# A PEP 517 backend small enough to live inside the throwaway packages, so building them
# needs neither the network nor `wheel`: it writes a pure-Python wheel from pyproject.toml.
_BACKEND = '''
import base64, hashlib, pathlib, tomllib, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
    dist = project["name"].replace("-", "_")
    info = f"{dist}-{project['version']}.dist-info"
    files = {p.name: p.read_bytes() for p in pathlib.Path(".").glob("*.py")
             if p.name != "_backend.py"}
    eps = "".join(
        f"[{group}]\\n" + "".join(f"{k} = {v}\\n" for k, v in items.items()) + "\\n"
        for group, items in project.get("entry-points", {}).items()
    )
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\\nName: {project['name']}\\nVersion: {project['version']}\\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\\nGenerator: throwaway\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    )
    files[f"{info}/entry_points.txt"] = eps.encode()
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{dist}-{project['version']}-py3-none-any.whl"
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel
'''

#: module name -> (distribution, source). Each becomes its own installed package.
THIRD_PARTY: dict[str, tuple[str, str]] = {
    "lsdemo_kv": ("langswarm-kv-demo", '''
        """A third-party plugin: a storage and a middleware, plus lifecycle hooks."""
        from pydantic import BaseModel, ConfigDict, SecretStr

        from langswarm_runtime import hookimpl
        from langswarm_runtime.session.middleware import ISessionMiddleware
        from langswarm_runtime.session.storage.memory import MemorySessionStorage

        EVENTS = []


        class KVConfig(BaseModel):
            model_config = ConfigDict(extra="forbid")
            prefix: str = "kv"
            token: SecretStr | None = None


        class KVStorage(MemorySessionStorage):
            def __init__(self, config: KVConfig) -> None:
                super().__init__()
                self.config = config


        class ShoutConfig(BaseModel):
            model_config = ConfigDict(extra="forbid")
            suffix: str = "!"


        class Shout(ISessionMiddleware):
            name = "shout"

            def __init__(self, config: ShoutConfig) -> None:
                self.config = config

            def process_outgoing_message(self, session, message):
                return message.model_copy(
                    update={"content": message.content.upper() + self.config.suffix})


        @hookimpl
        def register_storages(register):
            register("kv", KVStorage, KVConfig)


        @hookimpl
        def register_middlewares(register):
            register("shout", Shout, ShoutConfig)


        @hookimpl
        def startup(runtime):
            EVENTS.append(("startup", runtime))


        @hookimpl
        async def shutdown(runtime):
            EVENTS.append(("shutdown", runtime))
        '''),
    "lsdemo_broken": ("langswarm-broken-demo", '''
        raise ImportError("No module named 'frobnicate'")
        '''),
    "lsdemo_dup": ("langswarm-dup-demo", '''
        from langswarm_runtime import hookimpl
        from langswarm_runtime.session.storage.memory import MemorySessionStorage


        @hookimpl
        def register_storages(register):
            register("sqlite", MemorySessionStorage)
        '''),
    "lsdemo_typo": ("langswarm-typo-demo", '''
        from langswarm_runtime import hookimpl


        @hookimpl
        def register_storage(register):
            pass
        '''),
}


@pytest.fixture(scope="session")
def thirdparty_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the THIRD_PARTY packages were pip-installed (``--target``).

    Put it on ``sys.path`` (``monkeypatch.syspath_prepend``) or ``PYTHONPATH`` and their
    ``langswarm_runtime`` entry points are found like any installed plugin's; select them
    with ``LANGSWARM_LOAD_PLUGINS`` (by entry-point or distribution name).
    """
    root = tmp_path_factory.mktemp("thirdparty")
    site = root / "site"
    sources = []
    for module, (dist, code) in THIRD_PARTY.items():
        src = root / "src" / dist
        src.mkdir(parents=True)
        (src / "_backend.py").write_text(_BACKEND)
        (src / f"{module}.py").write_text(textwrap.dedent(code).lstrip())
        (src / "pyproject.toml").write_text(textwrap.dedent(f"""
            [build-system]
            requires = []
            build-backend = "_backend"
            backend-path = ["."]

            [project]
            name = "{dist}"
            version = "1.2.3"

            [project.entry-points.langswarm_runtime]
            {module} = "{module}"
            """))
        sources.append(str(src))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
         *sources],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    return site


#: One provider entry per built-in provider: name -> type (see ``five_provider_swarm``).
PROVIDER_ENTRIES = {"gpt": "openai", "claude": "anthropic", "gemini": "gemini",
                    "cohere": "cohere", "mistral": "mistral"}  # fmt: skip


@pytest.fixture
def five_provider_swarm(tmp_path: Path, provider_emulator: Any) -> Path:
    """A swarm.yaml on a SQLite file with an entry per built-in provider
    (``PROVIDER_ENTRIES``), each pointing at the emulator, no retries."""
    lines = ["version: 1", f'storage: {{type: sqlite, path: "{tmp_path / "s.db"}"}}',
             "providers:"]  # fmt: skip
    for name, kind in PROVIDER_ENTRIES.items():
        lines += [
            f"  {name}:",
            f"    type: {kind}",
            f"    model: {kind}-model",
            "    api_key: emulator-key-0123456789",
            f'    base_url: "{provider_emulator.url(kind)}"',
            "    max_retries: 0",
            "    timeout: 10",
        ]
    path = tmp_path / "swarm.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
