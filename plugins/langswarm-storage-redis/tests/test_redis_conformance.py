"""The storage conformance suite from langswarm_runtime.testing, unchanged, against the
real Redis server (one fresh key prefix per test, see conftest.py)."""

from __future__ import annotations

from langswarm_runtime.testing import StorageConformance


class TestRedisConformance(StorageConformance):
    """Runs every conformance test and the stateful property test; ``storage_factory``
    comes from conftest.py (instances share this test's key prefix)."""
