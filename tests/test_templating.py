"""System prompt templates: sandboxed, strict, compiled once."""

from __future__ import annotations

import datetime as dt

import pytest

from langswarm_runtime.errors import ConfigError
from langswarm_runtime.templating import compile_template, render_system_prompt


def test_renders_session_fields() -> None:
    out = render_system_prompt(
        "{{ user_id }} on {{ provider }}/{{ model }} ({{ metadata.team }}) {{ now.year }}",
        user_id="u1", metadata={"team": "blue"}, model="m", provider="local",
        now=dt.datetime(2030, 1, 2, tzinfo=dt.UTC),
    )
    assert out == "u1 on local/m (blue) 2030"


def test_now_defaults_to_current_utc_time() -> None:
    out = render_system_prompt("{{ now.tzname() }} {{ now.year }}")
    assert out == f"UTC {dt.datetime.now(dt.UTC).year}"


def test_no_autoescape_and_newlines_kept() -> None:
    assert render_system_prompt("<b>{{ user_id }}</b>\n", user_id="a&b") == "<b>a&b</b>\n"


def test_undefined_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        render_system_prompt("Hello {{ usr_id }}", user_id="u1")
    assert str(err.value) == (
        "system_prompt: 'usr_id' is undefined; available: metadata, model, now, provider,"
        " user_id"
    )
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        render_system_prompt("{{ metadata.missing }}", metadata={})


def test_syntax_error_is_a_config_error_with_template_line() -> None:
    with pytest.raises(ConfigError, match=r"syntax error on template line 2"):
        render_system_prompt("fine\n{% if %}")


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ metadata.__class__ }}",
        "{{ metadata.update({'role': 'admin'}) }}",
        "{{ user_id.__class__.__base__.__subclasses__() }}",
    ],
)
def test_sandbox_refuses_unsafe_operations(template: str) -> None:
    metadata = {"role": "user"}
    with pytest.raises(ConfigError, match="system_prompt"):
        render_system_prompt(template, user_id="u", metadata=metadata)
    assert metadata == {"role": "user"}


def test_runtime_errors_in_templates_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"rendering failed: ZeroDivisionError"):
        render_system_prompt("{{ 1 / 0 }}")


def test_templates_are_compiled_once() -> None:
    source = "cached {{ user_id }}"
    assert compile_template(source) is compile_template(source)
    assert render_system_prompt(source, user_id="a") == "cached a"
    assert render_system_prompt(source, user_id="b") == "cached b"


def test_non_string_template_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        compile_template(42)  # type: ignore[arg-type]
