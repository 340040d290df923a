#!/usr/bin/env bash
# Render a ppsd report in a real headless browser and save a PNG screenshot, to check by eye
# that the self-contained page displays (figures, tables, tags) with no network access.
#
# Usage: analysis/screenshot.sh [REPORT_HTML] [OUT_PNG] [HEIGHT]
#   REPORT_HTML  default: build the example report into a temp folder and use it
#   OUT_PNG      default: /tmp/ppsd-report.png
#   HEIGHT       window height in pixels (default 9000: the whole example report)
# Needs Debian's chromium: apt-get update && apt-get install -y chromium
set -euo pipefail
html="${1:-}"
png="${2:-/tmp/ppsd-report.png}"
height="${3:-9000}"
if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium not found: apt-get update && apt-get install -y chromium" >&2
  exit 3
fi
if [[ -z "$html" ]]; then
  out="$(mktemp -d)"
  ppsd report --out "$out" --sim-tokens 5000 >/dev/null
  html="$out/report.html"
fi
profile_dir="$(mktemp -d)"
trap 'rm -rf "$profile_dir"' EXIT
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile_dir" --screenshot="$png" --window-size="1400,$height" \
  "file://$(realpath "$html")" >/dev/null 2>&1
echo "$png"
