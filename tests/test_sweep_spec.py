"""Sweep specs: malformed ones are refused before any work starts (one line, exit 2, no
output folder); valid ones expand to stable, order-independent point IDs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from ppsd_sim.sweep import parse_spec
from ppsd_sim.sweep.spec import load_spec

BASE = {
    "fixed": {"layers": 16, "t_layer": 1e-3, "tokens": 500},
    "axes": {"scheme": ["eesd", "ppsd"], "alpha": [0.6, 0.9], "exit": [4], "gamma": [3], "k": [2]},
}


def _write(tmp_path: Path, data: object, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


def _with(**changes: object) -> dict:
    spec = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            spec[section].pop(key)
        else:
            spec[section][key] = value
    return spec


MALFORMED = {
    "unknown axis": (_with(axes__alpah=[0.5]), "axes.alpah", "unknown field"),
    "empty axis": (_with(axes__alpha=[]), "axes.alpha", "at least 1"),
    "alpha out of range": (_with(axes__alpha=[0.5, 1.5]), "axes.alpha[1]", "<= 1"),
    "negative latency": (_with(fixed__t_layer=-1.0), "fixed.t_layer", ">= 0"),
    "wrong type": (_with(axes__k=["four"]), "axes.k[0]", "integer"),
    "missing gamma": (_with(axes__gamma=None), "fixed.gamma", "required"),
    "axis also fixed": (_with(fixed__alpha=0.5), "axes.alpha", "also in fixed"),
    "boundaries not a list of lists": (
        _with(axes__k=None, axes__boundaries=[8, 16]),
        "axes.boundaries[0]",
        "list of lists",
    ),
    "unknown top-level key": ({**BASE, "axis": {}}, "spec.axis", "unknown field"),
    "missing profile file": (
        _with(fixed__layers=None, fixed__t_layer=None, fixed__profile="nope.json"),
        "fixed.profile",
        "not found",
    ),
    "bad YAML": ("fixed: {layers: 16\naxes: [", "spec", "malformed YAML"),
    "no axes or points": ({"fixed": BASE["fixed"]}, "axes", "give axes"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_spec_refused_before_any_work(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, field, words = MALFORMED[case]
    spec = _write(tmp_path, data)
    out = tmp_path / "results"
    rc = main(["sweep", str(spec), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 2
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 1, captured.err
    assert err_lines[0].startswith(f"ppsd: error: {field}:"), err_lines[0]
    assert words in err_lines[0]
    assert "points" not in captured.out  # nothing was counted, let alone run
    assert not out.exists()


def test_malformed_spec_real_cli_process(tmp_path: Path) -> None:
    spec = _write(tmp_path, _with(axes__alpha=[-0.1]))
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "sweep", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ppsd: error: axes.alpha[0]: must be >= 0, got -0.1"
    ]
    assert not out.exists()


def test_bad_cli_values_are_config_errors() -> None:
    from ppsd_sim.sweep import make_backend

    with pytest.raises(ConfigError, match="workers"):
        make_backend("local", 0)
    with pytest.raises(ConfigError, match="address"):
        make_backend("local", 1, "127.0.0.1:6379")


def test_point_ids_do_not_depend_on_spec_order() -> None:
    a = parse_spec(BASE)
    shuffled = {
        "axes": {k: list(reversed(v)) for k, v in reversed(list(BASE["axes"].items()))},
        "fixed": dict(reversed(list(BASE["fixed"].items()))),
    }
    b = parse_spec(shuffled)
    assert {p.id for p in a.points} == {p.id for p in b.points}
    assert len(a.points) == 4
    assert {p.id: p.config["seed"] for p in a.points} == {p.id: p.config["seed"] for p in b.points}


def test_ids_and_seeds_follow_the_config_and_spec_seed() -> None:
    a = parse_spec(BASE)
    other_seed = parse_spec({**BASE, "seed": 1})
    assert not {p.id for p in a.points} & {p.id for p in other_seed.points}
    seeds = [p.config["seed"] for p in a.points]
    assert len(set(seeds)) == len(seeds)  # independent streams per point
    common = parse_spec({**BASE, "seed": 7, "seed_mode": "common"})
    assert {p.config["seed"] for p in common.points} == {7}


def test_unused_values_collapse_and_are_reported() -> None:
    spec = parse_spec(
        {
            "fixed": {"layers": 16, "t_layer": 1e-3},
            "axes": {"scheme": ["ar", "eesd"], "gamma": [2, 4], "exit": [4], "alpha": [0.5]},
        }
    )
    # AR ignores gamma/exit/alpha: 1 AR point + 2 EESD points
    assert sorted(p.config["scheme"] for p in spec.points) == ["ar", "eesd", "eesd"]
    assert spec.duplicates == 1
    assert spec.varying == ("scheme", "acceptance", "alpha", "exit", "gamma", "cache_reuse")
    only_ppsd = parse_spec(
        {
            "fixed": {"layers": 16, "t_layer": 1e-3, "scheme": "ppsd", "gamma": 3, "alpha": 0.7},
            "axes": {"k": [2]},
            "points": [{"k": 4, "alpha": 0.5}],
        }
    )
    assert len(only_ppsd.points) == 2
    assert only_ppsd.unused == ("gamma",)


def test_profile_file_is_hashed_into_the_point(tmp_path: Path) -> None:
    from ppsd_sim.examples import example_profile
    from ppsd_sim.records.io import write_record

    write_record(tmp_path / "prof.json", example_profile())
    spec_path = _write(
        tmp_path,
        {"fixed": {"profile": "prof.json", "scheme": "ppsd", "alpha": 0.8}, "axes": {"k": [2, 4]}},
    )
    a = load_spec(spec_path)
    assert all("profile_sha256" in p.config for p in a.points)
    assert len(a.context.profiles) == 1
    write_record(tmp_path / "prof.json", example_profile().with_costs(hop=1e-3))
    b = load_spec(spec_path)  # the file changed: new points, not stale results
    assert not {p.id for p in a.points} & {p.id for p in b.points}
    # a profile file and uniform-profile values in one point are ambiguous
    with pytest.raises(ConfigError, match=r"fixed\.layers"):
        parse_spec(
            {
                "fixed": {"profile": "prof.json", "layers": 8, "scheme": "ar"},
                "axes": {"tokens": [5]},
            },
            base_dir=tmp_path,
        )
