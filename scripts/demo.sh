#!/usr/bin/env bash
# The main job: set everything up from nothing and run the whole pipeline on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/engage demo "$@"
