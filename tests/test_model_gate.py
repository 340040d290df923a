"""The model-relative speed gate: measured ÷ predicted speedup against a recorded tolerance.

Formulas and decisions run on plain data (uniform profiles through the real simulator, so every
branch is reached); mode choice and bad input run the real CLI without measuring; one test
records a tolerance and runs the gate for real, on a model that has no baseline anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibration import cli, gate, model_gate
from calibration.gate_run import Measurement
from calibration.grid import Cell
from calibration.model_gate import CellReading, ControlCost, Reading
from ppsd_real.machine_load import MachineLoad
from ppsd_real.model_loading import ModelSpec
from ppsd_real.test_hooks import TICK_DELAY_ENV
from ppsd_sim.cli.main import build_parser, main
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, SchemeConfig

PPSD = Cell(SchemeConfig.ppsd((2, 4)), 0.9)
EESD = Cell(SchemeConfig.eesd(2, 4), 0.9)
TRACE = (1, 1, 1, 1, 1, 1, 1, 1, 1, 0) * 3
TICK = 100e-6
PY = 30e-6
QUIET = MachineLoad(30.0, 0.003, 0.0)
MODEL = "preset:tiny(seed=0)"


def _profile(tick: float = TICK) -> HardwareProfile:
    return HardwareProfile.uniform(4, 1e-3, 0.3, hop=20e-6, tick=tick, flush=40e-6)


def _reading(factor: float, *, tick: float = TICK, py: float = PY, control=None) -> Reading:
    """A reading whose measured speedups are ``factor`` × what the model predicts with the
    given control cost (so its ratio is ``factor`` exactly)."""
    prof = _profile(tick)
    ctl = control or ControlCost(TICK, PY)
    cells = []
    for c in (PPSD, EESD):
        pred = model_gate.predicted(prof, CellReading(c, (1.0,), TRACE), ctl.here(py))
        cells.append(CellReading(c, (pred * factor * 0.99, pred * factor, pred * factor), TRACE))
    return Reading(prof, py, tuple(cells))


def _tolerance(ratios=(0.95, 0.96, 0.94, 0.95, 0.97), hardware=None, **kw) -> model_gate.Tolerance:
    cells = tuple(
        model_gate.ToleranceCell(c.label, c.scheme, c.alpha, tuple(ratios)) for c in (PPSD, EESD)
    )
    fields = dict(
        hardware=hardware or gate.hardware_class(),
        model=MODEL,
        tokens=16,
        repeats=2,
        transport="pipe",
        control=ControlCost(TICK, PY),
        cells=cells,
        created="now",
        provisional=False,
        provenance={},
    )
    fields.update(kw)
    return model_gate.Tolerance(**fields)


def test_threshold_is_the_spread_of_the_ratio_plus_the_models_error_off_its_own_class():
    c = _tolerance().cells[0]
    m = c.median
    sd = gate.between_sd(c.ratios)  # upper 90 % bound, as for the baseline gate
    assert m == 0.95
    assert c.threshold(True, 3.0, 0.0) == pytest.approx(1 - math.exp(-3 * sd))
    assert c.threshold(False, 3.0, 0.0) == pytest.approx(1 - math.exp(-(3 * sd + abs(math.log(m)))))
    assert (c.reference(True), c.reference(False)) == (0.95, 1.0)
    # a model that under-predicts (ratio > 1) widens the allowance off its class the same way
    hi = _tolerance(ratios=(1.05, 1.04, 1.06)).cells[0]
    assert hi.threshold(False, 3.0, 0.0) - hi.threshold(True, 3.0, 0.0) > 0.04
    assert c.threshold(True, 3.0, 0.5) == 0.5  # the floor is a last guard


def test_the_prediction_uses_the_records_control_cost_not_the_tick_this_run_measured():
    """The injected delay lands in the profile's tick: the prediction must not follow it."""
    ctl = ControlCost(TICK, PY)
    clean, slowed = _profile(TICK), _profile(TICK + 0.02)  # the profile absorbed a 20 ms delay
    for c in (PPSD, EESD):
        r = CellReading(c, (1.0,), TRACE)
        used = model_gate.predicted(slowed, r, ctl.here(PY))
        assert used == pytest.approx(model_gate.predicted(clean, r, TICK), rel=1e-12)
        # ... while a prediction from the absorbed tick would move far from it
        assert abs(model_gate.predicted(slowed, r, TICK + 0.02) / used - 1) > 0.3
    # the control cost follows this machine's Python speed (and nothing else)
    assert ctl.here(2 * PY) == pytest.approx(2 * TICK)
    assert model_gate.python_speed(repeat=5, number=2) > 0


