"""Plugin manager: built-ins, entry-point loading and filtering, registries, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from langswarm_runtime import hookimpl
from langswarm_runtime import plugins as plugins_module
from langswarm_runtime.errors import ConfigError, PluginError
from langswarm_runtime.plugins import DEFAULT_PLUGINS, PluginManager
from langswarm_runtime.session.models import Message

ROOT = Path(__file__).resolve().parent.parent
NONE = {"LANGSWARM_LOAD_PLUGINS": ""}


def only(*names: str) -> dict[str, str]:
    return {"LANGSWARM_LOAD_PLUGINS": ",".join(names)}


@pytest.fixture
def site(thirdparty_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(thirdparty_site))
    return thirdparty_site


def pyproject_entry_points() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(data["project"]["entry-points"]["langswarm_runtime"])


# -- built-ins -------------------------------------------------------------------------
def test_builtins_register_through_hooks() -> None:
    pm = PluginManager(environ=NONE)
    assert "echo" in pm.providers
    assert {"memory", "sqlite"} <= set(pm.storages.names())
    echo = pm.providers.get("echo")
    assert echo is not None and echo.plugin == "echo" and echo.package == "langswarm-runtime"
    infos = {i.name: i for i in pm.plugins()}
    assert infos["echo"].builtin and infos["echo"].types == ["provider:echo"]
    assert infos["echo"].hooks == ["register_providers"]
    assert pm.plugins(include_builtin=False) == []


def test_default_plugins_agree_with_pyproject_entry_points() -> None:
    assert sorted(pyproject_entry_points().values()) == sorted(DEFAULT_PLUGINS)


def test_installed_metadata_is_not_stale() -> None:
    # An editable install keeps the entry points of the last `pip install -e .`.
    try:
        dist = metadata.distribution("langswarm-runtime")
    except metadata.PackageNotFoundError:
        pytest.skip("running from a source tree without installing")
    installed = {ep.name: ep.value for ep in dist.entry_points if ep.group == "langswarm_runtime"}
    assert installed == pyproject_entry_points(), "re-run: pip install -e . --no-deps"


def test_fallback_to_default_plugins_without_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(plugins_module.metadata, "distribution", missing)
    pm = PluginManager(environ=NONE)
    with_metadata = len(DEFAULT_PLUGINS)
    assert len([i for i in pm.plugins() if i.builtin]) == with_metadata
    assert "echo" in pm.providers and "sqlite" in pm.storages
    assert pm.providers.get("echo").version is None  # type: ignore[union-attr]


def test_disabling_a_builtin() -> None:
    pm = PluginManager(disabled=["echo"], environ=NONE)
    assert "echo" not in pm.providers
    assert pm.skipped == ["echo"]
    assert "echo" not in {i.name for i in pm.plugins()}
    with pytest.raises(ConfigError, match=r"disabled plugins: echo"):
        pm.providers.create("echo")
    # by module path too
    pm = PluginManager(disabled=["langswarm_runtime.session.storage.memory"], environ=NONE)
    assert "memory" not in pm.storages and "sqlite" in pm.storages


def test_plugin_loading_imports_no_provider_sdk() -> None:
    code = (
        "import sys\nfrom langswarm_runtime.plugins import PluginManager\nPluginManager()\n"
        "from langswarm_runtime.config import load_config\n"
        "print(sorted(m for m in ('openai','anthropic','google.genai','cohere','mistralai')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "LANGSWARM_LOAD_PLUGINS": ""}, check=True)
    assert out.stdout.strip() == "[]"


# -- third-party entry points ------------------------------------------------------------
def test_empty_allow_list_loads_no_third_party_plugin(site: Path) -> None:
    pm = PluginManager(environ=NONE)
    assert "kv" not in pm.storages and "shout" not in pm.middlewares


def test_load_entrypoints_false_loads_builtins_only(site: Path) -> None:
    pm = PluginManager(load_entrypoints=False, environ=only("lsdemo_kv"))
    assert "kv" not in pm.storages and "echo" in pm.providers


@pytest.mark.parametrize("selector", ["lsdemo_kv", "langswarm-kv-demo", "Langswarm_KV_Demo"])
def test_allow_list_by_entry_point_or_distribution(site: Path, selector: str) -> None:
    pm = PluginManager(environ=only(selector))
    kv = pm.storages.get("kv")
    assert kv is not None
    assert (kv.plugin, kv.package, kv.version) == ("lsdemo_kv", "langswarm-kv-demo", "1.2.3")
    assert "shout" in pm.middlewares
    [info] = pm.plugins(include_builtin=False)
    assert info.name == "lsdemo_kv" and not info.builtin
    assert info.types == ["storage:kv", "middleware:shout"]
    assert info.hooks == ["register_middlewares", "register_storages", "shutdown", "startup"]


def test_plugin_that_fails_to_import(site: Path) -> None:
    with pytest.raises(PluginError) as err:
        PluginManager(environ=only("lsdemo_kv", "lsdemo_broken"))
    text = str(err.value)
    assert "langswarm-broken-demo 1.2.3" in text and "frobnicate" in text
    assert "\n" not in text


def test_disabled_third_party_plugin_is_not_imported(site: Path) -> None:
    pm = PluginManager(disabled=["langswarm-broken-demo"],
                       environ=only("lsdemo_kv", "lsdemo_broken"))
    assert "kv" in pm.storages
    assert pm.skipped == ["lsdemo_broken"]


def test_duplicate_type_name_names_both_packages(site: Path) -> None:
    with pytest.raises(PluginError) as err:
        PluginManager(environ=only("lsdemo_dup"))
    text = str(err.value)
    assert "'lsdemo_dup' (package langswarm-dup-demo)" in text
    assert "storage type 'sqlite'" in text
    assert "plugin 'sqlite' (package langswarm-runtime)" in text


def test_misspelt_hook_is_a_plugin_error(site: Path) -> None:
    with pytest.raises(PluginError, match=r"lsdemo_typo.*langswarm-typo-demo.*register_storage"):
        PluginManager(environ=only("lsdemo_typo"))


async def test_startup_and_shutdown_hooks_are_awaited(site: Path) -> None:
    import lsdemo_kv  # type: ignore[import-not-found]

    lsdemo_kv.EVENTS.clear()
    pm = PluginManager(environ=only("lsdemo_kv"))
    runtime = SimpleNamespace(name="rt")
    await pm.startup(runtime)
    await pm.shutdown(runtime)
    assert lsdemo_kv.EVENTS == [("startup", runtime), ("shutdown", runtime)]


async def test_third_party_storage_and_middleware_work(site: Path) -> None:
    from langswarm_runtime.session.middleware import run_outgoing
    from langswarm_runtime.session.models import SessionRecord

    pm = PluginManager(environ=only("langswarm-kv-demo"))
    storage = pm.storages.create("kv", {"type": "kv", "prefix": "p1", "token": "tok"})
    assert storage.config.prefix == "p1"
    assert storage.config.token.get_secret_value() == "tok"
    await storage.create_session(SessionRecord(session_id="s1", user_id="u", provider="echo"))
    [stored] = await storage.append_messages("s1", [Message(role="user", content="x")])
    assert stored.seq is not None
    shout = pm.middlewares.create("shout", {"suffix": "?"})
    out = await run_outgoing([shout], None, Message(role="user", content="hi"))  # type: ignore[arg-type]
    assert out.content == "HI?"


def test_trace_prints_every_hook_call(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    pm = PluginManager(environ={"LANGSWARM_TRACE_PLUGINS": "1", **only("lsdemo_kv")})
    asyncio.run(pm.startup(object()))
    err = capsys.readouterr().err
    assert "register_providers -> echo" in err
    assert "register_storages -> lsdemo_kv" in err
    assert "startup(runtime) -> [lsdemo_kv]" in err
    PluginManager(environ=NONE)
    assert capsys.readouterr().err == ""


def test_fresh_process_finds_installed_plugin_and_config_uses_it(
    thirdparty_site: Path, tmp_path: Path
) -> None:
    # The acceptance check: a swarm.yaml using a third-party storage and
    # middleware works, with no change to core, in a process that only has it installed.
    (tmp_path / "swarm.yaml").write_text(textwrap.dedent("""
        version: 1
        storage: {type: kv, prefix: demo}
        middleware:
          - {type: shout, suffix: "!!"}
        """))
    script = textwrap.dedent("""
        import asyncio, json
        from langswarm_runtime import SessionManager

        async def main():
            async with SessionManager.from_config("swarm.yaml") as manager:
                session = await manager.create_session(user_id="u1")
                reply = await session.send_message("hello")
                history = await session.get_history()
                print(json.dumps({
                    "storage": type(manager.storage).__name__,
                    "reply": reply.content,
                    "history": [m.content for m in history],
                }))

        asyncio.run(main())
        """)
    env = {**os.environ, "PYTHONPATH": str(thirdparty_site)}
    env.pop("LANGSWARM_LOAD_PLUGINS")  # unset: every installed plugin...
    env["LANGSWARM_LOAD_PLUGINS"] = "langswarm-kv-demo"  # ...but the broken demos exist too
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["storage"] == "KVStorage"
    assert out["history"][0] == "HELLO!!"
    assert "HELLO!!" in out["reply"]


def test_unset_allow_list_loads_every_installed_plugin(thirdparty_site: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LANGSWARM_LOAD_PLUGINS"}
    env["PYTHONPATH"] = str(thirdparty_site)
    code = "from langswarm_runtime.plugins import PluginManager\nPluginManager()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    # All four demos load; the broken one stops start-up with a clear error.
    assert result.returncode != 0
    assert "PluginError" in result.stderr and "langswarm-broken-demo" in result.stderr


# -- registries ------------------------------------------------------------------------
class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "localhost"
    port: int = 1
    password: SecretStr | None = None


class _Boom:
    def __init__(self, config: _Opts) -> None:
        raise RuntimeError(f"cannot connect with {config.password.get_secret_value()}")  # type: ignore[union-attr]


class _HandPlugin:
    @hookimpl
    def register_storages(self, register):  # type: ignore[no-untyped-def]
        register("boom", _Boom, _Opts)


@pytest.fixture
def pm() -> PluginManager:
    manager = PluginManager(environ=NONE)
    manager.register(_HandPlugin(), name="hand")
    return manager


def test_create_validates_options_with_key_path(pm: PluginManager) -> None:
    with pytest.raises(ConfigError) as err:
        pm.storages.create("boom", {"hots": "x"}, key_path="storage")
    assert str(err.value) == "storage.hots: unknown key 'hots' (allowed: host, password, port)"
    with pytest.raises(ConfigError, match=r"^storage\.port: Input should be a valid integer"):
        pm.storages.validate("boom", {"port": "eighty"}, key_path="storage")


def test_validation_errors_never_echo_secrets(pm: PluginManager) -> None:
    with pytest.raises(ConfigError) as err:
        pm.storages.validate("boom", {"password": ["hunter2-secret"], "port": "hunter2-secret"})
    assert "hunter2" not in str(err.value)
    assert "and 1 more error" in str(err.value)


def test_factory_failure_is_plugin_error_with_secrets_masked(pm: PluginManager) -> None:
    with pytest.raises(PluginError) as err:
        pm.storages.create("boom", {"password": "hunter2-secret"})
    text = str(err.value)
    assert "hunter2" not in text and "**********" in text and "'hand'" in text


def test_type_without_config_model_takes_no_options(pm: PluginManager) -> None:
    assert pm.storages.validate("memory", {"type": "memory"}) is None
    with pytest.raises(ConfigError, match=r"takes no options, got: path"):
        pm.storages.create("memory", {"path": "x"})


def test_unknown_type_lists_known_and_hints_install(pm: PluginManager) -> None:
    with pytest.raises(ConfigError) as err:
        pm.storages.create("redis", key_path="storage.type")
    text = str(err.value)
    assert "unknown storage type 'redis'; known: boom, memory, sqlite" in text
    assert "pip install langswarm-storage-redis" in text


def test_register_and_unregister_by_hand(pm: PluginManager) -> None:
    assert "boom" in pm.storages
    pm.unregister("hand")
    assert "boom" not in pm.storages


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", dict), "empty or non-string name"),
        (("x", 42), "not callable"),
        (("x", dict, dict), "not a pydantic model"),
    ],
)
def test_bad_registrations_are_plugin_errors(args: tuple[object, ...], message: str) -> None:
    class Bad:
        @hookimpl
        def register_middlewares(self, register):  # type: ignore[no-untyped-def]
            register(*args)

    pm = PluginManager(environ=NONE)
    with pytest.raises(PluginError, match=message):
        pm.register(Bad(), name="bad")


def test_provider_config_model_must_extend_provider_config() -> None:
    class Bad:
        @hookimpl
        def register_providers(self, register):  # type: ignore[no-untyped-def]
            register("odd", dict, _Opts)

    with pytest.raises(PluginError, match=r"must subclass .*ProviderConfig"):
        PluginManager(environ=NONE).register(Bad(), name="bad")


def test_registration_hook_that_raises_is_a_plugin_error() -> None:
    class Bad:
        @hookimpl
        def register_storages(self, register):  # type: ignore[no-untyped-def]
            raise KeyError("oops")

    with pytest.raises(PluginError, match=r"'bad'.*failed in register_storages: KeyError"):
        PluginManager(environ=NONE).register(Bad(), name="bad")


# -- the guide's plugin example is a real package with passing tests ---------------------
def _readme_plugin_section() -> str:
    # The plugin author's page of the user guide (it used to be a README section).
    return (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_readme_plugin_example_works(tmp_path: Path) -> None:
    section = _readme_plugin_section()
    module_src, test_src = re.findall(r"```py\n(.*?)```", section, re.DOTALL)
    [toml_src] = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)
    [yaml_src] = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    project = tomllib.loads(toml_src)["project"]
    assert project["entry-points"]["langswarm_runtime"] == {"langswarm_shout": "langswarm_shout"}
    (tmp_path / "langswarm_shout.py").write_text(module_src, encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_shout.py").write_text(test_src, encoding="utf-8")
    (tmp_path / "swarm.yaml").write_text(yaml_src, encoding="utf-8")
    check_yaml = (
        "import langswarm_shout\n"
        "from langswarm_runtime.config import load_config\n"
        "from langswarm_runtime.plugins import PluginManager\n"
        "pm = PluginManager()\npm.register(langswarm_shout, name='langswarm_shout')\n"
        "config, _ = load_config('swarm.yaml', plugins=pm)\n"
        "print(config.storage.type, config.storage.options.label, config.middleware[0].type)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LANGSWARM_LOAD_PLUGINS": ""}
    result = subprocess.run([sys.executable, "-c", check_yaml], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["scratch", "demo", "shout"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
         "asyncio_mode=auto", "tests/test_shout.py",
         # The long hypothesis run is covered by tests/test_storage_conformance.py.
         "-k", "not stateful"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_every_hook_is_documented_in_the_readme() -> None:
    # Like datasette's meta-test: a new hook must be documented for plugin authors.
    from langswarm_runtime import hookspecs

    pm = PluginManager(environ=NONE)
    section = _readme_plugin_section()
    hooks = [name for name in dir(pm.pm.hook) if not name.startswith("_")]
    assert set(hooks) >= {"register_providers", "register_storages", "register_middlewares"}
    for name in hooks:
        assert getattr(hookspecs, name).__doc__, name
        assert f"`{name}(" in section, f"hook {name} is not in docs/plugins.md"
