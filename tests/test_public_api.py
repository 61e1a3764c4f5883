"""The public surface of DESIGN.md section 2 is exactly what is exported."""

from __future__ import annotations

import subprocess
import sys

import langswarm_runtime
import langswarm_runtime.session as session_pkg
import langswarm_runtime.session.storage as storage_pkg

FIXED = {
    "SessionManager", "LangSwarmSessionManager", "Session", "SessionBackend", "Message",
    "ISessionStorage", "ISessionMiddleware", "SQLiteSessionStorage", "MemorySessionStorage",
    "hookimpl",
}


def test_fixed_names_are_exported_everywhere() -> None:
    assert FIXED <= set(langswarm_runtime.__all__)
    for name in langswarm_runtime.__all__:
        assert getattr(langswarm_runtime, name) is not None
    assert session_pkg.SessionManager is langswarm_runtime.SessionManager
    assert session_pkg.SessionBackend is langswarm_runtime.SessionBackend
    assert storage_pkg.SQLiteSessionStorage is langswarm_runtime.SQLiteSessionStorage
    assert storage_pkg.ISessionStorage is langswarm_runtime.ISessionStorage
    assert langswarm_runtime.LangSwarmSessionManager is langswarm_runtime.SessionManager
    assert {b.name for b in langswarm_runtime.SessionBackend} == {"NATIVE", "HYBRID", "AUTO"}


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        n for n in vars(langswarm_runtime)
        if not n.startswith("_") and not isinstance(getattr(langswarm_runtime, n), type(sys))
    }
    assert public == set(langswarm_runtime.__all__)


def test_message_builds_without_seq() -> None:
    m = langswarm_runtime.Message(role="user", content="hi")
    assert (m.role, m.content, m.seq, m.usage) == ("user", "hi", None, None)


def test_import_is_fast_and_loads_no_sdk() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import langswarm_runtime; "
        "from langswarm_runtime import SessionManager; "
        "print([m for m in ('openai','anthropic','google.genai','cohere','mistralai','httpx',"
        "'psycopg','redis') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
