"""Only this plugin (and the built-ins) load in these tests, whatever else is installed.

Set per test with monkeypatch rather than at import, because pytest may collect several
plugin test directories in one session and each wants its own allow-list.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGSWARM_LOAD_PLUGINS", "keywords")
