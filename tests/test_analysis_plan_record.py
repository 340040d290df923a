"""The capacity plan as a record: tagged and versioned, read back field by field, and shown by
``ppsd report`` through that reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.curves import parse_curve
from analysis.plan_record import Plan
from analysis.planner import plan
from analysis.report_build import build_report
from analysis.report_md import render_markdown
from ppsd_sim.errors import ConfigError
from ppsd_sim.examples import example_profile
from ppsd_sim.records.io import write_record
from tests.test_analysis_planner import uneven_profile


def _plan(**kw) -> Plan:
    prof = uneven_profile([1e-3, 2e-3, 0.5e-3, 1.5e-3, 1e-3, 3e-3, 0.7e-3])
    return plan(prof, parse_curve("1:0.3,3:0.6,6:0.9"), 4, max_gamma=6, top=5, sim_tokens=500, **kw)


def test_plan_round_trips_with_its_tag():
    pl = _plan()
    d = json.loads(json.dumps(pl.to_dict()))
    assert d["record"] == "CapacityPlan" and d["schema_version"] == 1
    back = Plan.from_dict(d)
    assert back == pl and back.to_dict() == pl.to_dict()
    need = _plan(target="min_devices", min_tokens_per_s=300.0)
    assert Plan.from_dict(json.loads(json.dumps(need.to_dict()))) == need


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.pop("record"), 'record: missing: a CapacityPlan file carries "record"'),
        (lambda d: d.update(schema_version=7), "schema_version: this ppsd reads version 1"),
        (lambda d: d.update(target="cheapest"), "target: must be one of max_speed, min_devices"),
        (lambda d: d.pop("candidates"), "candidates: is required"),
        (lambda d: d["candidates"][0].update(speedup=-1), r"candidates\[0\]\.speedup: must be >"),
        (lambda d: d["candidates"][0].update(devices=9), r"candidates\[0\]\.devices: .* uses"),
        (lambda d: d["candidates"][1]["scheme"].update(kind="tree"), r"candidates\[1\]\.scheme"),
        (
            lambda d: d["best_per_scheme"].update(ar=d["best_per_scheme"]["eesd"]),
            "best_per_scheme.ar",
        ),
        (lambda d: d["curve"].update(alphas=[0.3, 0.6, 1.5]), r"curve\.alphas\[2\]"),
        (lambda d: d.update(devices=0), "devices: must be >= 1"),
        (lambda d: d.update(surprise=1), "surprise: unknown field"),
    ],
)
def test_a_bad_saved_plan_is_refused_by_name(change, match):
    d = json.loads(json.dumps(_plan().to_dict()))
    change(d)
    with pytest.raises(ConfigError, match=match):
        Plan.from_dict(d)


def test_report_reads_saved_plans_through_the_reader(tmp_path: Path):
    pl = plan(example_profile(), parse_curve("4:0.5,16:0.8,28:0.9"), 4, top=3, sim_tokens=500)
    write_record(tmp_path / "plan.json", pl.to_dict())
    bad = pl.to_dict()
    bad["candidates"][0]["alpha"] = 2.0
    (tmp_path / "bad_plan.json").write_text(json.dumps(bad), encoding="utf-8")
    report = build_report(tmp_path, sim_tokens=500)
    assert dict(report.skipped) == {"bad_plan.json": "candidates[0].alpha: must be <= 1, got 2"}
    md = render_markdown(report)
    assert "Saved plan plan.json: fastest on at most 4 device(s)" in md
    best = pl.candidates[0]
    assert f"| 1 | {best.scheme.label()} |" in md
