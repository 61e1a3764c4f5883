"""The Jinja2 environment system prompts render in: the immutable sandbox, with every loop,
call, filter, test, operator, concatenation and write going through the render budget of
``langswarm_runtime.template_limits``.

Private to ``langswarm_runtime.templating`` (imports jinja2, which is only needed once a
config has a template). The sandbox's own hooks cover calls and the arithmetic
operators; loops, ``~`` and the text a template writes have no hook, so the parsed
template is rewritten to call the budget there (``bound``), through an
``EnvironmentAttribute`` node, the documented way for extensions to call into Python.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.runtime import Context, LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from langswarm_runtime.template_limits import (
    MAX_TEXT,
    Exceeded,
    budget,
    check_binop,
    check_builtin_call,
    check_format,
    checked,
    cost,
    guard_filter,
    is_builtin,
    iterate,
    measure,
)

__all__ = ["BoundedEnvironment", "bound", "bounded_environment"]


def _loop(context: Context, iterable: Any) -> Any:
    return iterate(iterable)


def _write(context: Context, value: Any) -> Any:
    size = measure(value)
    if size > MAX_TEXT:
        raise Exceeded(f"{MAX_TEXT:,} characters in one value")
    budget().write(size)
    return value


def _concat(context: Context, *parts: Any) -> str:
    size = sum(measure(part) for part in parts)
    if size > MAX_TEXT:
        raise Exceeded(f"{MAX_TEXT:,} characters in one value")
    join = markup_join if context.eval_ctx.autoescape else str_join
    return join(parts)


_HELPERS: dict[str, Callable[..., Any]] = {
    "_ls_loop": _loop, "_ls_write": _write, "_ls_concat": _concat,
}
_HELPER_FUNCS = tuple(_HELPERS.values())
_FRAME_STEPS = 25


def _helper(name: str, *args: nodes.Node, lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name, lineno=lineno), list(args), [], None,
                      None, lineno=lineno)


class _Bounder(NodeTransformer):
    """Routes every loop's iterable, every ``~`` and every written value through the
    budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _helper("_ls_loop", node.iter, lineno=node.lineno)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_helper("_ls_write", child, lineno=child.lineno) for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _helper("_ls_concat", *node.nodes, lineno=node.lineno)


def bound(tree: nodes.Template) -> nodes.Template:
    """``tree`` rewritten so a render of it stays within the budget."""
    result = _Bounder().visit(tree)
    assert isinstance(result, nodes.Template)
    return result


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, charging every call and operator to the render budget."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        # No optimizer: it would evaluate constant expressions (`'a' * 10**9`) while
        # compiling, outside any budget. A system prompt renders once per session.
        super().__init__(undefined=StrictUndefined, autoescape=False,
                         keep_trailing_newline=True, optimized=False)
        self.globals.pop("lipsum", None)  # `lipsum(10**9)`: nothing a prompt needs
        self.filters = {name: guard_filter(name, f) for name, f in self.filters.items()}
        self.tests = {
            name: guard_filter(name, f, test=True)  # type: ignore[arg-type]
            for name, f in self.tests.items()
        }
        for name, func in _HELPERS.items():
            setattr(self, name, func)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget().charge(1 + cost(left) + cost(right))
        check_binop(operator, left, right)
        return checked(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if any(obj is helper for helper in _HELPER_FUNCS):
            return obj(context, *args)
        owner = getattr(obj, "__self__", None)
        # A macro call (or a recursive loop's `loop(...)`) sets up a whole new frame of
        # template code: it costs as much as a few dozen plain steps.
        frame = _FRAME_STEPS if isinstance(obj, Macro | LoopContext) else 1
        budget().charge(frame + cost(owner) + sum(cost(a) for a in args)
                        + sum(cost(v) for v in kwargs.values()))
        if is_builtin(obj):
            check_builtin_call(obj, args, kwargs)
        if isinstance(obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (iterate(args[0]), *args[1:])
        return checked(super().call(context, obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        template = value.__self__
        format_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if format_map and len(args) == 1 and isinstance(args[0], dict):
                check_format(template, (), args[0])
            else:
                check_format(template, args, kwargs)
            return wrapper(*args, **kwargs)

        return update_wrapper(bounded, value)


def bounded_environment() -> BoundedEnvironment:
    return BoundedEnvironment()
