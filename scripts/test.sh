#!/usr/bin/env bash
# Install everything the tests need (core with all provider SDKs, the plugin packages)
# and run every check: ruff, mypy, the strict build of the user guide, then the tests of
# the core (the examples of README.md and docs/ included) and of each plugin package.
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
echo "=== docs"
# The user guide, built for real with warnings (broken links, anchors) as errors
# (not --quiet: it hides the warnings, and then --strict has none to fail on).
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --site-dir "$site" || status=1
rm -rf "$site"
for suite in tests plugins/*/tests; do
  echo "=== $suite"
  (cd "$(dirname "$suite")" && "$PY" -m pytest "$(basename "$suite")" "$@") || status=1
done
exit $status
