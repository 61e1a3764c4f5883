"""System prompt templates: Jinja2 in a sandbox, strict about undefined names.

``defaults.system_prompt`` is rendered once per new session from the session's fields
(``user_id``, ``metadata``, ``model``, ``provider``, ``now``). The sandbox is immutable, so a
template can read but never change what it is given; an undefined name is an error rather
than an empty string, so a typo cannot silently produce a wrong prompt.
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from langswarm_runtime.errors import ConfigError

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["compile_template", "render_system_prompt"]


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    # Imported here: jinja2 is only needed once a config actually has a template.
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


@lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    return _environment().from_string(source)


def compile_template(source: str) -> Template:
    """Compile (once; cached) a template; a syntax error is a ``ConfigError``."""
    from jinja2 import TemplateSyntaxError

    if not isinstance(source, str):
        raise ConfigError(f"system_prompt must be a string, got {type(source).__name__}")
    try:
        return _compile(source)
    except TemplateSyntaxError as exc:
        raise ConfigError(
            f"system_prompt template syntax error on template line {exc.lineno}: {exc.message}"
        ) from None


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

    ``now`` defaults to the current UTC time (a ``datetime``, so ``{{ now.date() }}`` and
    ``{{ now.strftime('%Y') }}`` work). Undefined names, syntax errors and anything the
    sandbox forbids raise ``ConfigError`` with a one-line message.
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
        return compiled.render(context)
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
