"""The serving calibration: its record, its predictions and ``ppsd calibrate serving``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from calibration.serving import (
    ServingGrid,
    compare_cells,
    measure_cells,
    predict_requests,
    run_figures,
)
from ppsd_real import runner
from ppsd_real.batched.run import default_prompts
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.examples import example_profile
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.calibration_report import CalibrationInfo
from ppsd_sim.records.load_cost import BatchedCosts, LoadCost
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.serving_calibration import (
    MetricSummary,
    ServingCalibration,
    ServingCheck,
)


def _check(scheme="eesd", batch=2, metric="tokens_s", measured=100.0, predicted=110.0, **kw):
    base = dict(
        scheme=scheme,
        batch=batch,
        requests=2 * batch,
        alpha=None if scheme == "ar" else 0.9,
        observed_alpha=None if scheme == "ar" else 0.88,
        metric=metric,
        measured=measured,
        measured_lo=measured * 0.9,
        measured_hi=measured * 1.1,
        predicted=predicted,
        replayed=None if scheme == "ar" else predicted * 0.98,
    )
    return ServingCheck(**{**base, **kw})


def _info() -> CalibrationInfo:
    return CalibrationInfo("m", "hw", "2026-12-04", tokens=32, repeats=5, sim_tokens=16)


def test_the_record_round_trips_and_recomputes_its_summary():
    rows = (
        _check("ar", 1, measured=200.0, predicted=190.0),  # -5 %
        _check("eesd", 1, measured=200.0, predicted=230.0),  # +15 %
        _check("ar", 4, measured=500.0, predicted=510.0),  # +2 %
        _check("eesd", 4, metric="tpot_p50_s", measured=0.005, predicted=0.0045),  # -10 %
    )
    rep = ServingCalibration(_info(), rows, ("a note",), example_profile())
    data = json.loads(json.dumps(rep.to_dict()))
    back = ServingCalibration.from_dict(data)
    assert back == rep
    s = rep.summary("tokens_s")
    assert s.cells == 3
    assert s.median_abs_error == pytest.approx(0.05)
    assert s.worst_abs_error == pytest.approx(0.15)
    assert s.worst_cell == "EESD batch 1 α=0.9"
    assert data["summary"]["tpot_p50_s"]["worst_abs_error"] == pytest.approx(0.1)
    assert rep.metrics == ("tokens_s", "tpot_p50_s")
    assert data["rows"][1]["error"] == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scheme": "tp_ar"}, "scheme"),
        ({"metric": "e2e"}, "metric"),
        ({"batch": 0}, "batch"),
        ({"measured_lo": 120.0}, "measured"),
        ({"predicted": 0.0}, "predicted"),
        ({"observed_alpha": 1.5}, "observed_alpha"),
        ({"scheme": "ar", "metric": "speedup"}, "metric"),
    ],
)
def test_a_bad_check_is_refused_by_field(change, field):
    with pytest.raises(ConfigError) as err:
        _check(**change)
    assert err.value.field == field


def test_a_summary_of_a_metric_no_row_measures_is_refused():
    with pytest.raises(ConfigError):
        MetricSummary.of("tpot_p50_s", [_check()])


def test_a_file_of_another_record_is_refused():
    with pytest.raises(ConfigError) as err:
        ServingCalibration.from_dict({"record": "CalibrationReport", "schema_version": 1})
    assert err.value.field == "record"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"batches": (4, 2)}, "--batches"),
        ({"batches": ()}, "--batches"),
        ({"alphas": (1.5,)}, "--alphas[0]"),
        ({"tokens": 1}, "--tokens"),
    ],
)
def test_a_bad_grid_is_refused_by_flag(kw, field):
    with pytest.raises(ConfigError) as err:
        ServingGrid(**kw)
    assert err.value.field == field


def _linear_profile():
    """The example profile with load costs that read no KV (a closed form exists)."""
    import dataclasses

    prof = example_profile()
    layer = LoadCost(a=1e-3, b=1e-4)
    costs = BatchedCosts(
        layers=(layer,) * prof.n_layers,
        embed=LoadCost(a=1e-5, b=1e-6),
        ee_head=LoadCost(a=2e-4, b=1e-5),
        final_head=LoadCost(a=2e-4, b=1e-5),
    )
    return dataclasses.replace(prof, batched=costs)


def test_ar_prediction_is_the_closed_form_of_lockstep_requests():
    prof = _linear_profile()
    L, n, B, prompt = prof.n_layers, 16, 4, 10
    got = predict_requests(prof, SchemeConfig.ar(), [prompt] * B, n, B, [None] * B)
    lc, tick = prof.load_costs(), prof.tick.median

    def step(T, heads):
        return lc.embed.time(T) + L * lc.layers[0].time(T) + lc.final_head.time(heads) + tick

    makespan = step(B * prompt, B) + (n - 1) * step(B, B)
    assert got.tokens_s == pytest.approx(B * n / makespan, rel=1e-9)
    assert got.tpot_p50_s == pytest.approx(step(B, B), rel=1e-9)


def test_replaying_an_all_accepted_trace_is_alpha_one_and_acceptance_speeds_eesd_up():
    prof = _linear_profile()
    eesd = SchemeConfig.eesd(prof.n_layers // 2, 4)
    lens = [12, 20, 8, 16]
    ones = predict_requests(prof, eesd, lens, 24, 2, [AcceptanceSpec.from_trace([1] * 7)] * 4)
    one = predict_requests(prof, eesd, lens, 24, 2, [AcceptanceSpec.iid(1.0)] * 4)
    low = predict_requests(prof, eesd, lens, 24, 2, [AcceptanceSpec.iid(0.3)] * 4, seeds=4)
    assert ones.tokens_s == pytest.approx(one.tokens_s, rel=1e-12)
    assert one.tokens_s > low.tokens_s
    assert one.tpot_p50_s < low.tpot_p50_s


@pytest.fixture(scope="module")
def tiny():
    return runner.load(ModelSpec("tiny"))


def test_measured_cells_compare_against_their_own_runs(tiny):
    grid = ServingGrid(batches=(1, 2), alphas=(0.9,), tokens=8, requests_per_slot=2)
    prompts = default_prompts(tiny, None, 4, 0)
    cells = measure_cells(tiny, prompts, grid, repeats=1)
    assert [(c.batch, c.alpha) for c in cells] == [(1, 0.9), (2, 0.9)]
    assert [len(c.prompt_lengths) for c in cells] == [2, 4]
    runs = cells[1].runs("eesd")
    figs = run_figures(runs, 2)
    s = runs[0]
    assert figs["tokens_s"][0] == pytest.approx(4 * 8 / s.time_s)
    compared = compare_cells(_tiny_profile(tiny), cells, grid, seeds=2)
    kinds = sorted({(r.scheme, r.batch, r.metric) for r in compared.rows})
    want = [
        (s, b, m)
        for s in ("ar", "eesd", "pp_ar", "ppsd")
        for b in (1, 2)
        for m in ("tokens_s", "tpot_p50_s", *(("speedup",) if s != "ar" else ()))
    ]
    assert kinds == sorted(want)
    by = {(r.scheme, r.batch, r.metric): r for r in compared.rows}
    for b in (1, 2):
        for kind in ("eesd", "pp_ar", "ppsd"):
            # the predicted speedup is the ratio of the predicted throughputs, one formula
            ratio = by[(kind, b, "tokens_s")].predicted / by[("ar", b, "tokens_s")].predicted
            assert by[(kind, b, "speedup")].predicted == pytest.approx(ratio, rel=1e-12)
            row = next(r for r in cells[b - 1].report.rows if r.name == kind)
            assert by[(kind, b, "speedup")].measured == pytest.approx(row.speedup)
    # PP-AR's own runs: every request's tokens, the batch-1 AR ones
    pp = cells[1].runs("pp_ar")[0]
    assert [len(r.tokens) for r in pp.results] == [8] * 4
    assert by[("pp_ar", 2, "speedup")].label == "PP-AR batch 2"
    # PPSD's too, drafting at the EESD exit with the same oracle (α = 0.9 fixed its fates)
    ppsd = cells[1].runs("ppsd")[0]
    assert [len(r.tokens) for r in ppsd.results] == [8] * 4
    assert [len(r.trace) for r in ppsd.results] == [7] * 4
    assert by[("ppsd", 2, "speedup")].label == "PPSD batch 2 α=0.9"
    for r in compared.rows:
        assert r.measured_lo <= r.measured <= r.measured_hi
        if r.scheme in ("eesd", "ppsd"):
            assert r.replayed is not None and 0.0 <= r.observed_alpha <= 1.0


def _tiny_profile(m):
    from calibration.serving import serving_profile

    return serving_profile(m, 5, m.n_layers // 2, 4)


def _cli(*args):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "calibrate", "serving", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_the_command_writes_a_report_that_reads_back(tmp_path):
    out = tmp_path / "serving"
    res = _cli(
        "--preset", "tiny", "--quick", "--tokens", "8", "--repeats", "1",
        "--profile-repeats", "5", "--seeds", "2", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rep = ServingCalibration.from_dict(json.loads((out / "serving.json").read_text()))
    assert {r.batch for r in rep.rows} == {1, 4}
    assert {r.scheme for r in rep.rows} == {"ar", "eesd", "pp_ar", "ppsd"}
    assert rep.metrics == ("tokens_s", "tpot_p50_s", "speedup")
    assert rep.profile is not None and rep.profile.batched is not None
    md = (out / "serving.md").read_text()
    assert "median |error|" in md and "| EESD batch 4 α=0.9 |" in md
    assert "| PP-AR batch 4 |" in md and "| PPSD batch 4 α=0.9 |" in md
    assert (out / "profile.json").is_file()
    assert "throughput (output tokens/s) over 8 cells: median |error|" in res.stdout


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--batches", "4,2"], "--batches"),
        (["--batches", "two"], "--batches"),
        (["--alphas", "0.5,1.5"], "--alphas[1]"),
        (["--repeats", "0"], "--repeats"),
        (["--exit", "9"], "--exit"),
        (["--pp-stages", "1"], "--pp-stages"),
        (["--pp-stages", "9"], "--pp-stages"),
        # PPSD's stage 1 is layers [0, E): 3 more stages need 3 layers after E = 3 of 4
        (["--pp-stages", "4", "--exit", "3"], "--pp-stages: 4 stages need"),
        (["--model-dir", "/nonexistent"], "--model-dir"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag_and_keep_the_old_report(tmp_path, args, field):
    out = tmp_path / "old"
    out.mkdir()
    (out / "serving.json").write_text("kept")
    res = _cli("--preset", "tiny", *args, "--out", str(out))
    if "--model-dir" in args:
        res = _cli(*args, "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(f"ppsd: error: {field}")
    assert (out / "serving.json").read_text() == "kept"
