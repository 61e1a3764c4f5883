"""swarm.yaml: loading, ``${VAR}`` expansion, environment overrides and plugin validation.

Two phases:

1. The YAML file (with ``${VAR}`` / ``${VAR:-default}`` expanded) and ``LANGSWARM_...``
   environment variables (``__`` for nesting; environment wins) are merged by
   pydantic-settings into the generic shape: top-level keys, ``defaults`` and ``plugins``
   are checked here; typed blocks are still plain dicts.
2. ``plugins.disabled`` builds the ``PluginManager``; then every block with a ``type``
   (``storage``, each ``providers`` entry, each ``middleware`` item, each ``tools`` entry)
   is validated by the config model its plugin registered, and every tool name that
   ``defaults.tools`` or a provider entry's ``tools`` refers to must be a ``tools`` entry.

Every problem is a ``ConfigError`` whose message is one line naming the file, the key path
and the line (or the environment variable that set the value). Messages never echo
values, so secrets cannot leak through them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, ValidationError

from langswarm_runtime.config_yaml import (
    ENV_PREFIX,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    Locator,
    expand_vars,
    parse_yaml,
    read_settings,
    too_deep,
)
from langswarm_runtime.errors import ConfigError
from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.registry import Registry, join_path
from langswarm_runtime.session.models import SessionBackend

__all__ = [
    "DEFAULT_STORAGE",
    "DefaultsConfig",
    "PluginsConfig",
    "SwarmConfig",
    "TypedBlock",
    "build_config",
    "config_json_schema",
    "default_config_path",
    "load_config",
]

#: Storage used when the config names none.
DEFAULT_STORAGE: dict[str, Any] = {"type": "sqlite", "path": "sessions.db"}

_MASK = "**********"
_SECRET_KEY = re.compile(r"(api_?key|secret|password|passwd|token|credential)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)", re.IGNORECASE)


class PluginsConfig(BaseModel):
    """The ``plugins:`` block."""

    model_config = ConfigDict(extra="forbid")

    #: Plugins not to load: entry-point name (e.g. ``echo``), module or distribution.
    disabled: list[str] = Field(default_factory=list)


class DefaultsConfig(BaseModel):
    """The ``defaults:`` block: what a new session gets when the caller says nothing."""

    model_config = ConfigDict(extra="forbid")

    #: A ``providers:`` entry name, or a provider plugin type used with its defaults.
    provider: str = "echo"
    model: str | None = None
    backend: SessionBackend = SessionBackend.AUTO
    #: Jinja2 template (sandboxed, strict undefined): user_id, metadata, model, provider, now.
    system_prompt: str | None = None
    user_id: str = Field(default="default", min_length=1)
    max_message_bytes: int = Field(default=1_048_576, ge=1)
    session_cache_size: int = Field(default=256, ge=1)
    #: Names of ``tools:`` entries every session gets (a provider entry may add more).
    tools: list[str] = Field(default_factory=list)
    #: Model calls a turn may spend asking for tools before it fails.
    max_tool_rounds: int = Field(default=8, ge=1)
    #: Seconds one tool call may run before its result is a timeout error.
    tool_timeout: float = Field(default=30.0, gt=0)
    #: Size limit of one image or file in a message (20 MiB).
    max_media_bytes: int = Field(default=20 * 1024 * 1024, ge=1)


class TypedBlock(BaseModel):
    """A config block with a ``type``: which plugin type, and its validated options.

    ``options`` is the plugin's config model instance (None for a type without one).
    ``raw`` is the block as written (after ``${VAR}`` expansion): it may hold secrets in
    clear, so it is left out of dumps and reprs.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: str
    options: SerializeAsAny[BaseModel] | None = None
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)

    def public(self) -> dict[str, Any]:
        """``{"type": ..., **options}`` as JSON-able data with secrets masked."""
        data: dict[str, Any] = {"type": self.type}
        if self.options is not None:
            dumped = self.options.model_dump(mode="json")
            dumped.pop("type", None)
            data.update(dumped)
        masked: dict[str, Any] = _mask(data)
        return masked