def test_judge_passes_the_models_own_ratio_and_fails_a_drop_beyond_the_tolerance():
    tol = _tolerance()
    hw = tol.hardware
    ok = model_gate.judge(tol, _reading(0.95), hw)
    assert all(v.ok for v in ok) and ok[0].change == pytest.approx(0.0, abs=1e-9)
    assert ok[0].ratio == pytest.approx(0.95)
    thr = ok[0].threshold
    just_in = model_gate.judge(tol, _reading(0.95 * (1 - thr) * 1.01), hw)
    just_out = model_gate.judge(tol, _reading(0.95 * (1 - thr) * 0.99), hw)
    assert all(v.ok for v in just_in) and not any(v.ok for v in just_out)
    # a control-path slowdown: the run slows, the profile's tick absorbs it, the verdict fails
    slow = _reading(0.6, tick=TICK + 0.02, control=tol.control)
    assert not any(v.ok for v in model_gate.judge(tol, slow, hw))
    assert "looks slower" in model_gate.control_note(tol, slow)
    assert "looks slower" not in model_gate.control_note(tol, _reading(0.95))
    # off the recording class: judged against 1 with the model's error allowed
    other = model_gate.judge(tol, _reading(0.95), "some-other-class")
    assert all(v.ok for v in other) and other[0].reference == 1.0
    with pytest.raises(ConfigError, match="no measurement for tolerance cell"):
        model_gate.judge(tol, Reading(_profile(), PY, ()), hw)


def test_build_tolerance_records_ratios_by_the_rule_the_gate_applies():
    readings = [
        dataclasses.replace(_reading(f, tick=t, py=p))
        for f, t, p in ((0.95, 90e-6, 29e-6), (0.97, 110e-6, 31e-6), (0.93, 100e-6, 30e-6))
    ]
    tol = model_gate.build_tolerance(
        readings,
        hardware="hw",
        model=MODEL,
        tokens=16,
        repeats=2,
        transport="pipe",
        created="now",
        provisional=False,
        provenance={},
    )
    assert tol.control == ControlCost(100e-6, 30e-6)  # medians of ticks and Python speeds
    for i, r in enumerate(readings):
        got = model_gate.ratios(r, tol.control)
        for c in tol.cells:
            meas, pred = got[c.label]
            assert c.ratios[i] == pytest.approx(meas / pred, rel=1e-12)
    with pytest.raises(ConfigError, match="--runs"):
        model_gate.build_tolerance(
            readings[:2],
            hardware="hw",
            model=MODEL,
            tokens=16,
            repeats=2,
            transport="pipe",
            created="now",
            provisional=False,
            provenance={},
        )


def test_tolerance_record_round_trips_and_bad_records_are_refused_by_field(tmp_path):
    tol = _tolerance(provisional=True, provenance={"note": "trial"})
    path = model_gate.save_tolerance(tmp_path / "t.json", tol)
    assert model_gate.load_tolerance(path) == tol
    data = json.loads(path.read_text())
    assert data["record"] == "ModelGateTolerance" and "allowed_drop" in data

    def refused(change, match):
        d = json.loads(json.dumps(data))
        change(d)
        path.write_text(json.dumps(d))
        with pytest.raises(ConfigError, match=match):
            model_gate.load_tolerance(path)

    refused(lambda d: d["cells"][0]["ratios"].__setitem__(1, -1.0), r"cells\[0\]\.ratios\[1\]")
    refused(lambda d: d["cells"][1].__setitem__("ratios", [1.0, 1.0]), r"cells\[1\]\.ratios")
    refused(lambda d: d.pop("record"), "record")  # a file without its tag is refused
    refused(lambda d: d.__setitem__("record", "SpeedBaseline"), "expected 'ModelGateTolerance'")
    refused(lambda d: d["control"].__setitem__("python_s", 0), r"control\.python_s")
    refused(lambda d: d.__setitem__("transport", "smoke"), "transport")
    with pytest.raises(ConfigError, match="ppsd calibrate tolerance"):
        model_gate.load_tolerance(tmp_path / "missing.json")


