"""The Ray backend on a local 2-CPU Ray instance gives the same table as the local process
pool (same seeds → same results; single-sequence and serving points), and a missing ray is one clear ConfigError."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ppsd_sim.sweep import load_results, make_backend, parse_spec, run_sweep
from ppsd_sim.sweep.table import RUN_COLUMNS

HAVE_RAY = importlib.util.find_spec("ray") is not None

SPEC = {
    "name": "ray",
    "seed": 5,
    "fixed": {"layers": 16, "t_layer": 1e-3, "head_fraction": 0.5, "tick": 2e-5, "tokens": 3000},
    "axes": {
        "scheme": ["ar", "eesd", "ppsd"],
        "alpha": [0.4, 0.6, 0.8, 0.95],
        "exit": [2, 4, 20],
        "gamma": [2, 5],
        "k": [2, 4],
        "acceptance": ["iid", "markov"],
        "burstiness": [0.3],
    },
    "points": [
        {"scheme": "ppsd", "k": 2, "devices": [0, 0], "alpha": 0.7, "tokens": 400},
        # serving points (many requests at once) run on Ray workers too
        *(
            {
                "mode": "serving",
                "scheme": kind,
                "k": 2,
                "alpha": 0.7,
                "rate": 30.0,
                "requests": 30,
                "output_len": 16,
            }
            for kind in ("ar", "pp_ar", "ppsd")
        ),
    ],
}


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=list(RUN_COLUMNS)).set_index("point_id").sort_index()


@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install -e '.[ray]')")
def test_ray_backend_gives_the_local_table(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    quiet = {"progress": False, "echo": lambda s: None}
    t0 = time.perf_counter()
    local = run_sweep(spec, tmp_path / "local", make_backend("local", 2), **quiet)
    t1 = time.perf_counter()
    on_ray = run_sweep(spec, tmp_path / "ray", make_backend("ray", 2), **quiet)
    t2 = time.perf_counter()
    print(
        f"local {t1 - t0:.1f} s, ray {t2 - t1:.1f} s (incl. starting Ray) for {len(spec.points)} points"
    )
    assert local.done + local.failed == on_ray.done + on_ray.failed == len(spec.points)
    assert local.failed == on_ray.failed > 0
    a, b = load_results(tmp_path / "local"), load_results(tmp_path / "ray")
    assert b.point_id.is_unique and len(b) == len(spec.points)
    assert set(b.engine.dropna()) == {"closed_form", "fast", "simpy"}
    pd.testing.assert_frame_equal(_comparable(a), _comparable(b))


def test_missing_ray_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ppsd_sim.errors import ConfigError

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is absent
    with pytest.raises(ConfigError, match=r"^backend: .*pip install -e '\.\[ray\]'"):
        run_sweep(parse_spec(SPEC), tmp_path / "out", make_backend("ray", 2), progress=False)
