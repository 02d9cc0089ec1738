#!/usr/bin/env bash
# Run a benchmark: bash bench/run.sh ingest [--scale 0.2]
#   bash bench/run.sh bounded [--users 300000]   simulations under their limits (healthz, RSS)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
what=${1:-ingest}; shift || true
exec .venv/bin/python -m "bench.bench_${what}" "$@"
