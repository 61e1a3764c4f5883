"""The README's code-first example runs (on this test's key prefix and server)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    code = block.replace('"redis://127.0.0.1:6379/0"', repr(redis_url))
    code = code.replace('key_prefix="chat:"', f"key_prefix={key_prefix!r}")
    assert repr(key_prefix) in code
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, check=False, capture_output=True,
        text=True, timeout=60, env={**os.environ, "LANGSWARM_LOAD_PLUGINS": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "3 echo: hi [earlier messages: 0]"
