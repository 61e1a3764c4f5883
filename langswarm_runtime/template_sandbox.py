"""The Jinja2 environment system prompts render in: the immutable sandbox, with every loop,
call, filter, test, operator, concatenation and write going through the render budget of
``langswarm_runtime.template_limits``.

Private to ``langswarm_runtime.templating`` (imports jinja2, which is only needed once a
config has a template). The sandbox's own hooks cover calls and the arithmetic
operators; loops, ``~`` and the text a template writes have no hook, so the parsed
template is rewritten to pass them through helper filters of the budget (``bound``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
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


# Each takes the context so that the compiler never runs it ahead of time on constant
# text (it folds filters that do not): the budget is charged at render time only.
@pass_context
def _loop(context: Context, iterable: Any) -> Any:
    return iterate(iterable)


@pass_context
def _write(context: Context, value: Any) -> Any:
    # The hot path: one call per piece of text a template writes.
    size = len(value) if type(value) is str else measure(value)
    if size > MAX_TEXT:
        raise Exceeded(f"{MAX_TEXT:,} characters in one value")
    budget().write(size)
    return value


@pass_context
def _concat(context: Context, *parts: Any) -> str:
    size = sum(measure(part) for part in parts)
    if size > MAX_TEXT:
        raise Exceeded(f"{MAX_TEXT:,} characters in one value")
    join = markup_join if context.eval_ctx.autoescape else str_join
    return join(parts)


#: Installed as filters, which compiled templates call directly (a call in a template
#: would go through the sandbox's ``call``, and cost more than the work it guards).
_HELPERS: dict[str, Callable[..., Any]] = {
    "_ls_loop": _loop, "_ls_write": _write, "_ls_concat": _concat,
}
_FRAME_STEPS = 25


def _helper(name: str, first: nodes.Node, *rest: nodes.Node, lineno: int) -> nodes.Filter:
    return nodes.Filter(first, name, list(rest), [], None, None, lineno=lineno)


class _Bounder(NodeTransformer):
    """Routes every loop's iterable, every ``~`` and every written value through the
    budget's helpers."""

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
        self.filters.update(_HELPERS)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget().charge(1 + cost(left) + cost(right))
        check_binop(operator, left, right)
        return checked(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
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
