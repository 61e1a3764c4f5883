"""swarm.yaml loading: YAML + ${VAR} + LANGSWARM_ env overrides, plugin-validated blocks,
errors that name file, key path and line, and secrets that never show."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

from langswarm_runtime import hookimpl
from langswarm_runtime.config import (
    SwarmConfig,
    build_config,
    config_json_schema,
    default_config_path,
    load_config,
)
from langswarm_runtime.errors import ConfigError
from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.providers.base import ProviderConfig
from langswarm_runtime.providers.echo import EchoConfig
from langswarm_runtime.session.models import SessionBackend

ROOT = Path(__file__).resolve().parent.parent
ENV = {"LANGSWARM_LOAD_PLUGINS": ""}


class VaultConfig(ProviderConfig):
    password: SecretStr | None = None
    dsn: str | None = None


class TagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    token: SecretStr | None = None


class _Extras:
    """Stands in for installed plugins: a provider with secrets and a middleware."""

    @hookimpl
    def register_providers(self, register):  # type: ignore[no-untyped-def]
        register("vault", dict, VaultConfig)

    @hookimpl
    def register_middlewares(self, register):  # type: ignore[no-untyped-def]
        register("tag", dict, TagConfig)


@pytest.fixture
def pm() -> PluginManager:
    manager = PluginManager(environ=ENV)
    manager.register(_Extras(), name="extras")
    return manager


def write(tmp_path: Path, text: str, name: str = "swarm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(path: Path, pm: PluginManager | None = None, **env: str) -> SwarmConfig:
    config, _ = load_config(path, environ={**ENV, **env}, plugins=pm)
    return config


def error(path: Path, pm: PluginManager | None = None, **env: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load(path, pm, **env)
    assert "\n" not in str(err.value)
    return err.value


FULL = """
version: 1
storage: {type: sqlite, path: "${DB:-sessions.db}"}
defaults:
  provider: local
  backend: hybrid
  system_prompt: "You help {{ user_id }}."
providers:
  local: {type: echo}
  claude:
    type: echo
    model: claude-sonnet-4-5
    api_key: ${ECHO_KEY}
    base_url: ${ECHO_BASE_URL:-}
    timeout: 60
    max_retries: 2
    context: {max_messages: 200, max_tokens: 100000}
middleware:
  - {type: tag, label: first}
