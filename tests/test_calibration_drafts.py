"""Calibration on the model's own drafts (``--drafter early-exit``), greedy and sampled: the grid,
predictions at the acceptance the run measured, real measurements on the shipped model, and
the flags that cannot apply refused in one line."""

from __future__ import annotations

import pytest

from calibration.grid import Cell, drafter_grid
from calibration.loop import rows_of
from calibration.measure import Measured, measure_grid
from calibration.predict import predict
from ppsd_real.model_loading import SHIPPED_MODEL, ModelSpec
from ppsd_real.sampling import SamplingSpec
from ppsd_sim.analytic import speedup
from ppsd_sim.cli.main import main
from ppsd_sim.records import HardwareProfile, SchemeConfig

PROFILE = HardwareProfile.uniform(6, 1e-3, 1.0, hop=1e-4, tick=5e-5, flush=2e-5)


def test_the_drafter_grid_is_ar_eesd_and_ppsd_at_two_exits():
    cells = drafter_grid(6)
    assert [c.label for c in cells] == [
        "AR",
        "EESD(E=3, γ=4) early-exit",
        "PPSD(k=2, E=3) early-exit",
        "EESD(E=1, γ=4) early-exit",
        "PPSD(k=2, E=1) early-exit",
    ]
    assert all(c.drafter == "early-exit" and c.alpha is None for c in cells)
    assert len(drafter_grid(6, quick=True)) == 3
    with pytest.raises(ValueError):  # a real draft's acceptance is measured, never set
        Cell(SchemeConfig.eesd(3, 4), 0.8, drafter="early-exit")


def test_early_exit_cells_are_predicted_at_the_acceptance_they_measured():
    ee = Measured(Cell(SchemeConfig.ppsd((3, 6)), drafter="early-exit"))
    ee.add(1, 1.0, 1.2, (1, 1, 1, 0) * 50)  # α = 0.75 measured
    oracle = Measured(Cell(SchemeConfig.ppsd((3, 6)), 0.5))
    oracle.add(1, 1.0, 1.2, (1, 1, 1, 0) * 50)
    rows = rows_of(PROFILE, [ee, oracle], 20_000, baseline="AR 1 thread, sampled T=1 seed=0")
    at_measured = predict(PROFILE, ee.cell, tokens=20_000, alpha=0.75).speedup
    assert rows[0].predicted == at_measured
    assert at_measured == pytest.approx(speedup(PROFILE, ee.cell.scheme, 0.75), rel=0.02)
    assert rows[0].alpha is None and rows[0].observed_alpha == 0.75
    # an oracle cell is predicted at the α it set, whatever acceptance the run happened to see
    assert rows[1].predicted == predict(PROFILE, oracle.cell, tokens=20_000).speedup
    assert rows[1].predicted != pytest.approx(rows[0].predicted, rel=0.01)
    assert {r.baseline for r in rows} == {"AR 1 thread, sampled T=1 seed=0"}


@pytest.mark.skipif(not SHIPPED_MODEL.is_dir(), reason="shipped model absent")
def test_real_drafts_on_the_shipped_model_greedy_and_sampled():
    """The shipped model's trained heads draft; greedy outputs are checked token for token
    against AR inside the measurement (a lossy run raises), sampled ones are fixed by the seed."""
    spec = ModelSpec(preset=None, path=str(SHIPPED_MODEL))
    cells = drafter_grid(6, quick=True)
    heads = {3: str(SHIPPED_MODEL / "ee_head_exit3.safetensors")}
    kw = {"tokens": 12, "repeats": 1, "heads": heads}
    greedy = measure_grid(spec, cells, **kw)
    t1 = SamplingSpec(temperature=1.0, seed=3)
    sampled = measure_grid(spec, cells, sampling=t1, **kw)
    again = measure_grid(spec, cells, sampling=t1, **kw)
    for runs in (greedy, sampled):
        assert runs[0].judged == 0 and all(m.speedups for m in runs)  # AR drafts nothing
        for m in runs[1:]:
            assert m.judged > 0 and 0.0 <= m.observed_alpha <= 1.0
    assert [m.trace for m in again] == [m.trace for m in sampled]  # the seed fixes the draws
    # sampling changes what is drafted and judged, so (almost surely) the traces
    assert [m.trace for m in sampled] != [m.trace for m in greedy]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--temperature", "1"], "--temperature: the oracle drafter is greedy only"),
        (["--heads", "h"], "--heads: applies to --drafter early-exit"),
        (["--shared-head"], "--shared-head: applies to --drafter early-exit"),
        (["--drafter", "early-exit", "--top-p", "0.9"], "--top-p: has no effect at temperature"),
        (["--drafter", "early-exit", "--temperature", "-1"], "--temperature: must be a finite"),
        (["--model-dir", "/nonexistent"], "--model-dir: /nonexistent is not a model folder"),
    ],
)
def test_flags_that_cannot_apply_are_one_line_exit_2(argv, needle, capsys, tmp_path):
    code = main(["calibrate", "run", "--quick", "--out", str(tmp_path / "cal"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "cal").exists() or not any((tmp_path / "cal").iterdir())


def test_a_heads_folder_drafts_every_exit_of_the_grid_and_another_models_is_refused(
    capsys, tmp_path
):
    """``calibrate run --heads DIR``: the folder's manifest is checked against the model before
    any measurement, and each exit of the grid drafts with that folder's head file."""
    import argparse

    from calibration.cli import _heads
    from calibration.grid import exits_for
    from ppsd_real.lm.heads import head_file
    from tests.arch_helpers import with_tokenizer

    spec = ModelSpec(preset=None, path=str(SHIPPED_MODEL))
    args = argparse.Namespace(heads=str(SHIPPED_MODEL), shared_head=False)
    heads, label = _heads(args, spec, 6)
    assert heads == {e: str(head_file(SHIPPED_MODEL, e)) for e in exits_for(6)}
    assert label == f"trained ({SHIPPED_MODEL})"
    other = with_tokenizer("qwen3").path or ""
    capsys.readouterr()  # building the other model prints its own progress
    argv = ["--drafter", "early-exit", "--model-dir", other, "--heads", str(SHIPPED_MODEL)]
    code = main(["calibrate", "run", "--quick", "--out", str(tmp_path / "cal"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("ppsd: error: --heads: these heads were trained for stdlib-lm")
    assert not (tmp_path / "cal").exists() or not any((tmp_path / "cal").iterdir())
