#!/usr/bin/env bash
# Set up (if needed) and run the default test suite. Benchmarks are excluded (-m benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
