"""The README's code-first example runs and prints what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(tmp_path: Path) -> None:
    # The first python block is the runnable example; later ones are excerpts.
    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)[0]
    script = tmp_path / "example.py"
    script.write_text(block)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, check=False, capture_output=True,
        text=True, timeout=60, env={**os.environ, "LANGSWARM_LOAD_PLUGINS": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "['billing']",
        "message rejected: keywords: outgoing message contains the blocked keyword 'launch codes'",
    ]
