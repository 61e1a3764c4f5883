#!/usr/bin/env bash
# Install everything the tests need (core with all provider SDKs, the plugin packages)
# and run every test: core, plugins, README examples. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

"$PY" -m pip install -q --disable-pip-version-check -e ".[test]" \
  -e plugins/langswarm-storage-postgres \
  -e plugins/langswarm-storage-redis \
  -e plugins/langswarm-middleware-keywords
bash scripts/services.sh
"$PY" -m pytest tests plugins/*/tests "$@"