def test_both_gates_judge_one_measurement_and_a_drop_in_either_is_confirmed():
    tol = _tolerance()
    cell = gate.GateCell(PPSD.label, PPSD.scheme, 0.9, (1.5, 1.51, 1.49, 1.5, 1.52))
    base = gate.Baseline("hw", MODEL, 16, (cell,), "now", {})
    asked = []

    def run(factors, speedup):
        it = iter(factors)

        def measure(n):
            asked.append(n)
            sections = {
                "baseline gate": gate.judge(base, {PPSD.label: [speedup] * 3}),
                "model-relative gate": model_gate.judge(tol, _reading(next(it)), tol.hardware),
            }
            return gate.GateRun(sections, QUIET)

        return measure

    d = gate.decide_runs(run([0.95], 1.5), 3, 5)
    assert d.status == "pass" and asked == [3] and len(d.runs[0].verdicts) == 3
    # the model gate alone drops, then recovers: confirmed, passes
    d = gate.decide_runs(run([0.5, 0.95], 1.5), 3, 5)
    assert d.status == "pass" and asked[-2:] == [3, 5]
    # the model gate drops twice while the baseline gate is fine: the drop reproduced
    d = gate.decide_runs(run([0.5, 0.5], 1.5), 3, 5)
    assert (d.status, d.exit_code) == ("fail", 1)
    assert d.runs[1].sections["baseline gate"][0].ok


BUSY_LOAD = MachineLoad(30.0, 0.4, 0.0)  # other processes took 40% of the CPUs


def _measurement(factor: float, load: MachineLoad) -> Measurement:
    r = _reading(factor)
    return Measurement(r.cells, r, load, 15.0, 10.0)


def test_recording_stops_at_the_first_busy_reading_unless_provisional(capsys):
    def taker(loads):
        it = iter(loads)
        taken = []

        def take():
            taken.append(1)
            return _measurement(0.95, next(it))

        return take, taken

    take, taken = taker([QUIET, BUSY_LOAD, QUIET, QUIET])
    assert cli.record_readings(take, runs=4, allow_busy=False) is None
    assert len(taken) == 2  # stopped at the busy one: no minutes wasted after it
    err = capsys.readouterr().err
    assert "tolerance not written: the machine was busy" in err and "--provisional" in err
    take, taken = taker([QUIET, BUSY_LOAD, QUIET])
    got = cli.record_readings(take, runs=3, allow_busy=True)
    assert got is not None and len(got) == 3 and "BUSY" in capsys.readouterr().out
    spec = ModelSpec("tiny")
    tol = cli.tolerance_of(got, spec, 16, 2, "pipe", "ppsd calibrate tolerance", True)
    assert tol.provisional and tol.provenance["busy_runs"] == 1
    assert "1 of 3 readings on a busy machine" in tol.provenance["note"]
    assert tol.provenance["machine_load"] == [0.003, 0.4, 0.003]
    assert [c.median for c in tol.cells] == pytest.approx([0.95, 0.95])


def _write_baseline(path: Path) -> Path:
    cell = gate.GateCell(PPSD.label, PPSD.scheme, 0.9, (1.5, 1.51, 1.49))
    return gate.save_baseline(path, gate.Baseline("hw", MODEL, 16, (cell,), "now", {}))


