#!/usr/bin/env bash
# Create .venv and install ppsd with everything the tests need. Idempotent: quick when done.
# torch is installed FIRST with an exact CPU pin: an open range would pull a multi-GB CUDA build.
# transformers is pinned to the version the tests and the shipped model card were measured with:
# a newer one changes the layers' float rounding, so seeded samples (the card's sampled α) differ.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.ppsd-installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "ppsd setup: installing into .venv (first run takes a few minutes; log: .venv/setup.log)" >&2
  log=.venv/setup.log
  if ! { .venv/bin/python -m pip install -q "torch==2.13.0" "transformers==5.24.0" &&
         .venv/bin/python -m pip install -q -e ".[real,analysis,sweep,ray,dev]"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "ppsd setup: pip install failed (full log: $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
