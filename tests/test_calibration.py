"""Calibration: the comparison, the noise-aware gate, and the loop end to end on real layers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from calibration import gate
from calibration.compare import Row, summarise
from calibration.grid import Cell, default_grid
from calibration.predict import predict
from ppsd_real.test_hooks import TICK_DELAY_ENV
from ppsd_sim import analytic
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, SchemeConfig, read_record
from ppsd_sim.records.calibration_report import CalibrationReport


def test_default_grid_covers_the_issue():
    cells = default_grid(8)
    kinds = [c.scheme.kind for c in cells]
    assert len(cells) >= 25 and kinds.count("ar") == 1
    assert {c.scheme.draft_exit_layer for c in cells if c.scheme.kind != "ar"} == {2, 4}
    assert {c.alpha for c in cells if c.alpha is not None} == {0.5, 0.6, 0.7, 0.8, 0.9, 1.0}
    assert all(c.scheme.n_stages == 2 for c in cells if c.scheme.kind == "ppsd")
    assert len(default_grid(8, quick=True)) == 7


def test_prediction_is_the_simulator_from_the_profile_alone():
    p = HardwareProfile.uniform(8, 1e-3, 1.0, hop=1e-4, tick=5e-5, flush=2e-5)
    cell = Cell(SchemeConfig.ppsd((4, 8)), 0.8)
    pred = predict(p, cell, tokens=50_000)
    assert pred.speedup == pytest.approx(analytic.speedup(p, cell.scheme, 0.8), rel=0.01)
    assert "hop" not in " ".join(pred.flags)  # hop was profiled
    flat = HardwareProfile.uniform(8, 1e-3, 1.0)
    assert any("hop" in f for f in predict(flat, cell, tokens=1000).flags)
    eesd = predict(flat, Cell(SchemeConfig.eesd(4, 4), 0.8), tokens=1000)
    assert any("extrapolated" in f for f in eesd.flags)  # never a silent extrapolation
    # replay: an all-accept trace predicts the α = 1 speed whatever α the cell asked for
    replay = predict(p, cell, tokens=5000, trace=(1, 1, 1, 1))
    assert replay.speedup == pytest.approx(
        predict(p, Cell(cell.scheme, 1.0), tokens=5000).speedup, rel=1e-9
    )


def _row(label, scheme, measured, predicted, replayed=None):
    return Row(
        label, scheme, 0.8, measured, measured * 0.9, measured * 1.1, predicted, replayed, 0.8, ()
    )


def test_summary_uses_signed_relative_errors_and_ignores_the_ar_cell():
    rows = [
        _row("AR", "ar", 1.0, 2.0),
        _row("a", "ppsd", 2.0, 2.2, 2.0),
        _row("b", "eesd", 1.0, 0.9, 1.0),
        _row("c", "ppsd", 1.5, 1.5, 1.5),
    ]
    assert rows[1].error == pytest.approx(0.1) and rows[2].error == pytest.approx(-0.1)
    s = summarise(rows)
    assert s.cells == 3
    assert s.median_abs_error == pytest.approx(0.1)
    assert s.worst_abs_error == pytest.approx(0.1)
    assert s.median_abs_replay_error == pytest.approx(0.0)


def test_gate_threshold_grows_with_noise_and_has_a_floor():
    quiet = [2.0, 2.01, 1.99, 2.0, 2.02]
    noisy = [2.0, 2.4, 1.6, 2.2, 1.8]
    assert gate.threshold(quiet, quiet) == gate.FLOOR
    assert gate.threshold(quiet, quiet, floor=0.1) == 0.1
    assert gate.threshold(quiet, noisy) > gate.threshold(quiet, quiet)
    # a fresh run is credited at least the baseline's spread: three lucky close repeats do
    # not make a noisy cell's threshold a hair trigger
    assert gate.threshold(noisy, quiet) == gate.threshold(noisy, noisy) > gate.FLOOR
    assert gate.threshold(noisy, noisy[:3]) > gate.threshold(noisy, noisy)  # fewer repeats
    # the formula: 1 − exp(−z · √(se_b² + se_f²)), se = 1.2533 · 1.4826 · MAD / median / √n
    se = 1.2533 * 1.4826 * 0.2 / 2.0 / math.sqrt(5)
    assert gate.threshold(noisy, noisy) == pytest.approx(1 - math.exp(-3 * math.hypot(se, se)))
    # judged on log speedup: a spread of 1.5 (3 × 0.5), which on a linear scale would allow a
    # drop of 150% and so pass anything, still fails a drop to a twentieth
    assert 0.75 < gate.threshold(quiet, quiet, between=0.5) < 0.95


def _baseline(samples):
    cells = (gate.GateCell("PPSD α=0.9", SchemeConfig.ppsd((4, 8)), 0.9, tuple(samples)),)
    return gate.Baseline("x86_64-2core", "preset:cpu-bench(seed=0)", 128, cells, "2026-11-27", {})


def test_gate_passes_noise_and_fails_a_real_drop():
    base = _baseline([1.60, 1.62, 1.58, 1.61, 1.59])
    (ok,) = gate.judge(base, {"PPSD α=0.9": [1.58, 1.61, 1.57, 1.60, 1.62]})
    assert ok.ok
    (bad,) = gate.judge(base, {"PPSD α=0.9": [1.40, 1.42, 1.39, 1.41, 1.43]})
    assert not bad.ok and bad.change == pytest.approx(1.41 / 1.60 - 1)
    with pytest.raises(ConfigError, match="no fresh measurement"):
        gate.judge(base, {})


def test_baseline_files_round_trip_and_refuse_bad_content(tmp_path):
    base = _baseline([1.6, 1.62, 1.58])
    path = gate.save_baseline(tmp_path / "b.json", base)
    assert gate.load_baseline(path) == base
    data = json.loads(path.read_text())
    data["cells"][0]["speedups"] = [1.6]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"cells\[0\]\.speedups"):
        gate.load_baseline(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="ppsd calibrate baseline"):
        gate.load_baseline(tmp_path / "missing.json")


def test_calibration_loop_end_to_end_on_real_layers(tmp_path):
    out = tmp_path / "cal"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ppsd_sim.cli.main",
            "calibrate",
            "run",
            "--preset",
            "tiny",
            "--quick",
            "--tokens",
            "16",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"TQDM_DISABLE": "1", **os.environ},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads((out / "calibration.json").read_text())
    assert doc["record"] == "CalibrationReport" and len(doc["rows"]) == 7
    for row in doc["rows"]:
        assert row["measured"] > 0 and row["predicted"] > 0
        assert math.isfinite(row["error"])
        if row["scheme"] != "ar":
            assert row["observed_alpha"] is not None and row["replayed"] is not None
    prof = json.loads((out / "profile.json").read_text())
    assert prof["provenance"]["source"] == "measured" and prof["hop"]
    rep = read_record(out / "calibration.json", CalibrationReport)  # the versioned reader
    assert rep.profile == HardwareProfile.from_dict(prof) and rep.info.quick
    assert [r.to_dict() for r in rep.rows] == doc["rows"]
    assert (out / "predicted_vs_measured.png").stat().st_size > 10_000
    assert "Median |error|" in (out / "calibration.md").read_text()


def test_regress_without_a_baseline_is_refused_in_one_line(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ppsd_sim.cli.main",
            "calibrate",
            "regress",
            "--preset",
            "tiny",
            "--tokens",
            "16",
            "--repeats",
            "2",
            "--baseline",
            str(tmp_path / "none.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("ppsd: error: --baseline: no baseline at")


def _calibrate(args, extra_env=None):
    env = {**os.environ, "TQDM_DISABLE": "1", **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "calibrate", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.long
def test_speed_gate_passes_unchanged_code_and_trips_on_an_injected_slowdown(tmp_path):
    common = [
        "--preset",
        "tiny",
        "--tokens",
        "16",
        "--repeats",
        "3",
        "--baseline",
        str(tmp_path / "b.json"),
    ]
    res = _calibrate(["baseline", *common, "--runs", "3"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert gate.load_baseline(tmp_path / "b.json").cells  # a real, readable baseline
    # a generous floor: this tiny model is dominated by per-step overheads and noisy
    res = _calibrate(["regress", *common, "--floor", "0.5"])
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert "speed gate passed" in res.stdout
    res = _calibrate(["regress", *common, "--floor", "0.5"], {TICK_DELAY_ENV: "0.02"})
    assert res.returncode == 1, res.stdout + res.stderr[-2000:]
    # measured twice (the drop must reproduce); both cells fail both times
    assert res.stdout.count("FAIL") == 4 and "confirming run" in res.stdout
    assert "speed gate FAILED" in res.stderr and "reproduced" in res.stderr


def test_a_malformed_injected_delay_is_refused():
    res = _calibrate(["regress", "--preset", "tiny"], {TICK_DELAY_ENV: "soon"})
    assert res.returncode == 2