def test_auto_mode_runs_both_gates_where_a_baseline_exists_and_the_model_gate_elsewhere(tmp_path):
    base = _write_baseline(tmp_path / "b.json")
    tol = model_gate.save_tolerance(tmp_path / "t.json", _tolerance())
    missing = tmp_path / "none.json"
    plan = cli.choose_mode("auto", base, False, tol, MODEL)
    assert plan.mode == "both" and plan.baseline and plan.tolerance
    plan = cli.choose_mode("auto", missing, False, tol, MODEL)
    assert plan.mode == "model" and plan.baseline is None and "model-relative" in plan.said[0]
    plan = cli.choose_mode("auto", base, False, None, MODEL)
    assert plan.mode == "baseline" and "NOT run" in plan.said[0]  # said, never silent
    with pytest.raises(ConfigError, match="nothing to judge against") as err:
        cli.choose_mode("auto", missing, False, None, MODEL)
    assert err.value.field == "--mode"
    with pytest.raises(ConfigError, match="no baseline at") as err:  # a mistyped --baseline
        cli.choose_mode("auto", missing, True, tol, MODEL)
    assert err.value.field == "--baseline"
    assert cli.choose_mode("model", base, False, tol, MODEL).mode == "model"
    with pytest.raises(ConfigError, match="ppsd calibrate tolerance"):
        cli.choose_mode("model", base, False, None, MODEL)
    with pytest.raises(ConfigError, match="ppsd calibrate baseline"):
        cli.choose_mode("both", missing, False, tol, MODEL)


def test_find_tolerance_prefers_this_class_then_a_trusted_record(tmp_path):
    slug = cli.slug(MODEL)
    assert cli.find_tolerance(MODEL, tmp_path) is None
    model_gate.save_tolerance(
        tmp_path / f"a-class__{slug}.tolerance.json", _tolerance(provisional=True)
    )
    model_gate.save_tolerance(tmp_path / f"b-class__{slug}.tolerance.json", _tolerance())
    assert cli.find_tolerance(MODEL, tmp_path).name.startswith("b-class")
    own = tmp_path / f"{gate.hardware_class()}__{slug}.tolerance.json"
    model_gate.save_tolerance(own, _tolerance(provisional=True))
    assert cli.find_tolerance(MODEL, tmp_path) == own


def _calibrate(args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "calibrate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TQDM_DISABLE": "1", **(env or {})},
    )


def _in_process(args, capsys):
    """``ppsd calibrate ARGS`` in this process (no interpreter start per case): exit code and
    captured output."""
    try:
        code = main(["calibrate", *args])
    except SystemExit as stop:  # argparse: --help and its own errors
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(got, flag):
    code, out, err = got
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ppsd: error: {flag}"), err


def test_each_action_has_its_own_options_and_old_command_lines_still_parse(capsys):
    parser = build_parser(["calibrate"])
    a = parser.parse_args(["calibrate", "regress", "--quick", "--floor", "0.2"])
    assert (a.action, a.quick, a.floor, a.mode) == ("regress", True, 0.2, "auto")
    a = parser.parse_args(["calibrate", "baseline", "--runs", "3", "--baseline", "b.json"])
    assert (a.action, a.runs, a.baseline, a.repeats) == ("baseline", 3, "b.json", 5)
    a = parser.parse_args(["calibrate", "run", "--preset", "tiny", "--quick", "--out", "d"])
    assert (a.action, a.quick, a.out) == ("run", True, "d")
    assert parser.parse_args(["calibrate", "tolerance"]).runs == 10
    helps = {}
    for act in ("run", "regress", "baseline", "tolerance"):
        code, out, _ = _in_process([act, "--help"], capsys)
        assert code == 0
        helps[act] = out
    assert "--out" in helps["run"] and "--baseline" not in helps["run"]
    assert "--runs" not in helps["regress"] and "--out" not in helps["regress"]
    assert "--floor" not in helps["baseline"] and "--quick" not in helps["baseline"]
    assert "--provisional" in helps["tolerance"] and "--floor" not in helps["tolerance"]
    code, top, _ = _in_process(["--help"], capsys)
    assert code == 0 and all(act in top for act in helps) and "--floor" not in top
    code, _, err = _in_process(["baseline", "--floor", "0.2"], capsys)  # another action's option
    assert code == 2 and "--floor" in err


