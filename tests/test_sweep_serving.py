"""Serving points in a sweep (``mode: serving``): each row is what ``compare_serving`` gives
for that point's scheme, load and seed; baselines shared inside a batch change nothing; a
grown spec resumes; bad serving values are refused by name before any work; and the points of
single-sequence specs keep the IDs they had before serving points existed (resume unbroken)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import AcceptanceSpec, SchemeConfig
from ppsd_sim.records.io import write_record
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Workload
from ppsd_sim.serving.example import example_serving_profile
from ppsd_sim.serving.simulate import compare_serving
from ppsd_sim.sweep import load_results, make_backend, parse_spec, run_sweep
from ppsd_sim.sweep.evaluate import Batch, evaluate_batch
from ppsd_sim.sweep.table import RUN_COLUMNS

QUIET = {"progress": False, "echo": lambda s: None}
LOAD = {"mode": "serving", "profile": "prof.json", "requests": 40, "output_len": 24}


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    write_record(tmp_path / "prof.json", example_serving_profile())
    return tmp_path


def _spec(folder: Path, **over: object) -> dict:
    spec = {
        "name": "load",
        "seed": 11,
        "fixed": {**LOAD, "prompt_len": "uniform:16:96", "alpha": 0.8, "exit": 8, "k": 4},
        "axes": {"scheme": ["ar", "pp_ar", "tp_ar", "eesd", "ppsd"], "rate": [4.0, 40.0]},
        "points": [
            {"scheme": "ppsd", "users": 6, "think": 0.05, "policy": "greedy"},
            {"scheme": "eesd", "at_once": True, "gamma": 2, "max_batch": 8},
        ],
    }
    spec["fixed"].update({"gamma": 4, "tp": 4})
    spec.update(over)
    return spec


def _direct(folder: Path, cfg: dict) -> dict:
    """The point computed without the sweep: compare_serving on the same inputs."""
    prof = example_serving_profile()
    kind = cfg["scheme"]
    if kind == "ar":
        scheme = SchemeConfig.ar()
    elif kind == "tp_ar":
        scheme = SchemeConfig.tp_ar(4)
    elif kind == "eesd":
        scheme = SchemeConfig.eesd(8, cfg["gamma"])
    else:
        split = SchemeConfig.ppsd_split(32, 4, 8)
        scheme = split if kind == "ppsd" else SchemeConfig.pp_ar(split.stage_boundaries)
    if "rate" in cfg:
        arrivals = Arrivals.poisson(cfg["rate"])
    elif "users" in cfg:
        arrivals = Arrivals.closed(cfg["users"], cfg["think"])
    else:
        arrivals = Arrivals.at_once()
    workload = Workload(
        count=40,
        prompt=LengthDist.uniform(16, 96),
        output=LengthDist.fixed(24),
        arrivals=arrivals,
        acceptance=AcceptanceSpec.iid(0.8) if kind in ("eesd", "ppsd") else None,
    )
    settings = ServingSettings(max_batch=cfg["max_batch"], policy=cfg.get("policy", "real_first"))
    (rec,) = compare_serving(prof, [scheme], workload, settings, seed=cfg["seed"])
    return {
        "tokens_per_s": rec.throughput_tok_s,
        "tpot_p50": rec.tpot.p50,
        "ttft_p99": rec.ttft.p99,
        "speedup": rec.speedups["ar_same_load"]["throughput"],
        "speedup_pp_ar": rec.speedups.get("pp_ar_same_load", {}).get("throughput"),
        "flushes": rec.flushes,
    }


def test_serving_rows_equal_compare_serving(folder: Path) -> None:
    spec = parse_spec(_spec(folder), base_dir=folder)
    assert len(spec.points) == 12
    counts = run_sweep(spec, folder / "out", make_backend("local", 2), **QUIET)
    assert (counts.done, counts.failed) == (12, 0)
    df = load_results(folder / "out")
    assert set(df.status) == {"ok"} and set(df.engine) == {"simpy"}
    for row in df.to_dict("records"):
        cfg = json.loads(row["config_json"])
        want = _direct(folder, cfg)
        for col, v in want.items():
            if v is None:
                assert row[col] is None or math.isnan(row[col]), (cfg["scheme"], col)
            else:
                assert row[col] == pytest.approx(v, rel=1e-12), (cfg["scheme"], col)
    # which baseline each speedup is against: one-device points have no PP-AR one
    by = df.set_index("scheme")
    assert by.loc["ar"].pp_ar_baseline.isna().all()
    for kind in ("pp_ar", "tp_ar", "ppsd"):
        assert set(by.loc[kind][by.loc[kind].rate.notna()].pp_ar_baseline) == {"PP-AR(k=4)"}
    # the greedy-policy point is still compared with PP-AR's standard (wave) schedule
    assert set(df[df.policy == "greedy"].pp_ar_baseline) == {"PP-AR(k=4) (real_first)"}
    assert by.loc["eesd"].pp_ar_baseline.isna().all()
    assert (by.loc["pp_ar"].speedup_pp_ar == 1.0).all()
    ar = df[(df.scheme == "ar") & df.rate.notna()]
    assert ar.speedup.tolist() == [1.0, 1.0]
    # the busier load: more sequences in a step, for every scheme
    for kind in ("ar", "pp_ar", "eesd", "ppsd"):
        rows = df[(df.scheme == kind) & df.rate.notna()].sort_values("rate")
        assert rows.mean_batch.iloc[1] > rows.mean_batch.iloc[0], kind


def test_baselines_shared_in_a_batch_change_nothing(folder: Path) -> None:
    """With one seed for every point, the points at one load share their AR and PP-AR runs
    inside a batch; each row equals the point evaluated alone."""
    spec = parse_spec(_spec(folder, seed_mode="common"), base_dir=folder)
    pts = [(p.id, p.canonical) for p in spec.points]
    together = evaluate_batch(Batch(spec.context, tuple(pts)))
    alone = [evaluate_batch(Batch(spec.context, (pt,)))[0] for pt in pts]
    for a, b in zip(together, alone, strict=True):
        for col in RUN_COLUMNS:
            a.pop(col), b.pop(col)
        assert a == b
    # and the EESD and PPSD points of one load do share one AR run's numbers
    rows = {(r["scheme"], r.get("rate")): r for r in together}
    ar = rows[("ar", 40.0)]["tokens_per_s"]
    for kind in ("eesd", "ppsd"):
        r = rows[(kind, 40.0)]
        assert r["tokens_per_s"] / r["speedup"] == pytest.approx(ar, rel=1e-12)


def test_a_grown_serving_spec_resumes(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "load.yaml"
    small = _spec(folder)
    small["axes"]["rate"] = [4.0]
    del small["points"]
    path.write_text(yaml.safe_dump(small))
    out = folder / "load.sweep"
    assert main(["sweep", str(path), "--workers", "2", "--no-progress"]) == 0
    first = load_results(out).set_index("point_id")
    assert len(first) == 5
    grown = _spec(folder)
    path.write_text(yaml.safe_dump(grown))
    capsys.readouterr()
    assert main(["sweep", str(path), "--workers", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "skipped (already done): 5" in text and "done: 7 now" in text
    both = load_results(out).set_index("point_id")
    assert len(both) == 12
    cols = [c for c in first.columns if c not in RUN_COLUMNS]
    assert both.loc[first.index, cols].equals(first[cols])


def test_single_sequence_points_keep_their_ids() -> None:
    """IDs computed by the code before serving points existed (commit 6f43b95): a resumed
    single-sequence sweep finds its finished points."""
    axes = {"scheme": ["ar", "eesd", "ppsd"], "alpha": [0.8], "exit": [4], "gamma": [3], "k": [2]}
    spec = {"seed": 7, "fixed": {"layers": 16, "t_layer": 1e-3, "tokens": 500}, "axes": axes}
    ids = {p.config["scheme"]: p.id for p in parse_spec(spec).points}
    assert ids == {"ar": "39b2a8952ab9a065", "eesd": "059928071bef2f4c", "ppsd": "5e15b9d87f2d55fa"}
    spec["fixed"]["mode"] = "single"  # the default, spelt out: the same points
    assert {p.config["scheme"]: p.id for p in parse_spec(spec).points} == ids


@pytest.mark.parametrize("point", [{"scheme": "pp_ar", "k": 2}, {"scheme": "tp_ar", "tp": 2}])
def test_serving_schemes_in_single_mode_are_refused(point: dict) -> None:
    for mode in ({}, {"mode": "single"}):
        with pytest.raises(ConfigError) as err:
            parse_spec({"fixed": {"layers": 8, "t_layer": 1e-3}, "points": [{**point, **mode}]})
        assert err.value.field == "points[0].scheme"
        assert "serving mode only" in err.value.message


def test_a_profile_without_tp_costs_fails_its_tp_point_only(folder: Path) -> None:
    fixed = {"mode": "serving", "layers": 8, "t_layer": 1e-3, "rate": 5.0, "tp": 2}
    spec = parse_spec(
        {"fixed": {**fixed, "requests": 10, "output_len": 8}, "axes": {"scheme": ["ar", "tp_ar"]}}
    )
    run_sweep(spec, folder / "o", make_backend("local", 1), **QUIET)
    df = load_results(folder / "o").set_index("scheme")
    assert df.loc["ar"].status == "ok"
    assert df.loc["tp_ar"].status == "failed"
    assert "tensor-parallel costs for 2 devices" in df.loc["tp_ar"].error


@pytest.mark.parametrize(
    ("over", "field", "words"),
    [
        ({"rate": None}, "points[0].rate", "arrival process"),
        ({"users": 3}, "points[0].users", "conflicts with rate"),
        ({"think": 0.1}, "points[0].think", "needs users"),
        ({"rate": 0.0}, "fixed.rate", ">"),
        ({"rate": float("nan")}, "fixed.rate", "finite"),
        ({"prompt_len": "uniform:9"}, "fixed.prompt_len", "uniform:LO:HI"),
        ({"output_len": "uniform:9:3"}, "fixed.output_len", "hi"),
        ({"output_len": 0}, "fixed.output_len", "value"),
        ({"requests": 0}, "fixed.requests", ">= 1"),
        ({"max_batch": 0}, "fixed.max_batch", ">= 1"),
        ({"devices": [0, 0, 1, 1]}, "points[0].devices", "serving mode"),
        ({"mode": "batch"}, "fixed.mode", "single"),
    ],
)
def test_bad_serving_values_are_refused_by_name(over: dict, field: str, words: str) -> None:
    """A value is named where the spec gives it; a combination by the point it makes."""
    fixed = {"mode": "serving", "layers": 8, "t_layer": 1e-3, "rate": 2.0, "scheme": "ar"}
    for k, v in over.items():
        if v is None:
            fixed.pop(k)
        else:
            fixed[k] = v
    with pytest.raises(ConfigError) as err:
        parse_spec({"fixed": fixed, "points": [{}]})
    assert err.value.field == field
    assert words in err.value.message


def test_a_serving_value_without_mode_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(
            {"fixed": {"layers": 8, "t_layer": 1e-3, "rate": 2.0}, "axes": {"scheme": ["ar"]}}
        )
    assert err.value.field == "fixed.rate"
    assert "mode: serving" in err.value.message
    # spelt out as single, a mixed grid drops it from the single-sequence points
    spec = parse_spec(
        {
            "fixed": {"layers": 8, "t_layer": 1e-3, "rate": 2.0},
            "axes": {"scheme": ["ar"], "mode": ["single", "serving"]},
        }
    )
    modes = sorted(p.config.get("mode", "single") for p in spec.points)
    assert modes == ["serving", "single"]
    single = next(p for p in spec.points if "mode" not in p.config)
    assert "rate" not in single.config


def test_the_cli_refuses_a_bad_serving_spec_with_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {"fixed": {"mode": "serving", "layers": 8, "t_layer": 1e-3}, "axes": {"scheme": ["ar"]}}
        )
    )
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fixed.rate" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "bad.sweep").exists()


def test_shipped_serving_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "sweep_serving.yaml"
    out = tmp_path / "example"
    assert main(["sweep", str(example), "--out", str(out), "--no-progress", "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"spec {example}: 54 points")
    # the summary says which baseline its speedups are against, and shows PP-AR's and TPOT
    assert "best 5 by speedup (serving points: speedup over AR at the same load):" in text
    assert " PP-AR  TPOT p50 " in text
    df = load_results(out)
    assert len(df) == 54 and (df.status == "ok").all()
    # the load question it is for: EESD's gain over AR at a busy load falls as the batch
    # grows, and below 1 speculation no longer pays
    busy = df[(df.scheme == "eesd") & (df.alpha == 0.7) & (df.rate == 50.0)]
    gain = busy.sort_values("max_batch").speedup.tolist()
    assert gain[0] > 1.1 and gain[0] > gain[1] > gain[2] and gain[2] < 1.0
