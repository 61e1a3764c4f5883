"""JSON Schema of swarm.yaml, built from the config models the loaded plugins registered.

Private to ``langswarm_runtime.config``: each typed block becomes a union discriminated on
``type``, so an editor completes the options of whichever type the block names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from langswarm_runtime.plugins import PluginManager
from langswarm_runtime.registry import Registry

__all__ = ["build_schema"]


def _variant(kind: str, item_name: str, model: type[BaseModel] | None) -> type[BaseModel]:
    """``model`` with ``type`` pinned to ``Literal[item_name]`` (required)."""
    title = f"{kind}:{item_name}"
    literal = Literal[item_name]  # type: ignore[valid-type]
    if model is None:
        return create_model(
            title.replace(":", "_"),
            __config__=ConfigDict(extra="forbid", title=title),
            type=(literal, ...),
        )
    try:
        return create_model(
            f"{kind}_{item_name}_{model.__name__}",
            __base__=model,
            type=(literal, ...),
        )
    except Exception:  # noqa: BLE001
        # A model that cannot be subclassed (unusual validators...) still gets completion.
        return create_model(
            title.replace(":", "_"),
            __config__=ConfigDict(extra="allow", title=title),
            type=(literal, ...),
        )


def _union(kind: str, registry: Registry) -> Any:
    variants = [_variant(kind, t.name, t.config_model) for t in sorted(registry, key=lambda t: t.name)]
    if not variants:
        return dict[str, Any]
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="type")]  # noqa: UP007


def build_schema(
    plugins: PluginManager,
    *,
    defaults: type[BaseModel],
    plugins_model: type[BaseModel],
) -> dict[str, Any]:
    storage = _union("storage", plugins.storages)
    provider = _union("provider", plugins.providers)
    middleware = _union("middleware", plugins.middlewares)
    tool = _union("tool", plugins.tools)
    model = create_model(
        "SwarmYaml",
        __config__=ConfigDict(extra="forbid", title="swarm.yaml"),
        version=(Literal[1], 1),
        storage=(storage, ...),
        defaults=(defaults, Field(default_factory=defaults)),
        providers=(dict[str, provider], Field(default_factory=dict)),  # type: ignore[valid-type]
        middleware=(list[middleware], Field(default_factory=list)),  # type: ignore[valid-type]
        tools=(dict[str, tool], Field(default_factory=dict)),  # type: ignore[valid-type]
        plugins=(plugins_model, Field(default_factory=plugins_model)),
    )
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = (
        "langswarm-runtime swarm.yaml. Strings may use ${VAR} and ${VAR:-default};"
        " LANGSWARM_<KEY>__<NESTED> environment variables override keys."
    )
    return schema
