#!/usr/bin/env bash
# Set up (if needed) and run the main job on its embedded default: AR, EESD and PPSD side by
# side in the simulator. Extra arguments go to `ppsd sim` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ppsd sim "$@"