#: What a ``tools:`` entry may be called (it is referred to by this name).
_TOOL_ENTRY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SwarmConfig(BaseModel):
    """A validated swarm.yaml. Build it with ``load_config`` (file + environment),
    ``build_config`` (a dict) or ``SwarmConfig.default()`` (built-in defaults)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    storage: TypedBlock
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    providers: dict[str, TypedBlock] = Field(default_factory=dict)
    middleware: list[TypedBlock] = Field(default_factory=list)
    #: Named tool entries (``python``, ``mcp`` or a plugin's type).
    tools: dict[str, TypedBlock] = Field(default_factory=dict)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    #: The file it was read from, None for built-in defaults.
    source: str | None = None

    _plugin_manager: PluginManager | None = PrivateAttr(default=None)
    _locator: Locator | None = PrivateAttr(default=None)

    @property
    def plugin_manager(self) -> PluginManager | None:
        """The plugin manager the config was validated with."""
        return self._plugin_manager

    @classmethod
    def default(cls, plugins: PluginManager | None = None) -> SwarmConfig:
        """Built-in defaults: SQLite ``sessions.db`` and the ``echo`` provider. No file and
        no environment are read."""
        config, _ = build_config({}, plugins=plugins)
        return config

    def locate(self, exc: ConfigError) -> ConfigError:
        """``exc`` (a problem found after loading, say when an entry is first built) with
        this config's file and the line of its key path filled in."""
        return (self._locator or Locator(self.source, {})).relocate(exc)

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain data for display; secrets are masked."""
        return {
            "version": self.version,
            "storage": self.storage.public(),
            "defaults": self.defaults.model_dump(mode="json"),
            "providers": {name: block.public() for name, block in self.providers.items()},
            "middleware": [block.public() for block in self.middleware],
            "tools": {name: block.public() for name, block in self.tools.items()},
            "plugins": self.plugins.model_dump(mode="json"),
        }


def _mask(value: Any, key: str = "") -> Any:
    # SecretStr already dumps as "**********"; this also catches secrets a plugin kept in
    # a plain str field or a free-form dict (api keys by name, passwords inside URLs).
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if isinstance(value, str):
        if value and _SECRET_KEY.search(key) and value != _MASK:
            return _MASK
        return _URL_PASSWORD.sub(lambda m: m.group("head") + _MASK, value)
    return value


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$LANGSWARM_CONFIG`` if set, else ``./swarm.yaml``."""
    env = os.environ if environ is None else environ
    return Path(env.get("LANGSWARM_CONFIG") or "swarm.yaml")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    plugins: PluginManager | None = None,
) -> tuple[SwarmConfig, PluginManager]:
    """Read, expand, override and validate a swarm.yaml.

    ``path`` defaults to ``default_config_path()``. An explicit path (or
    ``$LANGSWARM_CONFIG``) that does not exist is an error; a missing ``./swarm.yaml``
    means built-in defaults (plus environment overrides). ``environ`` defaults to
    ``os.environ``. ``plugins``: an already built manager (else one is built honouring
    ``plugins.disabled``).

    Returns the config and the plugin manager its blocks were validated with (also on
    ``config.plugin_manager``).
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or bool(env.get("LANGSWARM_CONFIG"))
    file = Path(path) if path is not None else default_config_path(env)
    with _no_traceback(str(file)):
        return _load(file, explicit, env, plugins)


@contextmanager
def _no_traceback(source: str | None) -> Iterator[None]:
    # The loader's limits keep these from happening; should one slip through anyway (a
    # plugin's validator, say), the caller still gets a one-line ConfigError.
    try:
        yield
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ConfigError(f"config could not be loaded ({type(exc).__name__})",
                          file=source) from None


def _read_text(file: Path) -> str:
    """The file's text: at most ``MAX_FILE_BYTES`` are read, whatever its size."""
    source = str(file)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read config file: {reason}", file=source) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"config file is larger than {MAX_FILE_BYTES >> 20} MiB", file=source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError("cannot read config file: not valid UTF-8", file=source,
                          line=line) from None


def _load(
    file: Path, explicit: bool, env: Mapping[str, str], plugins: PluginManager | None
) -> tuple[SwarmConfig, PluginManager]:
    source: str | None = str(file)
    if file.is_file():
        data, lines = parse_yaml(_read_text(file), str(file))
    elif explicit:
        what = "is a directory" if file.exists() else "not found"
        raise ConfigError(f"config file {what}", file=source)
    else:
        data, lines, source = {}, {}, None
    locator = Locator(source, lines)
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", file=source, line=1)
    data = expand_vars(data, env, locator)
    if "storage" not in data:
        data["storage"] = dict(DEFAULT_STORAGE)
    merged = read_settings(_FileShape, data, env, locator)
    assert isinstance(merged, _FileShape)
    return build_config(merged, plugins=plugins, environ=env, source=source, locator=locator)


