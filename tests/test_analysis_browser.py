"""The report renders in a real headless browser (skipped when Debian's chromium is absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.report_build import build_report
from analysis.report_write import write_report

SCRIPT = Path(__file__).resolve().parents[1] / "analysis" / "screenshot.sh"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_chromium(tmp_path: Path):
    html, _ = write_report(build_report(sim_tokens=1000), tmp_path / "r")
    png = tmp_path / "shot.png"
    res = subprocess.run(
        ["bash", str(SCRIPT), str(html), str(png), "2000"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # a page with figures, not blank
