"""Resume after a real kill: SIGKILL a running ``ppsd sweep`` mid-way, rerun the same command,
and get every point exactly once, equal to an uninterrupted run (single-sequence and serving
points)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ppsd_sim.sweep import load_results, parse_spec
from ppsd_sim.sweep.store import part_files
from ppsd_sim.sweep.table import RUN_COLUMNS

# ~1 ms per point on the fast path: a second or two of work in several batches
SPEC = {
    "name": "kill",
    "seed": 11,
    "fixed": {"layers": 24, "t_layer": 5e-4, "head_fraction": 0.5, "tokens": 5000},
    "axes": {
        "scheme": ["eesd", "ppsd"],
        "alpha": [round(0.30 + 0.01 * i, 2) for i in range(30)],
        "exit": [3, 6, 8, 30],  # 30 >= L: failure rows must survive the kill too
        "gamma": [2, 4, 6],
        "k": [2, 3, 4],
    },
}

# serving points (tens of ms each, baselines included), a few of which fail when built
SERVING = {
    "name": "kill-serving",
    "seed": 11,
    "fixed": {
        "mode": "serving",
        "layers": 24,
        "t_layer": 5e-4,
        "head_fraction": 0.5,
        "requests": 24,
        "output_len": 24,
        "k": 3,
        "exit": 6,
        "gamma": 3,
    },
    "axes": {
        "scheme": ["eesd", "ppsd"],
        "alpha": [0.5, 0.7, 0.9],
        "rate": [round(5.0 + 5.0 * i, 1) for i in range(8)],
        "max_batch": [4, 16],
    },
    # exit 30 >= L: failure rows must survive the kill too
    "points": [{"scheme": "eesd", "exit": 30, "alpha": 0.8, "rate": 10.0}],
}


def _sweep(spec: Path, out: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "ppsd_sim.cli.main", "sweep", str(spec), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, "--workers", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=list(RUN_COLUMNS)).set_index("point_id").sort_index()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("spec", [SPEC, SERVING], ids=["single", "serving"])
def test_sigkill_then_rerun_resumes_exactly(tmp_path: Path, spec: dict) -> None:
    spec_path = tmp_path / "kill.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    n_points = len(parse_spec(spec).points)
    out = tmp_path / "resumed"

    proc = _sweep(spec_path, out)
    deadline = time.monotonic() + 60
    while len(part_files(out)) < 2 if out.exists() else True:
        assert proc.poll() is None, f"sweep ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "no results appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    partial = load_results(out)
    assert 0 < len(partial) < n_points, "the kill must land mid-way"
    assert partial.point_id.is_unique
    # the pool's workers die with the sweep (no orphans left computing)
    workers = {int(w.rsplit(":", 1)[1]) for w in partial.worker}
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)

    rerun = _sweep(spec_path, out)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert f"{len(partial):,} already done, {n_points - len(partial):,} to run" in stdout

    resumed = load_results(out)
    assert len(resumed) == n_points
    assert resumed.point_id.is_unique
    assert set(partial.point_id) <= set(resumed.point_id)
    assert (resumed.status == "failed").sum() > 0

    clean_out = tmp_path / "clean"
    clean = _sweep(spec_path, clean_out)
    _, stderr = clean.communicate(timeout=120)
    assert clean.returncode == 0, stderr
    pd.testing.assert_frame_equal(_comparable(resumed), _comparable(load_results(clean_out)))
