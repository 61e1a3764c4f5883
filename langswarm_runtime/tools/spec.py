"""Tool specs: a name, a description and a JSON Schema of the arguments.

``ToolSpec`` is a schema only (the caller runs the tool). ``@tool`` turns a Python
callable (sync or async) into a ``Tool``: a spec derived from the signature and the
docstring with pydantic, and an implementation whose arguments are validated against it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
from collections.abc import Callable
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import to_jsonable_python

__all__ = ["Tool", "ToolArgumentsError", "ToolFailed", "ToolSpec", "tool"]

#: What every provider accepts as a tool name (OpenAI, Anthropic and Gemini agree on it).
NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
_DOC_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params)\s*:\s*$")
_DOC_PARAM = re.compile(r"^\s*\**(\w+)\**\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ToolSpec(BaseModel):
    """What the model is told about a tool: ``parameters`` is a JSON Schema object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def __init__(self, *args: Any, **data: Any) -> None:
        """``ToolSpec(name, description, parameters)``, by position or by keyword."""
        if len(args) > 3:
            raise TypeError("ToolSpec takes at most 3 positional arguments")
        for key, value in zip(("name", "description", "parameters"), args, strict=False):
            if key in data:
                raise TypeError(f"ToolSpec got {key!r} twice")
            data[key] = value
        super().__init__(**data)


class ToolArgumentsError(ValueError):
    """The model's arguments do not match the tool's schema (reported to the model)."""


class ToolFailed(Exception):
    """A tool reports that it failed (an MCP server's ``isError`` result, say): its
    message is the error result the model reads, as it is."""


class Tool:
    """A tool the runtime runs: ``spec`` plus the callable behind it. Calling the object
    calls the function as it was."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        self.function = function
        doc_summary, param_docs = _parse_docstring(inspect.getdoc(function) or "")
        self._arguments = _arguments_model(function, param_docs)
        schema = self._arguments.model_json_schema()
        _strip_titles(schema)
        schema.setdefault("properties", {})
        self.spec = ToolSpec(
            name=name or function.__name__,
            description=description if description is not None else doc_summary,
            parameters=schema,
        )
        self._is_async = inspect.iscoroutinefunction(function)
        functools.update_wrapper(self, function)

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments as the function takes them; ``ToolArgumentsError`` if they do not
        match the schema."""
        try:
            parsed = self._arguments.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolArgumentsError(f"invalid arguments: {problems}") from None
        return {field: getattr(parsed, field) for field in type(parsed).model_fields}

    async def run(self, arguments: dict[str, Any]) -> str:
        """Validate ``arguments``, run the function (a sync one in a worker thread, so it
        does not block the event loop) and return its result as text (JSON unless it is
        already a string)."""
        kwargs = self.validate(arguments)
        if self._is_async:
            result = await self.function(**kwargs)
        else:
            result = await asyncio.to_thread(self.function, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        return result_text(result)


def result_text(result: Any) -> str:
    """How a tool's return value is shown to the model."""
    if isinstance(result, str):
        return result
    return json.dumps(to_jsonable_python(result), ensure_ascii=False)


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a callable a tool: ``@tool`` or ``@tool(name=..., description=...)``.

    The JSON Schema comes from the signature (types through pydantic; parameters without
    a default are required) and the description from the docstring's first paragraph;
    an ``Args:`` section describes the parameters."""
    if function is not None:
        return Tool(function, name=name, description=description)

    def decorate(fn: Callable[..., Any]) -> Tool:
        return Tool(fn, name=name, description=description)

    return decorate


def as_tool(obj: Any) -> Tool | ToolSpec:
    """A ``Tool`` or ``ToolSpec`` as it is; a plain callable becomes a ``Tool``."""
    if isinstance(obj, (Tool, ToolSpec)):
        return obj
    if callable(obj):
        return Tool(obj)
    raise TypeError(f"not a tool: {type(obj).__name__} (give a callable, a Tool or a ToolSpec)")


# ------------------------------------------------------------------------ derivation


def _arguments_model(
    function: Callable[..., Any], docs: dict[str, str]
) -> type[BaseModel]:
    signature = inspect.signature(function)
    try:
        hints = inspect.get_annotations(function, eval_str=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to Any
        hints = {}
    fields: dict[str, Any] = {}
    for pname, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {function.__name__}: *args/**kwargs cannot be described")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"tool {function.__name__}: positional-only parameter {pname}")
        annotation = hints.get(pname, Any)
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, Field(default, description=docs.get(pname)))
    return create_model(
        f"{function.__name__}_arguments",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(first paragraph, {parameter: description}) from a Google-style docstring."""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _DOC_SECTION.match(line):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    in_args = False
    current: str | None = None
    for line in lines:
        if _DOC_SECTION.match(line):
            in_args, current = True, None
            continue
        if not in_args:
            continue
        if not line.strip():
            current = None
            continue
        match = _DOC_PARAM.match(line)
        if match and (current is None or len(line) - len(line.lstrip()) <= 4):
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None:
            params[current] = (params[current] + " " + line.strip()).strip()
        elif not line.startswith((" ", "\t")):
            in_args = False
    return " ".join(summary), params


def _strip_titles(schema: Any) -> None:
    """pydantic titles say nothing the names do not; leave them out of the prompt."""
    if isinstance(schema, dict):
        schema.pop("title", None)
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    _strip_titles(prop)
            else:
                _strip_titles(value)
    elif isinstance(schema, list):
        for item in schema:
            _strip_titles(item)

