"""The README's code-first example runs (on this test's schema and server)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(tmp_path: Path, pg_dsn: str, pg_schema: str) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    code = block.replace('"postgresql://postgres@127.0.0.1:5432/postgres"', repr(pg_dsn))
    code = code.replace('schema="chat"', f"schema={pg_schema!r}")
    assert repr(pg_schema) in code
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, check=False, capture_output=True,
        text=True, timeout=60, env={**os.environ, "LANGSWARM_LOAD_PLUGINS": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "3 echo: hi [earlier messages: 0]"