plugins: {disabled: []}
"""


# -- the happy path ----------------------------------------------------------------------
def test_full_example_loads(tmp_path: Path, pm: PluginManager) -> None:
    path = write(tmp_path, FULL)
    config, manager = load_config(path, environ={**ENV, "ECHO_KEY": "sk-123"}, plugins=pm)
    assert manager is pm and config.plugin_manager is pm
    assert config.source == str(path)
    assert config.storage.type == "sqlite"
    assert config.storage.options.path == "sessions.db"  # type: ignore[union-attr]
    assert config.defaults.backend is SessionBackend.HYBRID
    claude = config.providers["claude"]
    assert claude.type == "echo" and isinstance(claude.options, EchoConfig)
    assert claude.options.api_key.get_secret_value() == "sk-123"  # type: ignore[union-attr]
    assert claude.options.base_url is None  # ${X:-} that expands to "" means unset
    assert claude.options.context.max_tokens == 100000
    assert claude.raw["model"] == "claude-sonnet-4-5"
    assert [(b.type, b.options.label) for b in config.middleware] == [("tag", "first")]  # type: ignore[union-attr]


def test_no_file_means_builtin_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config, pm = load_config(environ=ENV)
    assert config.source is None
    assert config.storage.type == "sqlite"
    assert config.storage.options.path == "sessions.db"  # type: ignore[union-attr]
    assert config.defaults.provider == "echo" and config.defaults.backend is SessionBackend.AUTO
    assert config.defaults.max_message_bytes == 1_048_576
    assert config.providers == {} and "echo" in pm.providers
    assert SwarmConfig.default(pm).redacted() == config.redacted()


def test_default_config_path(tmp_path: Path) -> None:
    assert default_config_path({}) == Path("swarm.yaml")
    assert default_config_path({"LANGSWARM_CONFIG": "/x/y.yaml"}) == Path("/x/y.yaml")
    path = write(tmp_path, "defaults: {user_id: from-env-file}\n", "other.yaml")
    config, _ = load_config(environ={**ENV, "LANGSWARM_CONFIG": str(path)})
    assert config.defaults.user_id == "from-env-file"


def test_shipped_default_config_is_valid() -> None:
    config, _ = load_config(ROOT / "configs" / "swarm.yaml", environ=ENV)
    assert config.storage.type == "sqlite"
    assert config.providers[config.defaults.provider].type == "echo"


def test_provider_entry_named_after_a_plugin_needs_no_type(tmp_path: Path) -> None:
    config = load(write(tmp_path, "providers:\n  echo: {model: e2}\n"))
    assert config.providers["echo"].type == "echo"
    assert config.providers["echo"].options.model == "e2"  # type: ignore[union-attr]


def test_build_config_from_a_dict(pm: PluginManager) -> None:
    config, _ = build_config({"storage": {"type": "memory"}, "providers": {"v": {"type": "vault"}}},
                             plugins=pm)
    assert config.storage.type == "memory" and config.storage.options is None
    assert isinstance(config.providers["v"].options, VaultConfig)


# -- ${VAR} ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A-dflt}", {"A": ""}, None),
        ("${A-dflt}", {}, "dflt"),
        ("$${A}", {}, "${A}"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("a:-b", {}, "a:-b"),
    ],
)
def test_variable_expansion(
    tmp_path: Path, value: str, env: dict[str, str], expected: str | None
) -> None:
    path = write(tmp_path, f'providers:\n  local: {{type: echo, model: "{value}"}}\n')
    assert load(path, **env).providers["local"].options.model == expected  # type: ignore[union-attr]


def test_unset_variable_names_variable_key_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    err = error(path)
    assert str(err) == (
        f"{path}:12: providers.claude.api_key: environment variable ECHO_KEY is not set"
        " (write ${ECHO_KEY:-default} for a default)"
    )
    assert (err.file, err.key_path, err.line) == (str(path), "providers.claude.api_key", 12)


@pytest.mark.parametrize("value", ["${A", "${1A}", "${A:x}"])
def test_malformed_references(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f'defaults:\n  model: "{value}"\n')
    err = error(path, A="1")
    assert err.key_path == "defaults.model" and err.line == 2


# -- environment overrides ---------------------------------------------------------------
def test_environment_overrides_file(tmp_path: Path, pm: PluginManager) -> None:
    path = write(tmp_path, FULL)
    config = load(
        path, pm, ECHO_KEY="k",
        LANGSWARM_PROVIDERS__CLAUDE__MODEL="claude-opus",
        LANGSWARM_PROVIDERS__CLAUDE__CONTEXT__MAX_MESSAGES="7",
        LANGSWARM_STORAGE__PATH=str(tmp_path / "env.db"),
        LANGSWARM_DEFAULTS__BACKEND="native",
        LANGSWARM_PLUGINS__DISABLED='["nothing-real"]',
        LANGSWARM_MIDDLEWARE='[{"type": "tag", "label": "from-env"}]',
        langswarm_defaults__user_id="lower-case-works",
    )
    claude = config.providers["claude"].options
    assert claude.model == "claude-opus"  # type: ignore[union-attr]
    assert claude.context.max_messages == 7 and claude.context.max_tokens == 100000  # type: ignore[union-attr]
    assert claude.api_key.get_secret_value() == "k"  # type: ignore[union-attr]
    assert config.storage.options.path == str(tmp_path / "env.db")  # type: ignore[union-attr]
    assert config.defaults.backend is SessionBackend.NATIVE
    assert config.defaults.user_id == "lower-case-works"
    assert config.plugins.disabled == ["nothing-real"]
    assert [b.options.label for b in config.middleware] == ["from-env"]  # type: ignore[union-attr]


def test_environment_override_without_file_keeps_default_storage_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config, _ = load_config(environ={**ENV, "LANGSWARM_STORAGE__PATH": "x.db",
                                     "LANGSWARM_PROVIDERS__FAST__TYPE": "echo"})
    assert config.storage.type == "sqlite" and config.storage.options.path == "x.db"  # type: ignore[union-attr]
    assert config.providers["fast"].type == "echo"


def test_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  local: {type: echo}\n")
    err = error(path, LANGSWARM_PROVIDERS__LOCAL__TIMEOUT="soon")
    assert err.key_path == "providers.local.timeout" and err.line is None
    assert str(err).endswith("(set by environment variable LANGSWARM_PROVIDERS__LOCAL__TIMEOUT)")
    err = error(path, LANGSWARM_MIDDLEWARE='[{"type": ')
    assert str(err) == (
        "middleware: cannot parse environment variable LANGSWARM_MIDDLEWARE:"
        " complex values must be JSON"
    )
    err = error(path, LANGSWARM_DEFAULTS__BACKEND="sideways")
    assert err.key_path == "defaults.backend" and "LANGSWARM_DEFAULTS__BACKEND" in str(err)


# -- errors with file, key path and line -------------------------------------------------
def test_missing_explicit_file(tmp_path: Path) -> None:
    err = error(tmp_path / "nope.yaml")
    assert str(err) == f"{tmp_path / 'nope.yaml'}: config file not found"
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(environ={**ENV, "LANGSWARM_CONFIG": str(tmp_path / "gone.yaml")})


@pytest.mark.parametrize(
    ("text", "line", "key_path", "message"),
    [
        ("defaults:\n  provider: [unclosed\n", 3, None, "malformed YAML"),
        ("defaults:\n  model: a\n  model: b\n", 3, "defaults.model", "duplicate key 'model'"),
        ("- a\n- b\n", 1, None, "the top level must be a mapping"),
        ("version: 1\nstorages: {type: memory}\n", 2, "storages",
         ("unknown key 'storages' (allowed: defaults, middleware, plugins, providers, storage,"
         " tools, version)")),
        ("version: 2\n", 1, "version", "Input should be 1"),
        ("defaults:\n  backend: sideways\n", 2, "defaults.backend", "Input should be"),
        ("defaults:\n  max_message_bytes: lots\n", 2, "defaults.max_message_bytes",
         "Input should be a valid integer"),
        ("providers:\n  local:\n    type: echo\n    tempurature: 0.1\n", 4,
         "providers.local.tempurature", "unknown key 'tempurature' (allowed: api_key,"),
        ("providers:\n  local:\n    type: echo\n    context: {max_mesages: 3}\n", 4,
         "providers.local.context.max_mesages",
         "unknown key 'max_mesages' (allowed: max_messages, max_tokens, step, strategy)"),
        ("storage:\n  type: redis\n", 2, "storage.type",
         ("unknown storage type 'redis'; known: memory, sqlite; to use 'redis':"
         " pip install langswarm-storage-redis")),
        ("storage: {path: x.db}\n", 1, "storage", "missing 'type'; known storage types:"),
        ("middleware:\n  - {type: tag, label: a}\n  - {label: b}\n", 3, "middleware[1]",
         "missing 'type'; known middleware types: "),
        ("middleware:\n  - {type: tag}\n", 2, "middleware[0].label", "required key is missing"),
        ("providers:\n  local:\n    type: echo\n    middleware:\n      - {type: nope}\n", 5,
         "providers.local.middleware[0].type", "unknown middleware type 'nope'"),
        ("defaults:\n  provider: nobody\n", 2, "defaults.provider",
         "unknown provider 'nobody'; providers entries and provider plugins: "),
        ("defaults:\n  system_prompt: 'Hi {{ user_id '\n", 2, "defaults.system_prompt",
         "template syntax error"),
        ("providers:\n  local: {type: 3}\n", 2, "providers.local.type", "'type' must be a string"),
    ],
)
def test_errors_name_file_key_path_and_line(
    tmp_path: Path, pm: PluginManager, text: str, line: int, key_path: str | None, message: str
) -> None:
    path = write(tmp_path, text)
    err = error(path, pm)
    assert (err.file, err.line, err.key_path) == (str(path), line, key_path)
    assert message in err.message
    location = f"{path}:{line}: " + (f"{key_path}: " if key_path else "")
    assert str(err).startswith(location)


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, "# nothing here\n"))
    assert config.storage.type == "sqlite" and config.defaults.provider == "echo"


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    err = error(write(tmp_path, "defaults:\n  model: !!python/object/apply:os.system [ls]\n"))
    assert "unsupported tag 'tag:yaml.org,2002:python/object/apply:os.system'" in str(err)
    assert err.line == 2
    err = error(write(tmp_path, "defaults:\n  model: !!python/name:os.system ''\n"))
    assert "malformed YAML" in str(err) and err.line == 2


def test_merge_keys_yield_to_keys_written_beside_them(tmp_path: Path) -> None:
    # YAML merge semantics: keys written in the mapping win, then earlier merges.
    path = write(tmp_path, """
        providers:
          base: &base {type: echo, model: m1, timeout: 5}
          fast:
            <<: *base
            model: m2
          mixed:
            <<: [*base, {model: other, max_retries: 1}]
            timeout: 7
        """)
    config = load(path)
    fast, mixed = config.providers["fast"].options, config.providers["mixed"].options
    assert (fast.model, fast.timeout) == ("m2", 5)  # type: ignore[union-attr]
    assert (mixed.model, mixed.timeout, mixed.max_retries) == ("m1", 7, 1)  # type: ignore[union-attr]
    err = error(write(tmp_path, "providers:\n  a: {<<: {type: echo}, type: echo, type: echo}\n"))
    assert "duplicate key 'type'" in err.message and err.line == 2
    err = error(write(tmp_path, "providers:\n  a: {<<: [1], type: echo}\n"))
    assert "'<<' merges mappings only" in err.message and err.line == 2


def test_an_alias_to_its_own_container_is_refused(tmp_path: Path) -> None:
    err = error(write(tmp_path, "providers:\n  local: &me {type: echo, extra: {x: *me}}\n"))
    assert "an alias refers to a value that contains it" in err.message and err.line == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9223372036854775808", "integer too large (the limit is 64 bits)"),
        ("-0x8000000000000001", "integer too large (the limit is 64 bits)"),
        (":".join(["59"] * 200), "integer too large (the limit is 64 bits)"),
        ("1.5e+400", "number too large for a float"),
        ("2024-13-45", "not a valid timestamp"),
    ],
)
def test_scalars_out_of_range_are_errors_at_their_line(
    tmp_path: Path, value: str, message: str
) -> None:
    err = error(write(tmp_path, f"providers:\n  local:\n    type: echo\n    extra: {{x: {value}}}\n"))
    assert message in err.message and err.line == 4
    assert err.key_path == "providers.local.extra.x"


def test_in_range_scalars_and_explicit_infinity_load(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  local:\n    type: echo\n"
                 "    extra: {a: 9223372036854775807, b: -9223372036854775808, c: .inf, d: 1:30}\n")
    extra = load(path).providers["local"].options.extra  # type: ignore[union-attr]
    assert extra == {"a": 2**63 - 1, "b": -(2**63), "c": float("inf"), "d": 90}


def test_undecodable_bytes_and_control_characters_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "swarm.yaml"
    path.write_bytes(b"version: 1\ndefaults:\n  user_id: caf\xe9\n")
    err = error(path)
    assert err.message == "cannot read config file: not valid UTF-8" and err.line == 3
    path.write_bytes("version: 1\ndefaults:\n  model: \u00e9t\u00e9\n  user_id: a\x07\n".encode())
    err = error(path)
    assert err.message == "malformed YAML: character U+0007 is not allowed in YAML"
    assert err.line == 4


def test_byte_order_mark_and_crlf_line_ends_load(tmp_path: Path) -> None:
    path = tmp_path / "swarm.yaml"
    path.write_bytes(b"\xef\xbb\xbfversion: 1\r\ndefaults:\r\n  user_id: bob\r\n  nope: 1\r\n")
    err = error(path)
    assert err.line == 4 and err.key_path == "defaults.nope"


def test_code_first_data_nested_too_deep_is_refused() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    data = {"providers": {"local": {"type": "echo", "extra": deep}}}
    with pytest.raises(ConfigError, match="nested more than 64 levels deep"):
        build_config(data)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(ConfigError, match="contains itself"):
        build_config({"providers": {"local": {"type": "echo", "extra": looped}}})


def test_disabled_plugin_types_are_unknown(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins: {disabled: [echo]}\nproviders:\n  local: {type: echo}\n")
    err = error(path)
    assert err.key_path == "providers.local.type" and err.line == 3
    assert "(disabled plugins: echo)" in str(err)
    path = write(tmp_path, "plugins: {disabled: [echo]}\n")
    assert error(path).key_path == "defaults.provider"


# -- secrets -----------------------------------------------------------------------------
SECRET_YAML = """
providers:
  vault:
    type: vault
    api_key: ${API_KEY}
    password: hunter2-pw
    dsn: postgresql://app:dsn-pass-9@db:5432/x
    extra: {auth_token: tok-777}
