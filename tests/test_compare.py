"""One compare: ``ppsd_sim.predict`` predicts a measured run (a RunRecord or a calibration cell)
from its profile, the CalibrationReport record holds the rows with the one signed error, and
calibration.md and ``ppsd report`` render the same table and figure from it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from analysis.report_build import build_report
from analysis.report_md import render_markdown
from analysis.report_write import write_report as write_site
from calibration.compare import findings_of, summarise
from calibration.grid import Cell, default_grid
from calibration.predict import predict as predict_cell
from calibration.report import build_record, write_report
from ppsd_sim import analytic
from ppsd_sim.errors import ConfigError
from ppsd_sim.predict import predict, predict_run, range_flags
from ppsd_sim.records import AcceptanceObserved, AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.records.calibration_report import (
    CalibrationReport,
    Comparison,
    signed_error,
)
from ppsd_sim.records.io import read_record
from ppsd_sim.records.profile import Provenance
from ppsd_sim.records.run_record import RunRecord
from ppsd_sim.simulate import simulate

COMMITTED = Path(__file__).resolve().parents[1] / "calibration/reports/x86_64-2core/cpu-bench-seed0"
MEASURED = Provenance(source="measured", device="rig", threads=1, model="m", dtype="float32")


def _profile(**kw: float) -> HardwareProfile:
    p = HardwareProfile.uniform(8, 1e-3, 1.0, hop=1e-4, tick=5e-5, flush=2e-5, **kw)
    return p.with_costs(provenance=MEASURED)


def _run(scheme: SchemeConfig, **kw) -> RunRecord:
    args = dict(
        origin="measured",
        engine="real/sequential",
        scheme=scheme,
        tokens=64,
        time_s=1.0,
        speedups={"ar_1thread": 1.2},
        baseline="ar_1thread",
    )
    args.update(kw)
    return RunRecord(**args)


# ---- the one prediction --------------------------------------------------------------------
def test_predict_is_the_simulator_on_the_profile_and_ar_is_one():
    p = _profile()
    s = SchemeConfig.ppsd((4, 8))
    acc = AcceptanceSpec.iid(0.8)
    want = simulate(p, s, acc, tokens=3000, engine="auto").record
    got = predict(p, s, acc, tokens=3000)
    assert (got.speedup, got.engine, got.flags) == (want.speedup, want.engine, ())
    assert got.speedup == pytest.approx(analytic.speedup(p, s, 0.8), rel=0.02)
    assert predict(p, SchemeConfig.ar(), None).speedup == 1.0


def test_range_flags_name_every_unmeasured_input_in_one_place():
    p = _profile()
    assert range_flags(p, SchemeConfig.ppsd((4, 8))) == ()
    flat = HardwareProfile.uniform(8, 1e-3, 1.0).with_costs(provenance=MEASURED)
    assert range_flags(flat, SchemeConfig.ppsd((4, 8))) == ("hop latency not profiled (0)",)
    # uniform() profiles verify sizes up to 1 token: γ = 4 verifies 5, an extrapolation
    (verify,) = range_flags(flat, SchemeConfig.eesd(4, 4))
    assert verify == "verify of 5 tokens extrapolated beyond 1"
    full = p.with_costs(provenance=replace(MEASURED, latency_context="full_model"))
    assert any("no concurrency slowdown" in f for f in range_flags(full, SchemeConfig.ppsd((4, 8))))
    synth = p.with_costs(provenance=Provenance(source="synthesised"))
    assert range_flags(synth, SchemeConfig.ar()) == ("profile is synthesised, not measured",)


def test_a_run_and_a_calibration_cell_get_the_same_prediction():
    """The report (RunRecord) and calibration (cell) paths are one recipe: same inputs, same
    number, and the replay of a trace is the same too."""
    p = _profile()
    s = SchemeConfig.eesd(4, 3)
    trace = (1, 1, 0, 1, 0, 0, 1, 1, 1, 0)
    obs = AcceptanceObserved(len(trace), sum(trace), trace=trace)
    run = _run(s, profile=p, acceptance=AcceptanceSpec.iid(0.7), acceptance_observed=obs)
    cell = Cell(s, 0.7)
    assert predict_run(run, tokens=2000) == predict_cell(p, cell, tokens=2000)
    assert predict_run(run, replay=True, tokens=2000) == predict_cell(
        p, cell, tokens=2000, trace=trace
    )
    assert (
        predict_run(run, replay=True, tokens=2000).speedup != predict_run(run, tokens=2000).speedup
    )


def test_predict_run_fills_in_what_the_run_lacks_and_says_so():
    p = _profile()
    s = SchemeConfig.ppsd((4, 8))
    obs = AcceptanceObserved(judged=10, accepted=7, trace=(1,) * 7 + (0,) * 3)
    bare = _run(s, acceptance_observed=obs)
    with pytest.raises(ConfigError, match="profile: the run carries no profile"):
        predict_run(bare)
    got = predict_run(bare, profile=p, tokens=2000)  # i.i.d. at the observed 0.7
    assert got.speedup == predict(p, s, AcceptanceSpec.iid(0.7), tokens=2000).speedup
    assert got.flags == ("acceptance taken as i.i.d. at the observed rate 0.700",)
    with pytest.raises(ConfigError, match="acceptance: the run records no acceptance"):
        predict_run(_run(s, profile=p))
    with pytest.raises(ConfigError, match="no trace to replay"):
        predict_run(_run(s, profile=p, acceptance=AcceptanceSpec.iid(0.7)), replay=True)
    # a baseline that is not the AR the profile describes is flagged, not compared silently
    gen = _run(
        s,
        profile=p,
        acceptance=AcceptanceSpec.iid(0.7),
        speedups={"generate": 1.1},
        baseline="generate",
    )
    assert any("model.generate" in f for f in predict_run(gen, tokens=500).flags)
    four = p.with_costs(provenance=replace(MEASURED, threads=4))
    assert any(
        "the profile used 4" in f
        for f in predict_run(_run(s, acceptance=AcceptanceSpec.iid(0.7)), profile=four).flags
    )


# ---- the record ----------------------------------------------------------------------------
def _row(label="PPSD α=0.8", scheme="ppsd", measured=1.5, predicted=1.65, replayed=1.5, **kw):
    args = dict(
        label=label,
        scheme=scheme,
        alpha=0.8,
        measured=measured,
        measured_lo=measured * 0.9,
        measured_hi=measured * 1.1,
        predicted=predicted,
        replayed=replayed,
        observed_alpha=0.79,
    )
    args.update(kw)
    return Comparison(**args)


def _info(**kw):
    info = dict(
        model="m",
        hardware="hw",
        date="2026-01-01",
        tokens=16,
        repeats=2,
        sim_tokens=1000,
        transport="pipe",
        command="ppsd calibrate run",
        quick=True,
    )
    info.update(kw)
    return info


def test_signed_error_is_predicted_over_measured_minus_one():
    assert signed_error(1.1, 1.0) == pytest.approx(0.1)
    assert signed_error(0.9, 1.0) == pytest.approx(-0.1)
    r = _row(measured=2.0, predicted=2.5, replayed=1.5)
    assert r.error == pytest.approx(0.25) and r.replay_error == pytest.approx(-0.25)


def test_calibration_report_round_trips_and_refuses_bad_fields_by_name():
    rows = [_row("AR", "ar", 1.0, 1.0, None, alpha=None), _row(), _row("EESD", "eesd", 1.2, 1.1)]
    rep = build_record(rows, _profile(), _info(load="quiet"), findings_of(rows))
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["record"] == "CalibrationReport" and d["schema_version"] == 1
    back = CalibrationReport.from_dict(d)
    assert back == rep and back.info.extra == {"load": "quiet"}
    assert d["summary"] == summarise(rows).to_dict()
    assert d["summary"]["cells"] == 2  # AR is the baseline, not a judged cell
    assert d["rows"][1]["error"] == pytest.approx(0.1)

    def refused(change, match):
        bad = json.loads(json.dumps(d))
        change(bad)
        with pytest.raises(ConfigError, match=match):
            CalibrationReport.from_dict(bad)

    refused(
        lambda b: b.pop("record"), r'record: missing: a CalibrationReport file carries "record"'
    )
    refused(lambda b: b.update(schema_version=2), "schema_version: this ppsd reads version 1")
    refused(lambda b: b["rows"][1].update(measured=-1.0), r"rows\[1\]\.measured: must be >")
    refused(lambda b: b["rows"][1].update(measured=9.0), r"rows\[1\]\.measured: must lie within")
    refused(lambda b: b["rows"][2].update(scheme="tree"), r"rows\[2\]\.scheme: must be one of")
    refused(lambda b: b["rows"][0].update(extra=1), r"rows\[0\]\.extra: unknown field")
    refused(lambda b: b["info"].pop("tokens"), r"info\.tokens: is required")
    refused(lambda b: b["info"].update(quick="yes"), r"info\.quick: must be true or false")
    refused(lambda b: b.update(rows=[]), "rows: must have at least 1")
    refused(lambda b: b["profile"].update(layer_decode=[]), r"profile\.layer_decode")


def test_the_committed_calibration_report_reads_and_reproduces_its_predictions():
    rep = read_record(COMMITTED / "calibration.json", CalibrationReport)
    stored = json.loads((COMMITTED / "calibration.json").read_text(encoding="utf-8"))
    assert rep.summary.to_dict() == stored["summary"]
    for r, s in zip(rep.rows, stored["rows"], strict=True):
        assert r.error == s["error"] and r.replay_error == s["replay_error"]
    # the one recipe gives back every stored prediction from the embedded profile alone
    assert rep.profile == read_record(COMMITTED / "profile.json", HardwareProfile)
    cells = {c.label: c for c in default_grid(rep.profile.n_layers)}
    for r in rep.rows:
        p = predict_cell(rep.profile, cells[r.label], tokens=rep.info.sim_tokens)
        assert p.speedup == pytest.approx(r.predicted, rel=1e-12) and p.flags == r.flags
    # a report written before the profile was embedded still reads
    stored.pop("profile")
    assert CalibrationReport.from_dict(stored) == replace(rep, profile=None)


# ---- the writers and the one rendering -----------------------------------------------------
def test_calibration_files_are_written_all_or_none(tmp_path: Path, monkeypatch):
    rows = [_row(), _row("EESD", "eesd", 1.2, 1.1)]
    rep = build_record(rows, _profile(), _info(), findings_of(rows))
    out = tmp_path / "cal"
    paths = write_report(out, rep)
    assert set(paths) == {"json", "markdown", "plot", "profile"}
    assert read_record(paths["json"], CalibrationReport) == rep
    assert read_record(paths["profile"], HardwareProfile) == rep.profile
    assert paths["plot"].read_bytes().startswith(b"\x89PNG")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a failure while rendering leaves every file as it was
    import analysis.figures

    def boom(*a, **k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(analysis.figures, "png", boom)
    with pytest.raises(RuntimeError):
        write_report(out, replace(rep, findings=("changed",)))
    monkeypatch.undo()
    # an output that cannot be written is refused before anything is replaced
    (out / "calibration.md").unlink()
    (out / "calibration.md").mkdir()
    with pytest.raises(ConfigError, match=r"--out: .*calibration.md is a folder"):
        write_report(out, replace(rep, findings=("changed",)))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == {k: v for k, v in before.items() if k != "calibration.md"}
    assert not list(out.glob(".*.tmp"))


def test_ppsd_report_renders_the_committed_calibration_like_calibration_md(tmp_path: Path):
    report = build_report(COMMITTED, sim_tokens=500)
    assert report.skipped == []
    (sec,) = [s for s in report.sections if s.title.startswith("Calibration:")]
    assert sec.title == "Calibration: preset:cpu-bench(seed=0) on x86_64-2core"
    html, md = write_site(report, tmp_path / "site")
    assert (tmp_path / "site" / "figures" / "calibration_1.png").read_bytes().startswith(b"\x89PNG")
    # the same table rows as the calibration report's own Markdown (one renderer)
    rep = read_record(COMMITTED / "calibration.json", CalibrationReport)
    ours = [ln for ln in md.read_text(encoding="utf-8").splitlines() if ln.startswith("| ")]
    own = [
        ln for ln in (COMMITTED / "calibration.md").read_text().splitlines() if ln.startswith("| ")
    ]
    table = own[: len(rep.rows) + 2]
    assert len(table) == 27 and all(ln in ours for ln in table)
    assert "Median |error| 3.4%, worst 7.1%" in html.read_text(encoding="utf-8")


def test_committed_calibration_markdown_is_what_the_writer_renders():
    from analysis.report_compare import calibration_document

    rep = read_record(COMMITTED / "calibration.json", CalibrationReport)
    assert render_markdown(calibration_document(rep), ".") == (
        COMMITTED / "calibration.md"
    ).read_text(encoding="utf-8")


def test_report_predicts_a_bare_run_from_the_folders_matching_profile(tmp_path: Path):
    """``ppsd run --records`` writes runs without a profile; ``ppsd profile`` writes the
    profile beside them: the report pairs them by model, device and dtype, and says so."""
    from ppsd_sim.records.io import write_record

    p = _profile()
    s = SchemeConfig.ppsd((4, 8))
    obs = AcceptanceObserved(judged=10, accepted=8, trace=(1, 1, 1, 1, 0, 1, 1, 1, 1, 0))
    run = _run(s, acceptance=AcceptanceSpec.iid(0.8), acceptance_observed=obs, provenance=MEASURED)
    write_record(tmp_path / "profile.json", p)
    write_record(tmp_path / "run.json", run)
    other = replace(run, provenance=replace(MEASURED, model="another"))
    write_record(tmp_path / "other.json", other)
    report = build_report(tmp_path, sim_tokens=1000)
    md = render_markdown(report)
    row = next(ln for ln in md.splitlines() if ln.startswith("| run.json: "))
    want = predict_run(run, profile=p, tokens=1000).speedup
    assert f"| {want:.3f} `X` |" in row and "profile from profile.json" in row
    replayed = predict_run(run, profile=p, replay=True, tokens=1000).speedup
    assert f"| {replayed:.3f} `X` |" in row
    assert "other.json: cannot predict (profile: the run carries no profile)" in md
