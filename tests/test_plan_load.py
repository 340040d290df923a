"""The load-aware planner (``ppsd plan --batch/--users/--rate``): its switch-off point against
independent serving simulations, its batch-1 answer against the batch-1 planner, the record
round trip, and bad flags (one line naming the flag, exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from analysis.curves import parse_curve
from analysis.load_plan import LoadSetup, parse_loads, plan_load
from analysis.load_plan_record import Load, LoadPlan, ratio
from analysis.planner import plan
from ppsd_sim import analytic
from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.io import write_record
from ppsd_sim.records.load_cost import BatchedCosts, LoadCost, TensorParallel
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Workload
from ppsd_sim.serving import compare_serving
from ppsd_sim.serving.closed_form import eesd_tokens_per_s
from tests.test_analysis_planner import uneven_profile

B = 1e-4  # seconds per token per layer: the step turns compute-bound near 10 tokens


def tiny_profile() -> HardwareProfile:
    """8 layers of 1 ms + 0.1 ms per token in the step; TP over 2 devices with costly
    all-reduces (so PPSD beats it at batch 1 and loses at batch 2+)."""
    base = HardwareProfile.uniform(8, 1e-3, 0.2, hop=2e-5, tick=1e-5, flush=1e-5)
    head = LoadCost(a=2e-4, b=B / 5)
    tp = TensorParallel(
        degree=2,
        layers=(LoadCost(a=0.52e-3, b=B / 2, c=0.5e-8),),
        final_head=LoadCost(a=1e-4, b=B / 10),
        allreduce=LoadCost(a=1e-4, b=1e-8),
    )
    batched = BatchedCosts(
        layers=(LoadCost(a=1e-3, b=B, c=1e-8),),
        ee_head=head,
        final_head=head,
        hop=LoadCost(a=2e-5),
    )
    return replace(base, batched=batched, tp=(tp,))


CURVE = parse_curve("2:0.8,4:0.9")
SETUP = LoadSetup(
    prompt=LengthDist.fixed(8), output=LengthDist.fixed(24), policies=("real_first",), shortlist=4
)


@pytest.fixture(scope="module")
def batch_plan() -> LoadPlan:
    return plan_load(
        tiny_profile(),
        CURVE,
        2,
        parse_loads("batch", [1, 4, 32, 128]),
        SETUP,
        max_gamma=2,
        exits=[2, 4],
        sensitivity=False,
    )


def closed_loop(batch: int, alpha: float) -> tuple[Workload, ServingSettings]:
    """The serving question of one batch load, built here independently of ``LoadSetup``."""
    w = Workload(
        count=max(16, 4 * batch),
        prompt=LengthDist.fixed(8),
        output=LengthDist.fixed(24),
        arrivals=Arrivals.closed(batch, 0.0),
        acceptance=AcceptanceSpec.iid(alpha),
    )
    return w, ServingSettings(max_batch=batch)


def best_eesd_speedup(batch: int) -> float:
    """The best EESD (E ∈ {2, 4}, γ ≤ 2) throughput ÷ AR's at ``batch``, by direct
    simulation."""
    best = 0.0
    for e in (2, 4):
        w, st = closed_loop(batch, CURVE.alpha(e))
        schemes = [SchemeConfig.eesd(e, g) for g in (1, 2)]
        for r in compare_serving(tiny_profile(), schemes, w, st, keep_profile=False):
            best = max(best, r.speedups["ar_same_load"]["throughput"])
    return best


def test_eesd_switch_off_is_where_the_simulated_speedup_crosses_1(batch_plan):
    s = batch_plan.switch_off("eesd")
    assert s.status == "switches_off" and s.metric == "throughput"
    assert s.switch_off == s.last_win + 1  # bisected to adjacent batch sizes …
    assert s.switch_off not in (1, 4, 32, 128)  # … strictly between two listed loads
    assert best_eesd_speedup(int(s.last_win)) > 1.0
    assert best_eesd_speedup(int(s.switch_off)) <= 1.0
    assert best_eesd_speedup(4) > 1.0 and best_eesd_speedup(32) <= 1.0  # the listed bracket
    assert set(s.evaluated) >= {1, 4, 32, 128, s.last_win, s.switch_off}


def test_ppsd_switch_off_against_each_baseline(batch_plan):
    """Against the best of AR/TP-AR/PP-AR on the same 2 devices PPSD wins only at batch 1;
    against its twin and against one-device AR it still wins at batch 128."""
    best = batch_plan.switch_off("ppsd", baseline="best_base")
    assert (best.status, best.last_win, best.switch_off) == ("switches_off", 1, 2)
    assert "TP-AR" in best.against
    p1, p4 = batch_plan.points[0], batch_plan.points[1]
    assert p1.best().kind == "ppsd"
    assert p4.best().kind == "tp_ar"  # the k-device baseline, counted as 2 devices
    assert p4.best().devices == 2
    twin = batch_plan.switch_off("ppsd")
    assert twin.status == "always_wins" and twin.against == "PP-AR on the same stages"
    for p in batch_plan.points:
        assert p.wins("ppsd", "ar")
        tp = p.best(("tp_ar",))
        for r in p.rows:
            if r.kind == "ppsd":  # the best ≤ 2-device baseline is TP-AR(2) or better
                assert p.speedup(r, "best_base") <= ratio(r, tp, p.metric) + 1e-12


def test_plan_ar_rows_are_compare_servings_ar(batch_plan):
    """Without a KV limit the plan's own AR row and compare_serving's AR baseline are the same
    run: the two speedups over AR agree exactly."""
    for p in batch_plan.points:
        for r in p.rows:
            if r.kind in ("eesd", "ppsd"):
                assert p.speedup(r, "ar") == pytest.approx(
                    r.speedups["ar_same_load"]["throughput"], rel=1e-12
                )


def test_batch_1_load_plan_is_the_batch_1_plan():
    """On batch-1 costs (no batched model), one request in flight: the serving closed form
    ranks every EESD exactly as the batch-1 closed form, and the load plan's best EESD and
    PPSD are the batch-1 planner's, with simulated speedups over AR within 3 % of its closed
    form (400 tokens per request, a one-token prompt)."""
    prof = uneven_profile([1e-3, 2e-3, 0.5e-3, 1.5e-3, 1e-3, 3e-3, 0.7e-3])
    curve = parse_curve("1:0.3,3:0.6,6:0.9")
    for e in (1, 3, 6):
        for g in (1, 3):
            s = SchemeConfig.eesd(e, g)
            a = curve.alpha(e)
            assert eesd_tokens_per_s(prof, s, a, 1, 200) == pytest.approx(
                analytic.tokens_per_s(prof, s, a), rel=1e-9
            )
    b1 = plan(prof, curve, 3, max_gamma=3, sim_tokens=0)
    setup = LoadSetup(
        prompt=LengthDist.fixed(1),
        output=LengthDist.fixed(400),
        requests=8,
        policies=("real_first",),
        shortlist=1,
    )
    lp = plan_load(
        prof,
        curve,
        3,
        parse_loads("batch", [1]),
        setup,
        max_gamma=3,
        sensitivity=False,
        require_batched=False,
    )
    (p,) = lp.points
    for fam in ("eesd", "ppsd"):
        mine, theirs = p.best((fam,)), b1.best_per_scheme[fam]
        assert mine.scheme == theirs.scheme
        assert mine.mean_batch == pytest.approx(1.0, abs=0.02)
        assert p.speedup(mine, "ar") == pytest.approx(theirs.speedup, rel=0.03)
    assert "no batched costs" in " ".join(lp.notes)


def test_rate_switch_off_brackets_to_5_percent():
    lp = plan_load(
        tiny_profile(),
        CURVE,
        1,
        parse_loads("rate", [20, 400]),
        replace(SETUP, requests=60, shortlist=2),
        max_gamma=2,
        exits=[2],
        sensitivity=False,
    )
    assert lp.metric == "e2e_p50"
    s = lp.switch_off("eesd")
    assert s.status == "switches_off"
    assert 20 <= s.last_win < s.switch_off <= 400
    assert s.switch_off / s.last_win <= 1.05 + 1e-9
    assert {r.kind for r in lp.points[0].rows} == {"ar", "eesd"}  # one device: no TP, PP


def test_sensitivity_moves_the_switch_off_with_alpha():
    lp = plan_load(
        tiny_profile(),
        CURVE,
        1,
        parse_loads("batch", [1, 64]),
        replace(SETUP, shortlist=2),
        max_gamma=2,
        exits=[2],
    )
    lo, mid, hi = (lp.switch_off("eesd", d) for d in (-0.05, 0.0, 0.05))
    assert lo.switch_off <= mid.switch_off <= hi.switch_off
    assert lo.switch_off < hi.switch_off  # ±0.05 in α moves it at all


def test_record_round_trip_and_bad_fields(batch_plan):
    d = json.loads(json.dumps(batch_plan.to_dict()))
    again = LoadPlan.from_dict(d)
    assert again.to_dict() == batch_plan.to_dict()
    assert again.switch_off("ppsd", baseline="best_base") == batch_plan.switch_off(
        "ppsd", baseline="best_base"
    )
    bad = json.loads(json.dumps(d))
    bad["points"][0]["rows"][0]["devices"] = 7
    with pytest.raises(ConfigError, match=r"points\[0\]\.rows\[0\]\.devices"):
        LoadPlan.from_dict(bad)
    bad = json.loads(json.dumps(d))
    bad["switch_offs"][0]["baseline"] = "best_base"  # EESD has only its twin
    with pytest.raises(ConfigError, match=r"switch_offs\[0\]\.baseline"):
        LoadPlan.from_dict(bad)
    bad = dict(d)
    del bad["record"]
    with pytest.raises(ConfigError, match="record"):
        LoadPlan.from_dict(bad)


def test_loads_are_validated():
    with pytest.raises(ConfigError, match="--batch"):
        parse_loads("batch", [0])
    with pytest.raises(ConfigError, match="--rate"):
        parse_loads("rate", [float("inf")])
    assert [ld.value for ld in parse_loads("users", [8, 1, 8])] == [1, 8]
    with pytest.raises(ConfigError, match="loads"):
        plan_load(tiny_profile(), CURVE, 1, [Load("batch", 1), Load("users", 2)])
    batch1 = HardwareProfile.uniform(8, 1e-3)
    with pytest.raises(ConfigError, match="profile"):
        plan_load(batch1, CURVE, 1, [Load("batch", 1)])


# ---- the command ---------------------------------------------------------------------------------
@pytest.fixture
def ppsd_plan(capsys):
    def call(*args: str) -> tuple[int, str, str]:
        try:
            rc = main(["plan", *args])
        except SystemExit as exc:
            rc = exc.code
        out = capsys.readouterr()
        return rc, out.out, out.err

    return call


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--batch", "0"], "--batch"),
        (["--batch", "1,x"], "--batch"),
        (["--batch", ","], "--batch"),
        (["--rate", "-2"], "--rate"),
        (["--users", "1.5"], "--users"),
        (["--prompt", "64"], "--prompt"),  # a load flag without a load
        (["--no-sensitivity"], "--no-sensitivity"),
        (["--batch", "4", "--target", "min-devices"], "--target"),
        (["--batch", "4", "--top", "3"], "--top"),
        (["--batch", "4", "--think", "1"], "--think"),
        (["--batch", "4", "--max-batch", "8"], "--max-batch"),
        (["--users", "4", "--policies", "fast"], "--policies"),
        (["--users", "4", "--prompt", "uniform:9:2"], "--prompt"),
        (["--rate", "2", "--requests", "0"], "--requests"),
        (["--rate", "2", "--tpot-slo", "0"], "--tpot-slo"),
        (["--batch", "2", "--synth", "llama-2-7b@h100-sxm", "--ignore-memory", "--ignore-kv",
          "--device-memory-gb", "1"], "--ignore-memory"),
    ],
)  # fmt: skip
def test_bad_load_flags_are_one_line_naming_the_flag(ppsd_plan, args, flag):
    rc, out, err = ppsd_plan(*args)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], err


def test_batch_1_profile_is_refused_and_nothing_is_written(ppsd_plan, tmp_path: Path):
    prof = tmp_path / "p.json"
    write_record(prof, HardwareProfile.uniform(8, 1e-3))
    out = tmp_path / "plan.json"
    out.write_text("keep")
    rc, _, err = ppsd_plan("--profile", str(prof), "--batch", "1,4", "--out", str(out))
    assert rc == 2 and "profile" in err and "batched" in err
    assert out.read_text() == "keep"
    folder = tmp_path / "dir"
    folder.mkdir()
    write_record(prof, tiny_profile())
    rc, _, err = ppsd_plan("--profile", str(prof), "--batch", "1", "--out", str(folder))
    assert rc == 2 and "--out" in err


def test_command_writes_a_load_plan(tmp_path: Path):
    prof, out = tmp_path / "p.json", tmp_path / "plan.json"
    write_record(prof, tiny_profile())
    res = subprocess.run(
        [
            sys.executable, "-m", "ppsd_sim.cli.main", "plan", "--profile", str(prof),
            "--curve", "2:0.8,4:0.9", "--devices", "2", "--batch", "1,4,32",
            "--prompt", "8", "--output", "24", "--policies", "real_first", "--max-gamma", "2",
            "--no-sensitivity", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lp = LoadPlan.from_dict(json.loads(out.read_text()))
    assert [p.load.value for p in lp.points] == [1, 4, 32]
    assert lp.switch_off("eesd").status == "switches_off"
    for text in ("batch 1: best", "TP-AR(k=2)", "×best≤k", "EESD vs AR (one device): batch"):
        assert text in res.stdout


def test_report_renders_a_saved_load_plan(batch_plan, tmp_path: Path):
    from analysis import figures_load
    from analysis.report_build import build_report
    from analysis.report_write import write_report

    p4 = batch_plan.points[1]
    assert figures_load.best_speedup(p4, "eesd", "twin") == max(
        p4.speedup(r) for r in p4.rows if r.kind == "eesd"
    )
    rec = tmp_path / "rec"
    rec.mkdir()
    write_record(rec / "load.json", batch_plan.to_dict())
    report = build_report(rec, sim_tokens=0)
    (sec,) = [s for s in report.sections if s.anchor == "load"]
    text = json.dumps([getattr(it, "caption", "") for it in sec.items])
    assert "Switch-off point" in text
    tables = [it for it in sec.items if hasattr(it, "rows")]
    offs = {(r[0], r[1]): r[2] for r in tables[1].rows}
    assert offs[("EESD", "AR (one device)")].startswith("batch 11")  # the bisected point
    html, md = write_report(report, tmp_path / "out")
    assert "Serving under load" in md.read_text()
    assert (tmp_path / "out" / "figures" / "load_speedup_1.png").exists() or "load_speedup_1" in (
        html.read_text()
    )