middleware:
  - {type: tag, label: a, token: mw-tok-5}
"""
SECRETS = ("sk-live-42", "hunter2-pw", "dsn-pass-9", "tok-777", "mw-tok-5")


def test_secrets_are_secretstr_and_redacted(tmp_path: Path, pm: PluginManager) -> None:
    config = load(write(tmp_path, SECRET_YAML), pm, API_KEY="sk-live-42")
    vault = config.providers["vault"].options
    assert isinstance(vault.password, SecretStr)  # type: ignore[union-attr]
    assert vault.password.get_secret_value() == "hunter2-pw"  # type: ignore[union-attr]
    shown = json.dumps(config.redacted())
    dumped = config.model_dump_json() + repr(config) + str(config)
    for secret in SECRETS:
        assert secret not in shown
    for secret in SECRETS[:2] + SECRETS[4:]:
        assert secret not in dumped
    redacted = config.redacted()["providers"]["vault"]
    assert redacted["api_key"] == redacted["password"] == "**********"
    assert redacted["dsn"] == "postgresql://app:**********@db:5432/x"
    assert redacted["extra"] == {"auth_token": "**********"}


def test_errors_never_contain_secret_values(tmp_path: Path, pm: PluginManager) -> None:
    bad = SECRET_YAML.replace("password: hunter2-pw", "password: [hunter2-pw]")
    err = error(write(tmp_path, bad), pm, API_KEY="sk-live-42")
    assert err.key_path == "providers.vault.password"
    assert "hunter2" not in str(err)
    err = error(write(tmp_path, SECRET_YAML), pm, API_KEY="sk-live-42",
                LANGSWARM_PROVIDERS__VAULT__TIMEOUT="sk-live-42")
    assert "sk-live-42" not in str(err) and err.key_path == "providers.vault.timeout"


# -- JSON Schema -------------------------------------------------------------------------
def test_json_schema_covers_every_registered_type(pm: PluginManager) -> None:
    schema = config_json_schema(pm)
    text = json.dumps(schema)
    assert set(schema["properties"]) == {
        "version", "storage", "defaults", "providers", "middleware", "plugins", "tools"}
    assert schema["additionalProperties"] is False
    storage = schema["properties"]["storage"]
    assert storage["discriminator"]["propertyName"] == "type"
    assert set(storage["discriminator"]["mapping"]) == {"memory", "sqlite"}
    providers = schema["properties"]["providers"]["additionalProperties"]
    assert {"echo", "vault"} <= set(providers["discriminator"]["mapping"])
    middleware = schema["properties"]["middleware"]["items"]
    assert "tag" in middleware["discriminator"]["mapping"]
    assert '"format": "password"' in text  # SecretStr fields are marked as secrets
    assert "max_message_bytes" in text and "max_messages" in text


def test_json_schema_accepts_valid_and_rejects_invalid_files(pm: PluginManager) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = config_json_schema(pm)
    good: dict[str, Any] = {
        "version": 1,
        "storage": {"type": "sqlite", "path": "a.db"},
        "providers": {"local": {"type": "echo", "context": {"max_messages": 5}}},
        "middleware": [{"type": "tag", "label": "x"}],
    }
    jsonschema.validate(good, schema)
    for bad in (
        {**good, "storage": {"type": "sqlite", "pth": "a.db"}},
        {**good, "middleware": [{"type": "tag"}]},
        {**good, "extra_top": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
