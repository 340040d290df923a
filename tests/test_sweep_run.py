"""Running sweeps: results equal direct simulate() calls, bad points become failure rows while
the rest finishes, reruns skip what is done, and the store survives leftovers of a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ppsd_sim import analytic
from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.simulate import simulate
from ppsd_sim.sweep import load_results, make_backend, parse_spec, run_sweep
from ppsd_sim.sweep.store import ResultStore, part_files

SPEC = {
    "name": "mixed",
    "seed": 3,
    "fixed": {"layers": 16, "t_layer": 1e-3, "head_fraction": 0.5, "hop": 1e-5, "tokens": 800},
    "axes": {
        "scheme": ["ar", "eesd", "ppsd"],
        "alpha": [0.5, 0.9],
        "exit": [4, 40],  # 40 > L = 16: those points fail when built
        "gamma": [3],
        "k": [2, 4],
    },
    "points": [
        # shared devices: the fast path is not exact there, so it is refused per point
        {"scheme": "ppsd", "k": 2, "devices": [0, 0], "alpha": 0.8, "engine": "fast"},
        {"scheme": "ppsd", "k": 2, "devices": [0, 0], "alpha": 0.8, "engine": "simpy"},
        {"scheme": "eesd", "exit": 4, "gamma": 3, "alpha": 0.7, "engine": "closed_form"},
    ],
}


def _table(path: Path) -> pd.DataFrame:
    return load_results(path).set_index("point_id").sort_index()


def test_failing_points_recorded_and_the_rest_completed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path = tmp_path / "mixed.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    assert main(["sweep", str(spec_path), "--out", str(out), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    spec = parse_spec(SPEC)
    df = _table(out)
    assert sorted(df.index) == sorted(p.id for p in spec.points)

    failed = df[df.status == "failed"]
    # EESD and PPSD with exit 40 (2 α × (1 + 2 k)) and the fast path on shared devices
    assert len(failed) == 7
    exit40 = failed[failed.exit == 40]
    assert len(exit40) == 6
    # EESD refuses the scheme's exit layer; PPSD's cut (SchemeConfig.ppsd_split) names the
    # spec's own field, `exit`, as the user wrote it
    assert set(exit40.error_field) == {"scheme.exit_layer", "exit"}
    shared = failed[failed.devices.notna()]
    assert list(shared.error_field) == ["engine"] and "one device per" in shared.error.iloc[0]
    assert failed.tokens_per_s.isna().all()

    ok = df[df.status == "ok"]
    assert len(ok) == len(spec.points) - 7
    assert ok.tokens_per_s.notna().all() and ok.error.isna().all()
    assert set(ok.engine) == {"closed_form", "fast", "simpy"}
    assert f"done: {len(ok)} now, failed: 7 now, skipped (already done): 0" in text
    assert "failures (7), by reason:" in text
    assert "scheme.exit_layer: must satisfy 1 <= E < L = 16, got 40" in text

    # rerun: everything (failures included) is already recorded
    assert main(["sweep", str(spec_path), "--out", str(out), "--no-progress"]) == 0
    assert f"{len(spec.points)} already done, 0 to run" in capsys.readouterr().out
    assert len(load_results(out)) == len(spec.points)


def test_rows_equal_direct_simulation(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = parse_spec(SPEC)
    run_sweep(spec, out, make_backend("local", 2), progress=False, echo=lambda s: None)
    df = _table(out)
    prof = HardwareProfile.uniform(16, 1e-3, 0.5, hop=1e-5)
    ar = df[df.scheme == "ar"].iloc[0]
    assert ar.engine == "closed_form"
    assert ar.speedup == 1.0
    assert ar.tokens_per_s == pytest.approx(
        simulate(prof, SchemeConfig.ar(), engine="fast").record.tokens_per_s, rel=1e-12
    )

    row = df[(df.scheme == "ppsd") & (df.k == 4) & (df.alpha == 0.9) & (df.exit == 4)].iloc[0]
    scheme = SchemeConfig.ppsd([4, 8, 12, 16])  # exit after 4, 12 layers over 3 stages
    assert json.loads(row.stage_boundaries) == [4, 8, 12, 16]
    rec = simulate(
        prof, scheme, AcceptanceSpec.iid(0.9), tokens=800, seed=int(row.seed), engine="fast"
    ).record
    assert row.engine == "fast"
    assert row.tokens_per_s == rec.tokens_per_s
    assert row.speedup == rec.speedup
    assert row.flushes == rec.flushes
    assert row.acceptance_rate == rec.acceptance_observed.rate
    assert json.loads(row.stage_busy_fraction) == list(rec.stage_busy_fraction)
    assert row.closed_form_speedup == pytest.approx(analytic.speedup(prof, scheme, 0.9))

    cf = df[df.engine_requested == "closed_form"].iloc[0]
    eesd = SchemeConfig.eesd(4, 3)
    assert cf.engine == "closed_form"
    assert cf.speedup == pytest.approx(analytic.speedup(prof, eesd, 0.7), rel=1e-12)
    assert pd.isna(cf.flushes)  # no sampled statistics from a closed form

    simpy_row = df[(df.engine_requested == "simpy")].iloc[0]
    assert simpy_row.engine == "simpy" and simpy_row.status == "ok"


def test_resume_after_spec_grows_and_reorders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    small = {**SPEC, "axes": {**SPEC["axes"], "alpha": [0.5]}}
    small_spec = parse_spec(small)
    quiet = {"progress": False, "echo": lambda s: None}
    first = run_sweep(small_spec, out, make_backend("local", 2), **quiet)
    assert first.skipped == 0 and first.done + first.failed == len(small_spec.points)
    reordered = {
        **SPEC,
        "axes": {k: list(reversed(v)) for k, v in reversed(list(SPEC["axes"].items()))},
        "points": list(reversed(SPEC["points"])),
    }
    full = parse_spec(reordered)
    second = run_sweep(full, out, make_backend("local", 2), **quiet)
    assert second.skipped == len(small_spec.points)
    assert second.done + second.failed == len(full.points) - len(small_spec.points)
    df = load_results(out)
    assert df.point_id.is_unique
    assert set(df.point_id) == {p.id for p in full.points}


def test_store_clears_crash_leftovers_and_refuses_foreign_or_busy_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ResultStore(out) as store:
        store.write([{"point_id": "a" * 16, "status": "ok", "config_json": "{}"}])
        # a second writer on the same folder is refused while the first holds the lock
        with pytest.raises(ConfigError, match="another sweep"):
            ResultStore(out).open()
    (out / ".part-123-x-000009.parquet.tmp").write_bytes(b"half a parquet file")
    with ResultStore(out) as store:
        assert store.done_ids() == {"a" * 16}
    assert not list(out.glob("*.tmp"))
    assert len(part_files(out)) == 1

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a sweep results folder"):
        ResultStore(foreign).open()
    with pytest.raises(ConfigError, match="not a sweep results folder"):
        load_results(foreign)


def test_shipped_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "sweep_example.yaml"
    out = tmp_path / "example"
    assert main(["sweep", str(example), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"spec {example}: 35 points")
    df = load_results(out)
    assert len(df) == 35 and (df.status == "ok").all()
    assert set(df.engine) == {"closed_form", "fast", "simpy"}
    assert "best 5 by speedup:" in text
