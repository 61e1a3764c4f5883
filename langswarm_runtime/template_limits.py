"""The budget that bounds one render of a system prompt template in time and memory.

Private to ``langswarm_runtime.templating``. The sandbox stops a template reaching what it
must not; these limits stop one that merely asks for too much (``{% for %}`` inside
``{% for %}``, ``'a' * 10**9``, ``9**9**9``, ``'x'|center(10**9)``). Every loop iteration,
call, filter, test and operator costs a step, plus one per item (or KiB of text) of what
it is handed; no value built and no text written may exceed ``MAX_TEXT`` characters; an
operation whose result would be too large is refused before it runs, never after.
"""

from __future__ import annotations

import re
import string
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any

__all__ = [
    "MAX_INT_BITS",
    "MAX_STEPS",
    "MAX_TEXT",
    "MAX_WRITTEN",
    "Budget",
    "Exceeded",
    "active_budget",
    "budget",
    "check_binop",
    "check_builtin_call",
    "check_format",
    "checked",
    "cost",
    "guard_filter",
    "is_builtin",
    "iterate",
    "measure",
]

#: Steps of one render: loop iterations, calls, filters, tests and operators, plus one per
#: item (or KiB of text) each is handed.
MAX_STEPS = 100_000
#: Characters of the rendered prompt, and of any one value a template builds.
MAX_TEXT = 1_000_000
#: Characters written in all, counting text captured by ``{% set %}`` blocks, macros,
#: ``{% filter %}`` and ``{% call %}`` blocks before it reaches the output.
MAX_WRITTEN = 4 * MAX_TEXT
#: Bits of an integer an operator may produce (``str()`` of one this size is 3,011 digits).
MAX_INT_BITS = 10_000


class Exceeded(Exception):
    """A render went past a limit; the message says which."""


class Budget:
    """What one render has used so far."""

    __slots__ = ("steps", "written")

    def __init__(self) -> None:
        self.steps = 0
        self.written = 0

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise Exceeded(f"{MAX_STEPS:,} steps (loop iterations, calls, filters)")

    def write(self, chars: int) -> None:
        self.written += chars
        if self.written > MAX_WRITTEN:
            raise Exceeded(f"{MAX_WRITTEN:,} characters written")


_BUDGET: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


def budget() -> Budget:
    """The budget of the render in progress (a render outside ``active_budget`` still
    gets every per-operation check, on a budget of its own for each one)."""
    return _BUDGET.get() or Budget()


@contextmanager
def active_budget() -> Iterator[Budget]:
    """Run a render on a fresh budget."""
    current = Budget()
    token = _BUDGET.set(current)
    try:
        yield current
    finally:
        _BUDGET.reset(token)


# -- sizes -------------------------------------------------------------------------------
_SEQUENCES = (str, bytes, bytearray, list, tuple, set, frozenset, dict, range)


def cost(value: Any) -> int:
    """Steps it takes to handle ``value`` once: its items, or its text in KiB."""
    if isinstance(value, str | bytes | bytearray):
        return len(value) >> 10
    if isinstance(value, _SEQUENCES):
        return len(value)
    return 0


def measure(value: Any, limit: int = MAX_TEXT) -> int:
    """About how many characters ``str(value)`` has (items count one each); stops
    counting past ``limit``. A list of a thousand references to one long string is a
    thousand long strings here, as it is once written out."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + len(item)
            if total <= limit:
                stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, range):
            total += 8 * len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        else:
            total += 1
    return total


def _fits(chars: int) -> None:
    if chars > MAX_TEXT:
        raise Exceeded(f"{MAX_TEXT:,} characters in one value")


def checked(value: Any) -> Any:
    """``value`` once it is known to be within the limits; charges for its size."""
    if isinstance(value, range):  # lazy: its items are charged as they are used
        return value
    if isinstance(value, _SEQUENCES):
        _fits(measure(value))
        budget().charge(cost(value))
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise Exceeded(f"{MAX_INT_BITS:,}-bit integers")
    return value


def iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable``, one step per item (every ``{% for %}`` loops through this)."""
    current = budget()
    for item in iterable:
        current.charge(1)
        yield item


# -- operators ---------------------------------------------------------------------------
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)")