def test_bad_paths_are_refused_before_any_measurement(tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    blocked = tmp_path / "blocked"  # a writable folder where one report file cannot be written
    (blocked / "calibration.md").mkdir(parents=True)
    t0 = time.monotonic()
    for args, flag in (
        (["tolerance", "--tolerance", str(tmp_path)], "--tolerance"),  # a folder
        (["tolerance", "--tolerance", str(afile / "t.json")], "--tolerance"),  # under a file
        (["baseline", "--baseline", str(afile / "b.json")], "--baseline"),
        (["run", "--out", str(afile)], "--out"),  # a file given as the results folder
        (["run", "--out", str(blocked)], "--out"),  # every report file is checked up front
        (["regress", "--mode", "model", "--tolerance", str(tmp_path / "no.json")], "--tolerance"),
    ):
        _one_line_error(_in_process([args[0], "--preset", "tiny", *args[1:]], capsys), flag)
    assert time.monotonic() - t0 < 10  # refused up front: nothing was measured
    assert afile.read_text() == "x"
    assert [p.name for p in blocked.iterdir()] == ["calibration.md"]  # nothing written
    tol = model_gate.save_tolerance(tmp_path / "t.json", _tolerance(repeats=3))
    common = ["regress", "--preset", "tiny", "--mode", "model", "--tolerance", str(tol)]
    _one_line_error(_in_process([*common, "--tokens", "32"], capsys), "--tolerance")  # at 16
    _one_line_error(_in_process([*common, "--tokens", "16", "--repeats", "2"], capsys), "--repeats")
    one = _tolerance(repeats=3)
    one = model_gate.save_tolerance(
        tmp_path / "one.json", dataclasses.replace(one, cells=one.cells[:1])
    )
    common[-1] = str(one)  # a record of other cells than the gate's: refused before measuring
    code, out, err = _in_process([*common, "--tokens", "16"], capsys)
    _one_line_error((code, out, err), "--tolerance")
    assert "not the gate's" in err and "run (" not in out
    assert out.startswith("speed gate: mode model-relative (--mode)")  # said before anything
    # auto: the tiny preset has no baseline anywhere, so regress chooses the model gate itself
    code, out, err = _in_process(
        ["regress", "--preset", "tiny", "--tolerance", str(one), "--tokens", "16"], capsys
    )
    _one_line_error((code, out, err), "--tolerance")
    assert out.startswith("speed gate: mode model-relative (no speed baseline for this hardware")


def test_the_plan_says_which_gates_run_and_what_the_model_gate_cannot_see(tmp_path):
    tol = model_gate.save_tolerance(
        tmp_path / "t.json",
        _tolerance(hardware="elsewhere", provisional=True, provenance={"note": "a trial"}),
    )
    lines = cli._describe_plan(cli.choose_mode("auto", tmp_path / "none.json", False, tol, MODEL))
    text = "\n".join(lines)
    assert lines[0].startswith("speed gate: mode model-relative (no speed baseline")
    assert f"{cli.MODEL_GATE} sees: {model_gate.SEES}." in lines
    assert f"{cli.MODEL_GATE} cannot see: {model_gate.BLIND}." in lines
    assert "slower layers" in model_gate.BLIND and "flush" in model_gate.SEES
    assert "elsewhere, not this class" in text and "PROVISIONAL (a trial record, a trial)" in text
    assert cli.BASELINE_GATE not in text
    both = cli._describe_plan(
        cli.choose_mode("auto", _write_baseline(tmp_path / "b.json"), False, tol, MODEL)
    )
    assert both[0].startswith("speed gate: mode both")
    assert any(ln.startswith(f"{cli.BASELINE_GATE}: speedups against") for ln in both)


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc/stat")
def test_a_control_path_slowdown_trips_the_model_gate_on_real_runs(monkeypatch):
    """30-50 s (two real readings of the tiny preset: quick profile in fresh stage processes,
    measured cells, the real simulator), the least that shows the mechanism on real runs: the
    injected delay lands in this run's profile too, and the prediction must not follow it.
    The tolerance is built by the recording code from the clean reading (three copies: no
    spread, so the 50% floor of the baseline gate's own test decides; the tiny model is all
    per-step overhead, noisy). The whole CLI path is the opt-in test below."""
    from calibration.gate_run import gate_cells, measure
    from ppsd_real.model_loading import ModelSpec

    spec = ModelSpec("tiny")
    cells = gate_cells(4)
    monkeypatch.delenv(TICK_DELAY_ENV, raising=False)

    def reading():
        return measure(spec, cells, tokens=16, repeats=2, transport="pipe", with_profile=True)

    clean = reading()
    monkeypatch.setenv(TICK_DELAY_ENV, "0.02")  # 20 ms per step; stage processes inherit it
    slowed = reading()
    tol = cli.tolerance_of([clean] * 3, spec, 16, 2, "pipe", "test", True)
    hw = gate.hardware_class()
    assert all(v.ok for v in model_gate.judge(tol, clean.reading, hw, floor=0.5))
    verdicts = model_gate.judge(tol, slowed.reading, hw, floor=0.5)
    assert not any(v.ok for v in verdicts), [v.describe() for v in verdicts]
    assert slowed.reading.profile.tick.median > 0.015  # the profile absorbed the delay ...
    assert "looks slower" in model_gate.control_note(tol, slowed.reading)
    for v, c in zip(verdicts, slowed.reading.cells, strict=True):
        # ... a prediction from it would have moved toward the slowed run; the gate's did not
        naive = model_gate.predicted(slowed.reading.profile, c, slowed.reading.profile.tick.median)
        assert naive < 0.8 * v.predicted, (naive, v.describe())


FULL_GATE_TEST = "PPSD_FULL_GATE_TEST"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc/stat")
@pytest.mark.skipif(
    os.environ.get(FULL_GATE_TEST) != "1",
    reason=f"the issue's acceptance test through the CLI, 100-200 s: set {FULL_GATE_TEST}=1",
)
def test_model_relative_gate_passes_unchanged_code_and_trips_on_an_injected_slowdown(tmp_path):
    """On a machine with no baseline (no one records one for the tiny preset): the gate picks
    the model-relative mode by itself. Real profile, real stage processes, real simulator: the
    delay lands in the profile's tick too, and the gate must still see it. 100 s on a quiet
    machine, 200 s on a busy one (6-7 readings of profile + measurement, 5 interpreters):
    out of the default run (opt in with PPSD_FULL_GATE_TEST=1); the mechanism is tested on
    real runs above, and CI's own gate step runs this path on the real model every time.
    The floor of 50% is the baseline test's: the tiny model is all per-step overhead, noisy."""
    tol = tmp_path / "t.json"
    common = ["--preset", "tiny", "--tokens", "16", "--repeats", "2"]
    res = _calibrate(
        ["tolerance", *common, "--runs", "3", "--tolerance", str(tol), "--provisional"]
    )
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    record = model_gate.load_tolerance(tol)
    assert record.provisional and all(len(c.ratios) == 3 for c in record.cells)
    gate_args = ["regress", *common, "--tolerance", str(tol), "--floor", "0.5"]
    res = _calibrate(gate_args)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert "mode model-relative (no speed baseline" in res.stdout
    assert "cannot see:" in res.stdout and "speed gate passed (model-relative gate)" in res.stdout
    res = _calibrate(gate_args, {TICK_DELAY_ENV: "0.02"})  # 20 ms per step, as for the baseline
    busy = "busy" in res.stderr
    assert res.returncode == 1 or (res.returncode == 3 and busy), res.stdout + res.stderr[-2000:]
    assert "confirming run" in res.stdout and res.stdout.count("FAIL") >= 3
    # the profile did absorb the delay (its tick rose by ~20 ms); the prediction did not use it
    notes = re.findall(r"(\d+) µs used .*profile measured (\d+) µs", res.stdout)
    assert len(notes) == 2, res.stdout
    for used, live in notes:
        assert int(live) > 15_000 and int(used) < 2000


@pytest.mark.parametrize("path", sorted(cli.BASELINES.glob("*.json")), ids=lambda p: p.name)
def test_committed_gate_records_load_and_cover_the_gate_cells(path):
    """A committed baseline or tolerance the gate cannot read, or one for other cells, would
    make CI exit 2 on every machine of its class."""
    from calibration.gate_run import gate_cells
    from ppsd_real.presets import get_preset

    record = (
        model_gate.load_tolerance(path)
        if path.name.endswith(".tolerance.json")
        else gate.load_baseline(path)
    )
    layers = get_preset(record.model.removeprefix("preset:").split("(")[0]).layers
    assert {c.label for c in record.cells} == {c.label for c in gate_cells(layers)}
    assert path.name.startswith(f"{record.hardware}__{cli.slug(record.model)}")
