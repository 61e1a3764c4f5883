"""``python -m langswarm_runtime.testing.emulator [--port N]`` (default 8765)."""

from __future__ import annotations

import sys

from langswarm_runtime.testing.emulator.server import main

sys.exit(main())
