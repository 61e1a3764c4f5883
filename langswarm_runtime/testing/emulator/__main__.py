"""``python -m langswarm_runtime.testing.emulator --port 8080``."""

from __future__ import annotations

import sys

from langswarm_runtime.testing.emulator.server import main

sys.exit(main())
