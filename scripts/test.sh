#!/usr/bin/env bash
# Set up, lint, type-check and run every test (unit, integration on a real broker and
# PostgreSQL, and the slow fault tests). Pass pytest arguments to narrow it, e.g. -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy .
exec .venv/bin/pytest "$@"
