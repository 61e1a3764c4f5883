"""The ``python`` tool type: a ``tools:`` entry that names a Python callable.

```yaml
tools:
  weather: {type: python, function: "myapp.tools:weather", description: "..."}
```

The callable is imported when the entry is first used and wrapped as ``tools=[...]`` in
code would wrap it: a ``@tool`` keeps its own name and description unless the entry
overrides them, and a plain function gets its schema from its signature and docstring.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.hookspecs import hookimpl
from langswarm_runtime.tools.spec import NAME_PATTERN, Tool

__all__ = ["PythonToolConfig", "python_tool"]

_TARGET = r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$"


class PythonToolConfig(BaseModel):
    """Options of a ``type: python`` entry."""

    model_config = ConfigDict(extra="forbid")

    #: ``package.module:callable`` (``module:Class.method`` works too).
    function: str = Field(pattern=_TARGET)
    #: The name the model sees; default: the callable's (or its ``@tool`` name).
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    #: What the model is told the tool does; default: the docstring's first paragraph.
    description: str | None = None


def _import(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the entry's problem
        raise ConfigError(
            f"cannot import module {module_name!r} for function {target!r}:"
            f" {type(exc).__name__}: {_first_line(exc)}",
            key_path="function",
        ) from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no {attribute!r} (function {target!r})",
                key_path="function",
            ) from None
    if not callable(obj):
        raise ConfigError(f"{target!r} is a {type(obj).__name__}, not a callable",
                          key_path="function")
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def python_tool(config: PythonToolConfig) -> Tool:
    """Import ``config.function`` and make it a ``Tool``."""
    obj = _import(config.function)
    name: str | None
    description: str | None
    if isinstance(obj, Tool):
        if config.name is None and config.description is None:
            return obj
        function = obj.function
        name = config.name or obj.spec.name
        description = config.description if config.description is not None else obj.spec.description
    else:
        function = obj
        name = config.name or getattr(obj, "__name__", None)
        description = config.description
    if name is None or not re.match(NAME_PATTERN, name):
        raise ConfigError(
            f"{config.function!r} has no usable tool name (letters, digits, _ and -, at most"
            " 64): set name",
            key_path="name",
        )
    try:
        return Tool(function, name=name, description=description)
    except (TypeError, ValueError) as exc:  # a signature that no JSON Schema can describe
        raise ConfigError(f"{config.function!r} cannot be a tool: {_first_line(exc)}",
                          key_path="function") from None


@hookimpl
def register_tools(register: Any) -> None:
    register("python", python_tool, PythonToolConfig)
