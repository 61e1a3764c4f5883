"""Loopback emulator of the providers' wire APIs, for tests and offline demos.

``with ProviderEmulator() as emu:`` then point an SDK at ``emu.url("openai") + "/v1"``.
See :mod:`langswarm_runtime.testing.emulator.server` for routing, recording and faults.
"""

from __future__ import annotations

from langswarm_runtime.testing.emulator.server import (
    DEFAULT_PORT,
    FAULT_KINDS,
    EmulatorHTTPError,
    EmulatorRequest,
    JSONResponse,
    ProviderEmulator,
    RecordedRequest,
    SSEResponse,
    count_words,
    echo_reply,
    error_shape,
    main,
    new_id,
    route,
    serve,
    word_deltas,
)

__all__ = [
    "DEFAULT_PORT",
    "FAULT_KINDS",
    "EmulatorHTTPError",
    "EmulatorRequest",
    "JSONResponse",
    "ProviderEmulator",
    "RecordedRequest",
    "SSEResponse",
    "count_words",
    "echo_reply",
    "error_shape",
    "main",
    "new_id",
    "route",
    "serve",
    "word_deltas",
]