class _FileShape(BaseModel):
    """Phase 1: the file's generic shape. Typed blocks stay dicts until phase 2."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    storage: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_STORAGE))
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    providers: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    middleware: list[dict[str, Any]] = Field(default_factory=list)
    tools: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)


def build_config(
    data: Mapping[str, Any] | _FileShape,
    *,
    plugins: PluginManager | None = None,
    environ: Mapping[str, str] | None = None,
    source: str | None = None,
    locator: Locator | None = None,
) -> tuple[SwarmConfig, PluginManager]:
    """Validate config data (a dict shaped like swarm.yaml) in both phases."""
    with _no_traceback(source):
        return _validate(data, plugins=plugins, environ=environ, source=source, locator=locator)


def _validate(
    data: Mapping[str, Any] | _FileShape,
    *,
    plugins: PluginManager | None,
    environ: Mapping[str, str] | None,
    source: str | None,
    locator: Locator | None,
) -> tuple[SwarmConfig, PluginManager]:
    locator = locator or Locator(source, {})
    if isinstance(data, _FileShape):
        shape = data
    else:
        if too_deep(data):  # a file cannot be (the loader stops it), a dict built in code can
            raise ConfigError(
                f"config nested more than {MAX_DEPTH} levels deep (or contains itself)",
                file=source,
            )
        try:
            shape = _FileShape.model_validate(dict(data))
        except ValidationError as exc:
            raise locator.error_from_validation(exc, "", _FileShape) from None
    try:
        pm = plugins or PluginManager(disabled=shape.plugins.disabled, environ=environ)
        storage = _typed(pm.storages, shape.storage, "storage")
        providers: dict[str, TypedBlock] = {}
        for name, block in shape.providers.items():
            path = join_path("providers", name)
            providers[name] = _typed(pm.providers, block or {}, path, default_type=name)
            for i, spec in enumerate(getattr(providers[name].options, "middleware", None) or []):
                _typed(pm.middlewares, spec, join_path(path, "middleware", i))
        middleware = [
            _typed(pm.middlewares, block, join_path("middleware", i))
            for i, block in enumerate(shape.middleware)
        ]
        tools = _tool_entries(pm, shape.tools)
        defaults = shape.defaults
        _check_tool_names(defaults.tools, tools, "defaults.tools")
        for name, entry in providers.items():
            _check_tool_names(getattr(entry.options, "tools", None) or [], tools,
                              join_path("providers", name, "tools"))
        if defaults.provider not in providers and defaults.provider not in pm.providers:
            known = sorted(set(providers) | set(pm.providers.names()))
            raise ConfigError(
                f"unknown provider {defaults.provider!r}; providers entries and provider"
                f" plugins: {', '.join(known) or 'none'}",
                key_path="defaults.provider",
            )
        if defaults.system_prompt:
            from langswarm_runtime.templating import check_template

            try:
                check_template(defaults.system_prompt)
            except ConfigError as exc:
                raise ConfigError(exc.message, key_path="defaults.system_prompt") from None
    except ConfigError as exc:
        raise locator.relocate(exc) from None
    config = SwarmConfig(
        version=shape.version,
        storage=storage,
        defaults=defaults,
        providers=providers,
        middleware=middleware,
        tools=tools,
        plugins=shape.plugins,
        source=source,
    )
    config._plugin_manager = pm
    config._locator = locator
    return config, pm


def _tool_entries(pm: PluginManager, blocks: Mapping[str, Any]) -> dict[str, TypedBlock]:
    tools: dict[str, TypedBlock] = {}
    for name, block in blocks.items():
        path = join_path("tools", name)
        if not _TOOL_ENTRY.match(name):
            raise ConfigError(
                "a tools entry name is 1 to 64 letters, digits, '_' and '-'", key_path=path
            )
        tools[name] = _typed(pm.tools, block or {}, path)
    return tools


def _check_tool_names(names: list[str], tools: Mapping[str, TypedBlock], path: str) -> None:
    for i, name in enumerate(names):
        if name not in tools:
            raise ConfigError(
                f"unknown tool {name!r}; tools entries: {', '.join(sorted(tools)) or 'none'}",
                key_path=join_path(path, i),
            )


def _typed(
    registry: Registry, block: Any, path: str, *, default_type: str | None = None
) -> TypedBlock:
    if not isinstance(block, Mapping):
        raise ConfigError(f"expected a mapping with a 'type' key, got {type(block).__name__}",
                          key_path=path)
    type_name = block.get("type")
    if type_name is None and default_type is not None and default_type in registry:
        # `providers: {anthropic: {model: ...}}` means the anthropic plugin.
        type_name = default_type
    if type_name is None:
        raise ConfigError(
            f"missing 'type'; known {registry.kind} types: {', '.join(registry.names())}",
            key_path=path,
        )
    if not isinstance(type_name, str):
        raise ConfigError("'type' must be a string", key_path=join_path(path, "type"))
    if type_name not in registry:
        raise registry.unknown(type_name, key_path=join_path(path, "type"))
    options = registry.validate(type_name, block, key_path=path)
    return TypedBlock(type=type_name, options=options, raw=dict(block))


def config_json_schema(plugins: PluginManager) -> dict[str, Any]:
    """JSON Schema of the whole swarm.yaml for editor completion: each typed block is a
    union discriminated on ``type`` over the config models registered with ``plugins``."""
    from langswarm_runtime.config_schema import build_schema

    return build_schema(
        plugins,
        defaults=DefaultsConfig,
        plugins_model=PluginsConfig,
    )


# Re-exported for callers that want the prefix without importing the helper module.
LANGSWARM_ENV_PREFIX = ENV_PREFIX
