"""The planner against brute force: every contiguous split and every exit stage, scored by the
simulator's closed forms, on small models with uneven layers and overheads."""

from __future__ import annotations

import math

import pytest

from analysis.curves import AcceptanceCurve, illustrative_curve, parse_curve
from analysis.planner import brute_force, enumerate_candidates, minmax_splits, plan
from ppsd_sim import analytic
from ppsd_sim.costs import ppsd_costs
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.profile import HardwareProfile, Provenance
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.timing import Timing


def uneven_profile(layers: list[float], **kw: float) -> HardwareProfile:
    return HardwareProfile(
        layer_decode=tuple(Timing(t) for t in layers),
        ee_head=Timing(kw.get("ee_head", 0.3e-3)),
        final_head=Timing(kw.get("final_head", 0.4e-3)),
        embed=Timing(kw.get("embed", 0.05e-3)),
        hop=Timing(kw.get("hop", 30e-6)),
        tick=Timing(kw.get("tick", 40e-6)),
        flush=Timing(kw.get("flush", 50e-6)),
        verify_tokens=(1, 4, 8),
        verify_factor=(1.0, 1.1, 1.3),
        concurrency_slowdown=kw.get("slow", 1.0),
        provenance=Provenance(source="hand"),
    )


CASES = [
    # (layer latencies, devices, curve, extra costs)
    ([1e-3, 2e-3, 0.5e-3, 1.5e-3, 1e-3, 3e-3, 0.7e-3], 4, "1:0.3,3:0.6,6:0.9", {}),
    ([0.5e-3] * 8, 3, "2:0.5,4:0.8", {"slow": 1.1}),
    ([2e-3, 0.1e-3, 0.1e-3, 2e-3, 0.2e-3, 0.3e-3], 5, "1:0.95,5:0.99", {"tick": 1e-3}),
    ([1e-3, 1e-3, 4e-3, 1e-3, 1e-3], 4, "1:0.1,2:0.2,4:0.97", {"hop": 2e-3, "flush": 1e-3}),
]


@pytest.mark.parametrize(("layers", "devices", "curve", "kw"), CASES)
def test_planner_best_equals_brute_force(layers, devices, curve, kw):
    prof = uneven_profile(layers, **kw)
    c = parse_curve(curve)
    brute = brute_force(prof, c, devices, max_gamma=6)
    pl = plan(prof, c, devices, max_gamma=6, top=3, sim_tokens=0)
    best_brute = max(t for _, t in brute)
    assert pl.candidates[0].tokens_per_s == pytest.approx(best_brute, rel=1e-12)
    # and for every device budget k: the DP (exit after stage 1) is as good as any split with
    # any exit stage on at most k devices (a later exit stage never helps, see planner.py)
    cands = enumerate_candidates(prof, c, devices, max_gamma=6)
    for k in range(2, min(devices, prof.n_layers) + 1):
        bk = max(t for s, t in brute if s.kind == "ppsd" and s.n_stages <= k)
        pk = max(
            x.tokens_per_s for x in cands if x.scheme.kind == "ppsd" and x.scheme.n_stages <= k
        )
        assert pk == pytest.approx(bk, rel=1e-12)


def test_dp_matches_the_simulator_costs():
    """The DP's stage costs are the simulator's: Π from the DP = ppsd_costs().accepted_gap."""
    prof = uneven_profile([1e-3, 2e-3, 0.5e-3, 1.5e-3, 1e-3, 3e-3], slow=1.07)
    best, _ = minmax_splits(prof, 3, prof.concurrency_slowdown)
    for cand in enumerate_candidates(prof, parse_curve("1:0.5,5:0.9"), 4):
        if cand.scheme.kind != "ppsd":
            continue
        s = cand.scheme
        e, k = s.stage_boundaries[0], s.n_stages
        costs = ppsd_costs(prof, s)
        later = max(costs.busy_per_token(i) for i in range(1, k))
        assert later == pytest.approx(best[k - 1][e], rel=1e-12)


