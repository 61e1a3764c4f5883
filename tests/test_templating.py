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


# -- bounded, and everyday templates unaffected ------------------------------------------
def test_everyday_templates_render_within_the_budget() -> None:
    template = (
        "{% macro item(k, v) %}- {{ k }}: {{ v }}{% endmacro %}"
        "{% for k, v in metadata|dictsort %}{{ item(k, v) }}\n{% endfor %}"
        "{{ ', '.join(['a', 'b']) }} {{ ['x', 'y']|join('+') }} {{ '%s/%d'|format('p', 3) }}"
        " {{ 'Hi {}!'.format(user_id) }} {{ '%-5s|' % 'ab' }} {{ 'ab' * 3 }} {{ 2 ** 64 }}"
        " {{ user_id ~ '!' }} {{ 'x'|center(5) }}|{{ 'l1\nl2'|indent(2) }}"
        "{% set block %}{% for i in range(3) %}{{ loop.index }}/{{ loop.length }} {% endfor %}"
        "{% endset %} {{ block|trim }}"
        "{% for n in [{'name': 'a', 'kids': [{'name': 'b', 'kids': []}]}] recursive %}"
        " {{ n.name }}{{ loop(n.kids) }}{% endfor %}"
    )
    out = render_system_prompt(template, user_id="u1", metadata={"team": "blue", "n": 2})
    assert out == (
        "- n: 2\n- team: blue\n"
        "a, b x+y p/3 Hi u1! ab   | ababab 18446744073709551616 u1!   x  |l1\n  l2"
        " 1/3 2/3 3/3 a b"
    )


def test_each_render_has_its_own_budget() -> None:
    template = "{% for i in range(60000) %}{% endfor %}done"  # over half the budget
    assert render_system_prompt(template) == "done"
    assert render_system_prompt(template) == "done"


def test_budget_covers_loops_without_output() -> None:
    with pytest.raises(ConfigError, match=r"^system prompt template exceeded 100,000 steps"):
        render_system_prompt(
            "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
        )


def test_operators_are_refused_before_they_run() -> None:
    for template in ("{{ 'a' * 10**9 }}", "{{ [0] * 10**9 }}", "{{ 'ab' + 'c' * 999999 }}"):
        with pytest.raises(ConfigError, match="exceeded 1,000,000 characters in one value"):
            render_system_prompt(template)
    with pytest.raises(ConfigError, match="exceeded 10,000-bit integers"):
        render_system_prompt("{{ 10 ** 100000 }}")
    # Jinja's ** is left-associative: 9**9**9 is (9**9)**9, a 78-digit number.
    assert render_system_prompt("{{ 9**9**9 }}") == str((9**9) ** 9)


def test_output_is_capped() -> None:
    with pytest.raises(ConfigError, match="exceeded 1,000,000 characters of output"):
        render_system_prompt("{{ 'x' * 600000 }}{{ 'y' * 600000 }}")
    assert len(render_system_prompt("{{ 'x' * 999999 }}")) == 999_999


def test_templates_too_large_or_too_nested_to_compile_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="exceeded 5,000 tokens"):
        compile_template("{{ user_id }}" * 2000)
    with pytest.raises(ConfigError, match=r"too complex to compile \(SyntaxError\)"):
        compile_template("{% for a in b %}" * 30 + "{% endfor %}" * 30)
    with pytest.raises(ConfigError, match=r"too complex to compile \(RecursionError\)"):
        compile_template("{{ " + "(" * 1500 + "1" + ")" * 1500 + " }}")


async def test_sessions_get_now_as_an_aware_utc_datetime(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from langswarm_runtime import SessionManager

    path = tmp_path / "swarm.yaml"
    path.write_text(
        "version: 1\nstorage: {type: memory}\ndefaults:\n  system_prompt: "
        "\"{{ now.year }} {{ now.strftime('%Y') }} {{ now.tzname() }} {{ now }}\"\n",
        encoding="utf-8",
    )
    manager = SessionManager.from_config(path, environ={"LANGSWARM_LOAD_PLUGINS": ""})
    try:
        before = dt.datetime.now(dt.UTC)
        session = await manager.create_session(user_id="u1")
        year, strf, tz, text = (session.system_prompt or "").split(" ", 3)
        assert year == strf == str(before.year) and tz == "UTC"
        assert dt.datetime.fromisoformat(text) >= before.replace(microsecond=0)
    finally:
        await manager.close()
