"""The cost of choosing a token at temperature > 0 (issue 12, calibration): a profile carries
warp/draw/judge, the schemes pay them where the real decoders do, greedy predictions never
see them, the closed form and the simulator agree with them in, a sampled prediction from a
profile without them is flagged, and the profiler and ``ppsd profile --temperature`` measure
them on the real model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from calibration.grid import Cell
from calibration.predict import predict as predict_cell
from ppsd_sim import analytic
from ppsd_sim.cli.main import main
from ppsd_sim.costs import ar_costs, eesd_costs, ppsd_costs
from ppsd_sim.errors import ConfigError
from ppsd_sim.predict import predict, range_flags
from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.sampling_cost import SamplingCosts
from ppsd_sim.simulate import simulate

T1 = DecodingSettings(temperature=1.0)
WARP, DRAW, JUDGE = 40e-6, 15e-6, 30e-6


def _profiles() -> tuple[HardwareProfile, HardwareProfile]:
    """(without sampling costs, with them): 8 layers of 1 ms, heads 0.4 ms, a verify factor."""
    base = HardwareProfile.uniform(
        8,
        1e-3,
        0.4,
        hop=20e-6,
        tick=50e-6,
        flush=30e-6,
        verify_tokens=(1, 2, 4, 8),
        verify_factor=(1.0, 1.1, 1.3, 1.7),
    ).with_costs(concurrency_slowdown=1.1)
    costs = SamplingCosts(settings=T1, warp=WARP, draw=DRAW, judge=JUDGE)
    return base, base.with_costs(sampling=costs)


def test_greedy_costs_never_read_the_sampling_costs() -> None:
    base, sampled = _profiles()
    for scheme in (SchemeConfig.eesd(3, 4), SchemeConfig.ppsd((3, 8))):
        assert analytic.speedup(sampled, scheme, 0.7) == analytic.speedup(base, scheme, 0.7)
        assert analytic.speedup(sampled, scheme, 0.7, T1) != analytic.speedup(base, scheme, 0.7)
    assert ar_costs(sampled) == ar_costs(base)
    # no costs measured: a sampled what-if is priced as greedy (and flagged, below)
    assert ar_costs(base, T1) == ar_costs(base)


def test_each_scheme_pays_sampling_where_the_real_decoders_do() -> None:
    base, sampled = _profiles()
    g = 4
    assert ar_costs(sampled, T1).token == pytest.approx(ar_costs(base).token + WARP + DRAW)
    e0, e1 = (
        eesd_costs(base, SchemeConfig.eesd(3, g)),
        eesd_costs(sampled, SchemeConfig.eesd(3, g), T1),
    )
    assert e1.draft_step == pytest.approx(e0.draft_step + WARP + DRAW)
    assert e1.verify == pytest.approx(e0.verify + (g + 1) * WARP + g * JUDGE + DRAW)
    assert e1.flush == e0.flush
    p0, p1 = (
        ppsd_costs(base, SchemeConfig.ppsd((3, 8))),
        ppsd_costs(sampled, SchemeConfig.ppsd((3, 8)), T1),
    )
    slow = base.concurrency_slowdown
    assert p1.ee_head == pytest.approx(p0.ee_head + (WARP + DRAW) * slow)
    assert p1.final_head == pytest.approx(p0.final_head + WARP * slow)
    assert p1.compute[0] == pytest.approx(p0.compute[0] + JUDGE * slow)  # stage 0 judges
    assert p1.compute[1:] == p0.compute[1:]


@pytest.mark.parametrize("alpha", [0.3, 0.7, 0.95])
@pytest.mark.parametrize("scheme", [SchemeConfig.eesd(2, 4), SchemeConfig.ppsd((4, 8))])
def test_closed_form_and_simulation_agree_with_sampling_costs(alpha, scheme) -> None:
    _, sampled = _profiles()
    acc = AcceptanceSpec.iid(alpha).with_decoding(T1)
    rec = simulate(sampled, scheme, acc, tokens=40_000, seed=3, engine="simpy").record
    closed = analytic.speedup(sampled, scheme, alpha, T1)
    assert rec.speedup == pytest.approx(closed, rel=0.02)
    assert rec.notes["closed_form_speedup"] == pytest.approx(closed)
    # the baseline is AR sampled too: the simulated AR time per token includes warp + draw
    greedy = simulate(sampled, scheme, AcceptanceSpec.iid(alpha), tokens=40_000, seed=3).record
    assert rec.speedup != greedy.speedup


def test_sampled_prediction_without_sampling_costs_is_flagged() -> None:
    base, sampled = _profiles()
    scheme = SchemeConfig.eesd(3, 4)
    flag = "sampling costs not profiled (0): the profile was measured greedy"
    assert flag in range_flags(base, scheme, T1)
    assert flag not in range_flags(base, scheme, GREEDY)
    assert flag not in range_flags(sampled, scheme, T1)
    acc = AcceptanceSpec.iid(0.7).with_decoding(T1)
    assert flag in predict(base, scheme, acc, tokens=2000).flags


def test_calibration_predicts_a_sampled_cell_with_its_costs() -> None:
    _, sampled = _profiles()
    cell = Cell(SchemeConfig.eesd(3, 4), None, "early-exit")
    greedy = predict_cell(sampled, cell, alpha=0.7, tokens=4000)
    t1 = predict_cell(sampled, cell, alpha=0.7, tokens=4000, decoding=T1)
    assert t1.speedup == pytest.approx(analytic.speedup(sampled, cell.scheme, 0.7, T1), rel=0.03)
    assert greedy.speedup == pytest.approx(analytic.speedup(sampled, cell.scheme, 0.7), rel=0.03)
    assert not math.isclose(t1.speedup, greedy.speedup, rel_tol=1e-3)


def test_profile_round_trips_and_refuses_bad_sampling_costs() -> None:
    _, sampled = _profiles()
    back = HardwareProfile.from_dict(json.loads(json.dumps(sampled.to_dict())))
    assert back == sampled
    d = sampled.to_dict()
    d["sampling"]["warp"] = -1.0
    with pytest.raises(ConfigError, match=r"sampling\.warp"):
        HardwareProfile.from_dict(d)
    d = sampled.to_dict()
    del d["sampling"]["judge"]
    with pytest.raises(ConfigError, match=r"sampling\.judge.*required"):
        HardwareProfile.from_dict(d)
    d = sampled.to_dict()
    d["sampling"]["settings"] = "greedy"
    with pytest.raises(ConfigError, match=r"sampling\.settings\.temperature"):
        HardwareProfile.from_dict(d)
    d = sampled.to_dict()
    d["sampling"]["settings"]["top_p"] = 2.0
    with pytest.raises(ConfigError, match=r"sampling\.settings\.top_p"):
        HardwareProfile.from_dict(d)


def test_profiler_measures_sampling_costs_on_the_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "p.json"
    argv = ["profile", "--preset", "tiny", "--no-stages", "--repeats", "5"]
    code = main([*argv, "--temperature", "0.7", "--top-p", "0.9", "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    prof = HardwareProfile.from_dict(json.loads(out.read_text()))
    assert prof.sampling is not None
    assert prof.sampling.settings == DecodingSettings(0.7, None, 0.9)
    for part in (prof.sampling.warp, prof.sampling.draw, prof.sampling.judge):
        assert 0 < part.median < 0.05 and len(part.samples) >= 100
    assert "sampling at T=0.7 top-p=0.9: warp" in printed
    # greedy profiles stay as they were: no sampling costs
    code = main([*argv, "--output", str(tmp_path / "g.json")])
    assert code == 0
    assert "sampling" not in json.loads((tmp_path / "g.json").read_text())


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--temperature", "-1"], "--temperature"),
        (["--temperature", "nan"], "--temperature"),
        (["--temperature", "1", "--top-p", "1.5"], "--top-p"),
        (["--top-k", "5"], "--top-k"),
    ],
)
def test_profile_refuses_bad_sampling_flags(extra, flag, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o.json"
    code = main(["profile", "--preset", "tiny", "--no-stages", *extra, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"ppsd: error: {flag}") and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("devices", [2, 4])
def test_planner_prices_a_sampled_curve_with_its_costs_and_still_equals_brute_force(devices):
    from dataclasses import replace

    from analysis.curves import parse_curve
    from analysis.planner import brute_force, plan

    # uneven layers and costly sampling: the best split and γ move when sampling is priced
    layers = [1e-3, 2e-3, 0.5e-3, 1.5e-3, 1e-3, 3e-3, 0.7e-3]
    prof = HardwareProfile.uniform(7, 1e-3, 0.4, hop=20e-6, tick=40e-6, flush=50e-6)
    prof = prof.with_costs(
        layer_decode=tuple(type(prof.layer_decode[0])(t) for t in layers),
        sampling=SamplingCosts(settings=T1, warp=0.4e-3, draw=0.1e-3, judge=0.3e-3),
    )
    curve = replace(parse_curve("1:0.3,3:0.6,6:0.9"), decoding=T1)
    pl = plan(prof, curve, devices, max_gamma=6, top=3, sim_tokens=0)
    brute = brute_force(prof, curve, devices, max_gamma=6)
    assert pl.candidates[0].tokens_per_s == pytest.approx(max(t for _, t in brute), rel=1e-12)
    assert pl.ar_tokens_per_s == pytest.approx(1 / ar_costs(prof, T1).token)
    best = pl.candidates[0]
    if best.alpha is not None:
        want = analytic.tokens_per_s(prof, best.scheme, best.alpha, T1)
        assert best.tokens_per_s == pytest.approx(want)
    greedy = plan(prof, replace(curve, decoding=GREEDY), devices, max_gamma=6, sim_tokens=0)
    assert greedy.ar_tokens_per_s > pl.ar_tokens_per_s