def test_min_devices_target_picks_fewest_devices():
    prof = uneven_profile([1e-3] * 8, tick=0.0, hop=0.0, flush=0.0, embed=0.0)
    c = AcceptanceCurve((1, 7), (0.9, 0.9))
    ar = analytic.ar_tokens_per_s(prof)
    # 1.5× AR needs PPSD; brute force says which device counts can reach it
    need = 1.5 * ar
    brute = brute_force(prof, c, 6, max_gamma=4)
    fewest = min(s.n_stages for s, t in brute if t >= need)
    pl = plan(prof, c, 6, target="min_devices", min_tokens_per_s=need, max_gamma=4, sim_tokens=0)
    assert pl.met
    assert pl.candidates[0].devices == fewest
    assert all(x.tokens_per_s >= need for x in pl.candidates)
    assert [x.devices for x in pl.candidates] == sorted(x.devices for x in pl.candidates)
    impossible = plan(
        prof, c, 2, target="min_devices", min_tokens_per_s=100 * ar, sim_tokens=0, max_gamma=4
    )
    assert not impossible.met and "no configuration" in impossible.message


def test_top_candidates_are_confirmed_by_simulation_and_carry_sensitivity():
    from ppsd_sim.examples import example_profile

    prof = example_profile()
    pl = plan(prof, illustrative_curve(32), 4, top=3, sim_tokens=20_000)
    for c in pl.candidates:
        assert c.simulated_engine == "fast"
        assert c.simulated_speedup == pytest.approx(c.speedup, rel=0.03)
        assert c.speedup_alpha_lo < c.speedup < c.speedup_alpha_hi
        be = analytic.break_even_alpha(prof, c.scheme)
        assert c.break_even_alpha == pytest.approx(be)
    assert pl.best_per_scheme["ar"].speedup == 1.0
    assert pl.candidates[0].scheme.kind == "ppsd"


def test_eesd_wins_on_one_device_when_acceptance_is_high():
    prof = uneven_profile([1e-3] * 8, tick=0.0)
    curve = AcceptanceCurve((2,), (0.95,))
    # by default only the given exit is searched; exits= widens it (α held flat)
    assert {c.scheme.exit_layer for c in enumerate_candidates(prof, curve, 1)} == {None, 2}
    pl = plan(prof, curve, 1, max_gamma=8, sim_tokens=0, exits=list(range(1, 8)))
    best = pl.candidates[0]
    assert best.scheme.kind == "eesd" and best.devices == 1
    brute = max(
        analytic.tokens_per_s(prof, SchemeConfig.eesd(e, g), 0.95)
        for e in range(1, 8)
        for g in range(1, 9)
    )
    assert best.tokens_per_s == pytest.approx(brute)
    assert best.alpha_status in ("extrapolated", "given")  # α held flat beyond E = 2
    assert not math.isnan(best.speedup)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"devices": 0}, "devices"),
        ({"devices": 2, "target": "fastest"}, "target"),
        ({"devices": 2, "target": "min_devices"}, "min_tokens_per_s"),
        ({"devices": 2, "exits": [9]}, "exits[0]"),
    ],
)
def test_bad_questions_name_the_field(kwargs, field):
    prof = uneven_profile([1e-3] * 4)
    with pytest.raises(ConfigError) as err:
        plan(prof, AcceptanceCurve((1,), (0.5,)), sim_tokens=0, **kwargs)
    assert err.value.field == field


def test_curve_parsing_and_interpolation():
    c = parse_curve("8:0.6,4:0.4")
    assert c.exits == (4, 8) and c.alpha(6) == pytest.approx(0.5) and c.alpha(20) == 0.6
    for bad in ("8", "8:x", "", "4:0.5,4:0.6", "0:0.5"):
        with pytest.raises(ConfigError):
            parse_curve(bad)