def _printf_size(template: str | bytes, args: Any) -> int:
    text = template if isinstance(template, str) else template.decode("latin-1")
    values = list(args) if isinstance(args, tuple) else [args]
    if isinstance(args, Mapping):
        values = list(args.values())
    largest = max((measure(v) for v in values), default=0)
    stars = sum(abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool))
    size = len(text)
    for width, precision, _ in _PRINTF.findall(text):
        size += largest
        for part in (width, precision):
            if part == "*":
                size += stars
            elif part:
                size += int(part) if len(part) < 10 else MAX_TEXT + 1
    return size


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` before it runs if its result would be too big."""
    texts = (str, bytes, bytearray, list, tuple)
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise Exceeded(f"{MAX_INT_BITS:,}-bit integers")
            return
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(seq, texts) and isinstance(times, int) and times > 0:
            _fits(measure(seq) * times if len(seq) else 0)
    elif operator == "**":
        if (isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
                and left.bit_length() * right > MAX_INT_BITS):
            raise Exceeded(f"{MAX_INT_BITS:,}-bit integers")
    elif operator == "+":
        if isinstance(left, texts) and isinstance(right, texts):
            _fits(measure(left) + measure(right))
    elif operator == "%" and isinstance(left, str | bytes):
        _fits(_printf_size(left, right))


# -- calls -------------------------------------------------------------------------------
_WIDTHS = re.compile(r"\d+")


def check_format(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse ``template.format(*args, **kwargs)`` whose result would be too big."""
    values = [*args, *kwargs.values()]
    largest = max((measure(v) for v in values), default=0)
    widest = max((v for v in values if isinstance(v, int) and not isinstance(v, bool)),
                 default=0)
    size = len(template)
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format raises the same error itself
    for _, field, spec, _ in fields:
        if field is None:
            continue
        size += largest
        for digits in _WIDTHS.findall(spec or ""):
            size += int(digits) if len(digits) < 10 else MAX_TEXT + 1
        if spec and "{" in spec:
            size += widest
    _fits(size)


def _lines(text: str) -> int:
    return text.count("\n") + 1


def _as_text(value: str | bytes | bytearray) -> str:
    # Sizes are all this module needs: bytes are measured as Latin-1 text.
    return value if isinstance(value, str) else bytes(value).decode("latin-1")


def check_builtin_call(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse a call of a builtin method (``str.center``, ``int.to_bytes`` ...) whose
    result would be too big: none may be given a number past ``MAX_TEXT``, and those
    that multiply (``replace``, ``join``, ``expandtabs``, ``translate``) are estimated."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and abs(value) > MAX_TEXT:
            raise Exceeded(f"{MAX_TEXT:,} characters in one value")
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", "")
    if not isinstance(owner, str | bytes | bytearray):
        return
    text = _as_text(owner)
    if name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str | bytes | bytearray) and isinstance(new, str | bytes | bytearray):
            old_text = _as_text(old)
            times = text.count(old_text) if old_text else len(text) + 1
            _fits(len(text) + times * len(new))
    elif name == "join" and args and isinstance(args[0], list | tuple):
        _fits(len(text) * len(args[0]) + measure(args[0]))
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tab, int):
            _fits(len(text) + text.count("\t") * tab)
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((measure(v) for v in args[0].values()), default=1)
        _fits(len(owner) * max(longest, 1))


# -- filters -----------------------------------------------------------------------------
def _arg(args: list[Any], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _count(value: Any) -> None:
    if isinstance(value, int) and value > MAX_STEPS:
        raise Exceeded(f"{MAX_STEPS:,} steps (loop iterations, calls, filters)")


def _filter_estimate(name: str, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """Refuse a filter call whose result would be too big; returns the arguments to call
    it with (an iterable to join is read once here, so it becomes a list)."""
    value = args[0] if args else None
    text = value if isinstance(value, str) else None
    if name == "center":
        width = _arg(args, kwargs, 1, "width", 80)
        if isinstance(width, int):
            _fits(width)
    elif name == "indent" and text is not None:
        width = _arg(args, kwargs, 1, "width", 4)
        per_line = width if isinstance(width, int) else measure(width)
        _fits(len(text) + _lines(text) * per_line)
    elif name == "wordwrap" and text is not None:
        width = _arg(args, kwargs, 1, "width", 79)
        wrap = _arg(args, kwargs, 3, "wrapstring", None)
        lines = len(text) // max(width, 1) + _lines(text) if isinstance(width, int) else 1
        _fits(len(text) + lines * (measure(wrap) if wrap else 1))
    elif name == "replace":
        old, new = _arg(args, kwargs, 1, "old", ""), _arg(args, kwargs, 2, "new", "")
        count = _arg(args, kwargs, 3, "count", None)
        _fits(measure(value))
        whole = str(value)
        times = whole.count(str(old)) if str(old) else len(whole) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _fits(len(whole) + times * measure(new))
    elif name == "join":
        items = list(iterate(value)) if value is not None else []
        sep = _arg(args, kwargs, 1, "d", "")
        _fits(measure(sep) * len(items) + measure(items))
        args = [items, *args[1:]]
    elif name == "format" and text is not None:
        _fits(_printf_size(text, tuple(args[1:]) if len(args) > 1 else dict(kwargs)))
    elif name in ("batch", "slice"):
        _count(_arg(args, kwargs, 1, "linecount" if name == "batch" else "slices", 0))
    elif name == "sum":
        start = _arg(args, kwargs, 2, "start", 0)
        if not isinstance(start, int | float):  # adding sequences copies them each time
            items = list(iterate(value)) if value is not None else []
            total = measure(items)
            _fits(total)
            budget().charge(len(items) * total >> 10)
            args = [items, *args[1:]]
    elif name == "tojson":
        indent = _arg(args, kwargs, 1, "indent", None)
        if isinstance(indent, int):
            size = measure(value)
            _fits(size * (1 + indent))
    elif name == "urlize" and text is not None:
        extra = sum(measure(_arg(args, kwargs, i, key, None) or "")
                    for i, key in ((3, "rel"), (4, "target")))
        _fits(2 * len(text) + len(text.split()) * (extra + 40))
    return args


_ESTIMATED = {"center", "indent", "wordwrap", "replace", "join", "format", "batch", "slice",
              "sum", "tojson", "urlize"}


def guard_filter(name: str, func: Callable[..., Any], *, test: bool = False) -> Callable[..., Any]:
    """``func`` (a filter, or a test) charged to the budget and checked for size."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    estimated = not test and name in _ESTIMATED

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        head, rest = list(args[:skip]), list(args[skip:])
        budget().charge(1 + sum(cost(v) for v in rest) + sum(cost(v) for v in kwargs.values()))
        if estimated:
            rest = _filter_estimate(name, rest, kwargs)
        return checked(func(*head, *rest, **kwargs))

    return guarded


def is_builtin(func: Any) -> bool:
    """A method or function implemented in C: one call can do a lot of work."""
    return isinstance(func, types.BuiltinFunctionType | types.BuiltinMethodType) or (
        type(func).__name__ == "method-wrapper"
    )
