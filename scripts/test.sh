#!/usr/bin/env bash
# Install everything the tests need (core with all provider SDKs, the plugin packages)
# and run every check: ruff, mypy, then the tests of the core (README examples included)
# and of each plugin package.
# Each suite runs in its own pytest process, because each one pins which installed
# plugins may load (LANGSWARM_LOAD_PLUGINS). Extra arguments go to every pytest run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

"$PY" -m pip install -q --disable-pip-version-check -e ".[test]" \
  -e plugins/langswarm-storage-postgres \
  -e plugins/langswarm-storage-redis \
  -e plugins/langswarm-middleware-keywords || exit 1
bash scripts/services.sh

status=0
echo "=== lint"
"$PY" -m ruff check . || status=1
"$PY" -m mypy langswarm_runtime || status=1
for suite in tests plugins/*/tests; do
  echo "=== $suite"
  (cd "$(dirname "$suite")" && "$PY" -m pytest "$(basename "$suite")" "$@") || status=1
done
exit $status
