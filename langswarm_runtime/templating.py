"""System prompt templates: Jinja2 in a sandbox, strict about undefined names, bounded.

``defaults.system_prompt`` is rendered once per new session from the session's fields
(``user_id``, ``metadata``, ``model``, ``provider``, ``now``). The sandbox is immutable, so a
template can read but never change what it is given; an undefined name is an error rather
than an empty string, so a typo cannot silently produce a wrong prompt.

A template is also bounded, so it cannot hang session creation or exhaust memory: at most
``MAX_TEMPLATE_TOKENS`` tokens (checked when the config loads), and per render the budget
of ``langswarm_runtime.template_limits``: ``MAX_STEPS`` steps, no value and no output over
``MAX_TEXT`` characters. Going past one is a ``ConfigError`` ("system prompt template
exceeded ...").
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.template_limits import MAX_STEPS, MAX_TEXT, Exceeded

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "MAX_STEPS",
    "MAX_TEMPLATE_TOKENS",
    "MAX_TEXT",
    "check_template",
    "compile_template",
    "render_system_prompt",
]

#: Tokens (tags, names, operators, runs of text) in one template. Compiling costs time per
#: token; a system prompt template has a few dozen.
MAX_TEMPLATE_TOKENS = 5_000


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    # Imported here: jinja2 is only needed once a config actually has a template.
    from langswarm_runtime.template_sandbox import bounded_environment

    return bounded_environment()


@lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    from langswarm_runtime.template_sandbox import bound

    env = _environment()
    for count, _ in enumerate(env.lex(source), 1):
        if count > MAX_TEMPLATE_TOKENS:
            raise Exceeded(f"{MAX_TEMPLATE_TOKENS:,} tokens")
    return env.from_string(bound(env.parse(source)))


def compile_template(source: str) -> Template:
    """Compile (once; cached) a template; a syntax error is a ``ConfigError``."""
    from jinja2 import TemplateSyntaxError

    if not isinstance(source, str):
        raise ConfigError(f"system_prompt must be a string, got {type(source).__name__}")
    if len(source) > MAX_TEXT:
        raise ConfigError(f"system prompt template exceeded {MAX_TEXT:,} characters")
    try:
        return _compile(source)
    except TemplateSyntaxError as exc:
        raise ConfigError(
            f"system_prompt template syntax error on template line {exc.lineno}: {exc.message}"
        ) from None
    except Exceeded as exc:
        raise ConfigError(f"system prompt template exceeded {exc}") from None
    except Exception as exc:  # noqa: BLE001 - nesting past what Python can compile
        raise ConfigError(
            f"system_prompt template too complex to compile ({type(exc).__name__})"
        ) from None


def check_template(source: str) -> None:
    """What the config can know about a template before any session exists: its syntax,
    its size, and that a render with placeholder values stays within the budget (so
    ``{% for %}`` inside ``{% for %}`` is refused by ``config validate``). Other render
    errors depend on the session's values and are reported when one is created."""
    compiled = compile_template(source)
    sample = {"user_id": "user", "metadata": {}, "model": "model", "provider": "provider",
              "now": _dt.datetime.now(_dt.UTC)}
    try:
        _render(compiled, sample)
    except Exceeded as exc:
        raise ConfigError(f"system prompt template exceeded {exc}") from None
    except MemoryError:  # whatever the session's values, this one is too big
        raise ConfigError("system prompt template exceeded the memory available") from None
    except Exception:  # noqa: BLE001, S110 - see the docstring
        pass


def _render(compiled: Template, context: dict[str, Any]) -> str:
    from langswarm_runtime.template_limits import active_budget

    with active_budget():
        parts: list[str] = []
        size = 0
        for part in compiled.generate(context):
            size += len(part)
            if size > MAX_TEXT:
                raise Exceeded(f"{MAX_TEXT:,} characters of output")
            parts.append(part)
        return "".join(parts)


def render_system_prompt(
    template: str,
    *,
    user_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    model: str | None = None,
    provider: str | None = None,
    now: Any = None,
    **fields: Any,
) -> str:
    """Render a system prompt template.

    ``now`` defaults to the current UTC time (a timezone-aware ``datetime``, so
    ``{{ now.date() }}`` and ``{{ now.strftime('%Y') }}`` work). Undefined names, syntax
    errors, anything the sandbox forbids and a render past its budget raise
    ``ConfigError`` with a one-line message.
    """
    from jinja2 import TemplateError, UndefinedError
    from jinja2.exceptions import SecurityError

    compiled = compile_template(template)
    context = {
        "user_id": user_id,
        "metadata": dict(metadata or {}),
        "model": model,
        "provider": provider,
        "now": now if now is not None else _dt.datetime.now(_dt.UTC),
        **fields,
    }
    try:
        return _render(compiled, context)
    except Exceeded as exc:
        raise ConfigError(f"system prompt template exceeded {exc}") from None
    except UndefinedError as exc:
        raise ConfigError(
            f"system_prompt: {exc.message}; available: {', '.join(sorted(context))}"
        ) from None
    except SecurityError as exc:
        raise ConfigError(f"system_prompt: not allowed in the sandbox: {exc}") from None
    except TemplateError as exc:
        raise ConfigError(f"system_prompt: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. a filter applied to the wrong type
        raise ConfigError(
            f"system_prompt: rendering failed: {type(exc).__name__}: {exc}"
        ) from None
