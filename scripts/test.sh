#!/usr/bin/env bash
# Set up, lint, type-check and run every test (unit, integration on a real broker and
# PostgreSQL, and the slow fault tests). Pass pytest arguments to narrow it, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The observability check runs a real Prometheus: Debian's package (prometheus + promtool).
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "prometheus/promtool missing and not root: the observability tests will be skipped" >&2
  fi
fi
# Test stacks are throw-away: their embedded PostgreSQL runs without fsync (ENGAGE_UNSAFE_FAST),
# as no user's stack does by default; tests/integration/test_engage_up.py checks the default.
export ENGAGE_UNSAFE_FAST=1
# Reference and fuzz tests read thousands of rows as fast as they can with one key; the
# per-caller request limit (100/s by default) is proven by tests/integration/test_request_limits.py
# with its own setting, so the test stacks lift it.
export ENGAGE_API_REQUESTS_PER_S=100000
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy .
exec .venv/bin/pytest "$@"
