"""`ppsd sweep`'s inputs and outputs: bad flags and output folders refused before any work, a
changed spec never mixed into a folder holding another's rows, and the acceptance and
in-flight parameters a sweep point can set give the rows a direct simulate() call gives."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.simulate import simulate
from ppsd_sim.sweep import load_results, make_backend, parse_spec, run_sweep

SPEC = {
    "name": "small",
    "seed": 1,
    "fixed": {"layers": 16, "t_layer": 1e-3, "head_fraction": 0.5, "tokens": 300},
    "axes": {"scheme": ["eesd", "ppsd"], "alpha": [0.6, 0.9], "exit": [4], "gamma": [3], "k": [2]},
}
QUIET = {"progress": False, "echo": lambda s: None}


def _spec_file(tmp_path: Path, spec: dict, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return p


@dataclass
class _Result:
    returncode: int
    stdout: str
    stderr: str


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> _Result:
    """`ppsd sweep ARGV` in this process (the CLI's own entry point; a subprocess costs
    seconds of imports per case on a busy machine)."""
    capsys.readouterr()
    code = main(["sweep", *argv])
    out = capsys.readouterr()
    return _Result(code, out.out, out.err)


@pytest.mark.parametrize("top", ["-1", "0"])
def test_top_below_one_is_refused_before_any_work(
    tmp_path: Path, top: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = _spec_file(tmp_path, SPEC), tmp_path / "out"
    res = _cli([str(spec), "--out", str(out), "--top", top], capsys)
    assert res.returncode == 2
    assert res.stderr.strip() == f"ppsd: error: --top: must be >= 1, got {top}"
    assert not out.exists()


def _read_only_folder(tmp_path: Path) -> Path | None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes anywhere: take a folder the kernel keeps read-only
        ro = Path("/proc/sys")
        if os.access(ro, os.W_OK):
            return None
    return ro


@pytest.mark.parametrize("where", ["file", "under_file", "read_only"])
def test_an_unwritable_out_folder_is_refused_before_any_work(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec_file(tmp_path, SPEC)
    (tmp_path / "f").write_text("keep me")
    if where == "read_only":
        ro = _read_only_folder(tmp_path)
        if ro is None:
            pytest.skip("no read-only folder to try")
        out = ro / "results"
    else:
        out = {"file": tmp_path / "f", "under_file": tmp_path / "f" / "r"}[where]
    res = _cli([str(spec), "--out", str(out), "--no-progress"], capsys)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppsd: error: --out: "), res.stderr
    assert "points" not in res.stdout  # refused before the spec was even counted out loud
    assert (tmp_path / "f").read_text() == "keep me"


def test_a_changed_spec_is_refused_into_a_folder_holding_another_specs_rows(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    first = parse_spec(SPEC)
    run_sweep(first, out, make_backend("local", 1), **QUIET)
    before = load_results(out)
    # the case: a value changed, rerun into the same folder (69 rows for 35 points)
    changed = parse_spec({**SPEC, "axes": {**SPEC["axes"], "alpha": [0.6, 0.95]}})
    with pytest.raises(ConfigError, match="changed spec needs its own folder") as err:
        run_sweep(changed, out, make_backend("local", 1), **QUIET)
    assert err.value.field == "out"
    # a new seed changes every point, a removed point leaves rows the spec does not have
    for other in ({**SPEC, "seed": 2}, {**SPEC, "axes": {**SPEC["axes"], "alpha": [0.6]}}):
        with pytest.raises(ConfigError, match="own folder"):
            run_sweep(parse_spec(other), out, make_backend("local", 1), **QUIET)
    after = load_results(out)
    assert len(after) == len(before) == len(first.points)  # nothing was added or lost
    # the same spec resumes, and a grown one (every old point kept) adds to the folder
    assert run_sweep(first, out, make_backend("local", 1), **QUIET).skipped == len(first.points)
    grown = parse_spec({**SPEC, "axes": {**SPEC["axes"], "alpha": [0.6, 0.9, 0.95]}})
    counts = run_sweep(grown, out, make_backend("local", 1), **QUIET)
    assert counts.skipped == len(first.points)
    assert set(load_results(out).point_id) == {p.id for p in grown.points}


def test_a_changed_spec_through_the_cli_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = _spec_file(tmp_path, SPEC), tmp_path / "out"
    assert _cli([str(spec), "--out", str(out), "--no-progress"], capsys).returncode == 0
    _spec_file(tmp_path, {**SPEC, "fixed": {**SPEC["fixed"], "tokens": 301}})
    res = _cli([str(spec), "--out", str(out), "--no-progress"], capsys)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "changed spec needs its own folder" in res.stderr
    assert len(load_results(out)) == len(parse_spec(SPEC).points)


def test_tail_chain_and_in_flight_points_equal_direct_simulation(tmp_path: Path) -> None:
    spec = {
        "name": "acceptance",
        "seed": 4,
        "fixed": {"layers": 16, "t_layer": 1e-3, "head_fraction": 0.5, "tokens": 400},
        "points": [
            {"scheme": "ppsd", "k": 4, "acceptance": "histogram", "counts": [1, 2, 7]},
            {
                "scheme": "ppsd",
                "k": 4,
                "acceptance": "histogram",
                "counts": [1, 2, 7],
                "tail": "repeat-last",
            },
            {
                "scheme": "eesd",
                "exit": 4,
                "gamma": 4,
                "acceptance": "markov",
                "alpha": 0.7,
                "burstiness": -0.2,
                "chain": "positions",
            },
            {"scheme": "ppsd", "k": 4, "alpha": 0.9, "hop": 2e-3, "max_inflight": 2},
            {"scheme": "ppsd", "k": 2, "exit": 6, "alpha": 0.9, "engine": "simpy"},
        ],
    }
    out = tmp_path / "out"
    sweep = parse_spec(spec)
    run_sweep(sweep, out, make_backend("local", 1), **QUIET)
    df = load_results(out).set_index("point_id")
    rows = [df.loc[p.id] for p in sweep.points]
    prof = HardwareProfile.uniform(16, 1e-3, 0.5)
    # a histogram past its γ without a rule: a failure row naming the field, the rest runs
    assert rows[0].status == "failed" and rows[0].error_field == "acceptance.tail"
    cases = [
        (
            prof,
            SchemeConfig.ppsd_split(16, 4),
            AcceptanceSpec.histogram([1, 2, 7], "repeat-last"),
        ),
        (prof, SchemeConfig.eesd(4, 4), AcceptanceSpec.markov(0.7, -0.2, chain="positions")),
        (
            prof.with_costs(hop=2e-3),
            SchemeConfig.ppsd(SchemeConfig.ppsd_split(16, 4).stage_boundaries, max_inflight=2),
            AcceptanceSpec.iid(0.9),
        ),
        (prof, SchemeConfig.ppsd_split(16, 2, 6), AcceptanceSpec.iid(0.9)),
    ]
    for row, (p, scheme, acc) in zip(rows[1:], cases, strict=True):
        assert row.status == "ok", row.error
        engine = "simpy" if row.engine_requested == "simpy" else "auto"
        rec = simulate(p, scheme, acc, tokens=400, seed=int(row.seed), engine=engine).record
        assert row.speedup == rec.speedup
        assert row.flushes == rec.flushes
    assert rows[3].max_inflight == 2 and rows[1].histogram_tail == "repeat-last"
    # the bound binds there: it is slower than the same point without it
    free = simulate(
        prof.with_costs(hop=2e-3),
        SchemeConfig.ppsd_split(16, 4),
        AcceptanceSpec.iid(0.9),
        tokens=400,
    ).record
    assert rows[3].speedup < free.speedup


def test_acceptance_parameters_are_checked_up_front() -> None:
    base = {"fixed": {"layers": 8, "t_layer": 1e-3, "scheme": "ppsd", "k": 2}}
    for axes, field in (
        ({"acceptance": ["histogram"], "counts": [[1, 2]], "tail": ["sometimes"]}, "axes.tail"),
        (
            {"acceptance": ["markov"], "alpha": [0.5], "burstiness": [0.1], "chain": ["x"]},
            "axes.chain",
        ),
        ({"alpha": [0.5], "max_inflight": [0]}, "axes.max_inflight[0]"),
    ):
        with pytest.raises(ConfigError) as err:
            parse_spec({**base, "axes": axes})
        assert err.value.field.startswith(field)
