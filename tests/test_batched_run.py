"""Batched step-cost profile (the fit, the profile's batched field, `ppsd profile --batched`)
and the batched run entry (`python -m ppsd_real.batched.cli`): figures, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ppsd_real import runner
from ppsd_real.batched import cli
from ppsd_real.batched.profile import Cell, Grid, costs_from_cells, measure_cells, with_batched
from ppsd_real.batched.run import measure_batched
from ppsd_real.drafters import DrafterSpec
from ppsd_real.profiler import profile
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, SchemeConfig
from ppsd_sim.records.load_cost import LoadCost
from ppsd_sim.serving.step_costs import device_steps
from tests.arch_helpers import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.real_fixtures import TINY

ROOT = Path(__file__).resolve().parents[1]


def _law(tokens: int, kv: int, a: float, b: float, c: float) -> float:
    return a + b * tokens + c * kv


def test_fit_recovers_a_linear_step_law_with_tokens_b_n_and_kv_b_c() -> None:
    """Cells generated from known laws: tokens = B·n, kv = B·c are what the fit sees, heads
    and embed read no KV, and the whole-step errors in the notes are 0."""
    layer = (2e-4, 3e-5, 4e-8)
    cells = []
    for ctx in (32, 128):
        for n in (1, 5):
            for b in (1, 2, 4, 8):
                t, k = b * n, b * ctx
                layers = tuple(_law(t, k, *layer) for _ in range(3))
                embed, head = _law(t, 0, 1e-5, 1e-7, 0), _law(t, 0, 5e-5, 2e-6, 0)
                full = embed + sum(layers) + head
                ee = embed + layers[0] + head
                cells.append(Cell(b, ctx, n, layers, embed, head, head, full, ee))
    costs = costs_from_cells(cells, exit_layer=1, form="linear")
    for got in costs.layers:
        assert (got.a, got.b, got.c) == pytest.approx(layer, rel=1e-6)
    assert costs.final_head.c == 0.0 and costs.final_head.b == pytest.approx(2e-6, rel=1e-6)
    notes = json.loads(costs.notes)
    assert notes["fit_rel_error_full_step"]["max_abs"] == pytest.approx(0.0, abs=1e-9)
    assert notes["fit_rel_error_ee_step"]["max_abs"] == pytest.approx(0.0, abs=1e-9)
    assert len(notes["cells"]) == len(cells)
    # the default grid form reproduces the same law at the cells and between them
    grid = costs_from_cells(cells, exit_layer=1)
    for got in grid.layers:
        assert got.is_grid
        for t, k in ((1, 32), (3, 100), (5, 640), (17, 300), (40, 1024)):
            assert got.time(t, k) == pytest.approx(_law(t, k, *layer), rel=1e-9)


def test_the_grid_follows_a_concave_step_cost_that_a_line_misses() -> None:
    """Steps whose cost flattens with their tokens (weights read once per step): the grid is
    exact at every measured step, a fitted line is not; a noisy negative kv slope is clamped."""
    from ppsd_real.batched.profile import grid_fit

    def law(t, k):
        return 1e-3 * (1 + t) ** 0.5 + 1e-7 * k

    tokens = [1, 1, 2, 2, 4, 4, 8, 8, 16, 16]
    kv = [64, 256, 128, 512, 256, 1024, 512, 2048, 1024, 4096]
    secs = [law(t, k) for t, k in zip(tokens, kv, strict=True)]
    g = grid_fit(tokens, kv, secs)
    assert all(
        g.time(t, k) == pytest.approx(y, rel=1e-9) for t, k, y in zip(tokens, kv, secs, strict=True)
    )
    line = LoadCost.fit(tokens, kv, secs)
    assert (
        max(abs(line.time(t, k) / y - 1) for t, k, y in zip(tokens, kv, secs, strict=True)) > 0.05
    )
    flat = grid_fit([1, 1], [64, 256], [2e-3, 1e-3])  # more cache, cheaper: noise
    assert flat.time(1, 64) == flat.time(1, 256) == pytest.approx(1.5e-3)
    with pytest.raises(ConfigError):
        grid_fit([2, 4], [0, 0], [1e-3, 2e-3])


def test_step_scales_make_the_layers_add_up_to_the_whole_steps() -> None:
    """Layers timed one call each sum above the whole step: scaled so that the early part
    plus embed and EE head is the early-exit step and everything is the full step."""
    from ppsd_real.batched.profile import step_scales

    c = Cell(1, 64, 1, (1.1e-3,) * 4, 1e-5, 3e-4, 2e-4, 4.11e-3, 2.01e-3)
    f_early, f_late = step_scales(c, 2)
    assert c.embed + 2 * 1.1e-3 * f_early + c.ee_head == pytest.approx(c.ee_step)
    total = c.embed + 2 * 1.1e-3 * (f_early + f_late) + c.final_head
    assert total == pytest.approx(c.full_step)
    assert f_early < 1 and f_late < 1


def test_measured_cells_fill_the_profile_batched_field_and_leave_batch1_alone() -> None:
    m = runner.load(TINY)
    cells = measure_cells(m, Grid((1, 2, 4), (4, 16), (1, 3)), repeats=5, exit_layer=2)
    assert [(c.batch, c.context, c.step_tokens) for c in cells][:3] == [
        (1, 4, 1),
        (2, 4, 1),
        (4, 4, 1),
    ]
    assert len(cells) == 12
    for c in cells:
        assert len(c.layers) == 4 and all(x > 0 for x in c.layers)
        assert c.full_step > 0 and c.ee_step > 0 and c.embed > 0 and c.final_head > 0
    costs = costs_from_cells(cells, 2)
    base = profile(m, repeats=5)
    prof = with_batched(base, costs)
    assert prof.batched is costs and prof.load_costs() is costs
    strip = {k: v for k, v in prof.to_dict().items() if k != "batched"}
    assert strip == base.to_dict()  # every batch-1 field as measured
    again = HardwareProfile.from_dict(json.loads(json.dumps(prof.to_dict())))
    assert again.batched == costs
    steps = device_steps(prof, SchemeConfig.eesd(2, 4))  # the serving simulator prices it
    # from the batched table (a comparison of two measured steps of this tiny model, say batch
    # 8 slower than batch 1, is timing noise, not a test)
    want = (
        costs.embed.time(8)
        + costs.layers_cost(0, 4).time(8, 8 * 64)
        + costs.final_head.time(8)
        + prof.tick.median
    )
    assert steps.decode(8, 8 * 64) == pytest.approx(want) and want > 0
    # the one-token cells time the draft step inside rounds too; it prices EESD's drafts at
    # the exit it was measured at, and only there
    assert all((c.draft_step is not None) == (c.step_tokens == 1) for c in cells)
    assert costs.draft_exit == 2 and costs.draft_step is not None
    ones = [c.draft_step or 0.0 for c in cells if c.batch == 1 and c.step_tokens == 1]
    # a line in kv through the two contexts' cells (flat, at their mean, if noise sloped down)
    assert min(ones) * (1 - 1e-9) <= costs.draft_step.time(1, 4) <= max(ones) * (1 + 1e-9)
    assert steps.draft(1, 4) == pytest.approx(
        costs.draft_step.time(1, 4) + prof.tick.median, rel=1e-9
    )
    other = device_steps(prof, SchemeConfig.eesd(1, 4))
    assert other.draft_step is None
    assert other.draft(1, 4) == pytest.approx(
        costs.embed.time(1) + costs.layers[0].time(1, 4) + costs.ee_head.time(1) + prof.tick.median
    )


def test_profile_batched_flags_need_batched_and_are_checked_before_work(tmp_path) -> None:
    from ppsd_sim.cli.main import main

    out = tmp_path / "p.json"
    assert main(["profile", "--preset", "tiny", "--batch-sizes", "1,2", "--output", str(out)]) == 2
    for flag, bad in (
        ("--batch-sizes", "2,1"),
        ("--batch-contexts", "0,4"),
        ("--batch-sizes", "a"),
    ):
        args = ["profile", "--preset", "tiny", "--batched", flag, bad, "--output", str(out)]
        assert main(args) == 2
    assert not out.exists()


def test_measure_batched_reports_both_schemes_at_the_same_batch() -> None:
    m = runner.load(TINY)
    prompts = [[1, 2, 3], [7, 8, 9, 10, 11, 12], [5], [9, 9, 9, 9]]
    rep = measure_batched(m, prompts, 6, 2, 2, 3, DrafterSpec("oracle", 1.0, 0), repeats=1)
    ar, eesd = rep.rows
    assert (ar.name, eesd.name) == ("ar", "eesd")
    assert ar.speedup == 1.0 and ar.acceptance is None and eesd.acceptance == 1.0
    assert rep.output_tokens == 24
    for r in rep.rows:
        assert r.tokens_s == pytest.approx(24 / r.time_s)
        assert r.tpot_p50_s > 0 and r.ttft_p50_s > 0 and r.speedup > 0
    assert eesd.tpot_speedup == pytest.approx(ar.tpot_p50_s / eesd.tpot_p50_s)
    text = "\n".join(rep.lines())
    assert "batched AR (baseline)" in text and "batch <= 2" in text


def test_cli_bad_batch_is_one_line_exit_2() -> None:
    got = subprocess.run(
        [sys.executable, "-m", "ppsd_real.batched.cli", "--batch", "0", "--preset", "tiny"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert got.returncode == 2
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppsd: error: --batch:")


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--batch", "3", "--prompt", "def f(x):"], "--batch"),
        (["--batch", "1", "--requests", "2", "--prompt", "def f(x):"], "--requests"),
        (["--preset", "tiny", "--drafter", "early-exit", "--alpha", "0.5"], "--alpha"),
        (["--preset", "tiny", "--exit", "4"], "--exit"),
        (["--preset", "tiny", "--tokens", "0"], "--tokens"),
        (["--preset", "tiny", "--stages", "1"], "--stages"),
        (["--preset", "tiny", "--stages", "5"], "--stages"),  # the tiny model has 4 layers
        # PPSD's stage 1 is layers [0, E): 3 more stages need 3 layers after E = 3 of 4
        (["--preset", "tiny", "--stages", "4", "--exit", "3"], "--stages: 4 stages need"),
    ],
)
def test_cli_refusals_name_the_flag(argv: list[str], flag: str, capsys) -> None:
    assert cli.main([*argv, "--repeats", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ppsd: error: {flag}")


def test_cli_runs_a_continuous_batch(capsys) -> None:
    args = ["--preset", "tiny", "--batch", "2", "--requests", "3", "--tokens", "5"]
    assert cli.main([*args, "--repeats", "1", "--closed-loop"]) == 0
    out = capsys.readouterr().out
    assert "3 requests (a closed loop of users), batch <= 2" in out
    assert "batched EESD(E=2, γ=4)" in out


def test_ppsd_run_batch_with_stages_measures_pp_ar_and_ppsd_beside_ar(capsys) -> None:
    """``--stages k`` adds batched PP-AR and batched PPSD on k stage processes, timed against
    the same batched AR; their tokens are checked like AR's (a difference would be a note)."""
    from ppsd_sim.cli.main import main as ppsd

    argv = ["run", "--batch", "4", "--requests", "6", "--preset", "tiny", "--tokens", "6"]
    assert ppsd([*argv, "--stages", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "batched PP-AR(k=2), 2 processes" in out
    assert "batched PPSD(k=2, E=2)" in out
    assert "PP-AR runs on 2 processes (stages [2, 4]), PPSD on 2 (stages [2, 4])" in out
    assert "differed" not in out  # their tokens are every request's batch-1 AR tokens
    row = next(x for x in out.splitlines() if x.startswith("batched PPSD"))
    assert 0.0 <= float(row.split()[-3]) <= 1.0  # the acceptance column


def test_no_cells_refused() -> None:
    with pytest.raises(ConfigError, match="cells"):
        costs_from_cells([], 1)


def test_ppsd_run_batch_serves_the_batch_and_refuses_batch_1_flags(capsys):
    """``ppsd run --batch N`` is the batched runner (in process, the tiny preset)."""
    from ppsd_sim.cli.main import main as ppsd

    argv = ["run", "--batch", "2", "--requests", "3", "--preset", "tiny", "--tokens", "4"]
    assert ppsd([*argv, "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 requests (all waiting at t = 0), batch <= 2" in out and "x AR tok/s" in out
    for extra, flag in (
        (["--scheme", "ppsd"], "--scheme"),
        (["--temperature", "1"], "--temperature"),
        (["--backend", "sequential"], "--backend"),
    ):
        assert ppsd([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"ppsd: error: {flag}: is not taken"), err
    assert ppsd(["run", "--preset", "tiny", "--closed-loop"]) == 2  # needs --batch
    assert "--closed-loop: applies to batched runs" in capsys.readouterr().err
