"""The bound on PPSD tokens in flight (``SchemeConfig.max_inflight``, default k + 1: what the
real runner's controller allows): SimPy, the fast path and the closed form agree on it, and a
long hop no longer lets hundreds of tokens ride the pipeline for free."""

from __future__ import annotations

import numpy as np
import pytest

from ppsd_sim import analytic
from ppsd_sim.costs import ppsd_costs
from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.schedule import bound_binds, segment_schedule
from ppsd_sim.simulate import simulate

LONG_HOP = HardwareProfile.uniform(32, 1e-3, 0.5, hop=5e-3, flush=1e-4, tick=2e-5)
SCHEMES = [
    SchemeConfig.ppsd_even(32, 4),  # the bound paces stage 1: (G + hop) / 5 > Π
    SchemeConfig.ppsd([2, 20, 32]),  # a slow second stage: entries wait, commits do not
    SchemeConfig.ppsd([10, 12, 18, 32], exit_stage=2),  # draft after stage 2: slack bound
    SchemeConfig.ppsd([8, 16, 24, 32], max_inflight=2),
    SchemeConfig.ppsd([8, 16, 24, 32], max_inflight=1),  # one token at a time
]
ACCEPTANCE = [AcceptanceSpec.iid(0.9), AcceptanceSpec.markov(0.7, 0.5), AcceptanceSpec.iid(1.0)]


@pytest.mark.parametrize("scheme", SCHEMES, ids=[s.label() for s in SCHEMES])
@pytest.mark.parametrize("acc", ACCEPTANCE, ids=[a.label() for a in ACCEPTANCE])
@pytest.mark.parametrize("tokens", (1, 9, 1500))
def test_simpy_and_fast_path_agree_where_the_bound_binds(scheme, acc, tokens):
    ref = simulate(LONG_HOP, scheme, acc, tokens=tokens, seed=3, engine="simpy").record
    fast = simulate(LONG_HOP, scheme, acc, tokens=tokens, seed=3, engine="fast").record
    assert fast.time_s == pytest.approx(ref.time_s, rel=1e-9, abs=1e-12)
    assert fast.flushes == ref.flushes
    assert fast.acceptance_observed == ref.acceptance_observed
    assert fast.stage_busy_s == pytest.approx(ref.stage_busy_s, rel=1e-9, abs=1e-12)
    assert fast.stage_wasted_s == pytest.approx(ref.stage_wasted_s, rel=1e-9, abs=1e-12)


def test_the_bound_binds_in_these_cases():
    # the cases above exercise the bounded schedule (all but one) and the straight lines
    binds = [bound_binds(ppsd_costs(LONG_HOP, s), s.inflight_limit, 1500) for s in SCHEMES]
    assert binds == [True, True, False, True, True]


@pytest.mark.parametrize("scheme", SCHEMES, ids=[s.label() for s in SCHEMES])
@pytest.mark.parametrize("alpha", (0.0, 0.6, 0.95, 1.0))
def test_the_closed_form_is_the_long_run_rate_with_the_bound(scheme, alpha):
    sim = simulate(
        LONG_HOP, scheme, AcceptanceSpec.iid(alpha), tokens=100_000, seed=1, engine="fast"
    ).record
    assert sim.notes["closed_form_speedup"] == pytest.approx(sim.speedup, rel=0.01)


def test_the_issues_one_second_hop_is_bounded():
    # issue 10: with a 1 s hop and α = 1 a 4-stage PPSD held 357 tokens in flight and reported
    # 3.76×. With the real runner's limit (k + 1 = 5) a token enters only when the verdict of
    # the token 5 before it is back at stage 1: 5 tokens per fill + hop.
    p = HardwareProfile.uniform(32, 1e-3, 0.5, hop=1.0)
    scheme = SchemeConfig.ppsd_even(32, 4)
    rec = simulate(p, scheme, AcceptanceSpec.iid(1.0), tokens=2000, engine="simpy").record
    c = ppsd_costs(p, scheme)
    gap = max(c.accepted_gap, (c.fill_latency + c.hop) / 5)
    assert rec.speedup == pytest.approx(p.ar_token_time() / gap, rel=0.01)
    assert rec.speedup < 0.05
    assert analytic.speedup(p, scheme, 1.0) == pytest.approx(p.ar_token_time() / gap, rel=1e-9)
    # without the bound (an explicit, huge limit) the old, unphysical answer comes back
    free = SchemeConfig.ppsd(scheme.stage_boundaries, max_inflight=10**6)
    assert analytic.speedup(p, free, 1.0) > 3.7


def test_one_token_in_flight_never_beats_a_round_trip_per_token():
    scheme = SchemeConfig.ppsd([8, 16, 24, 32], max_inflight=1)
    rec = simulate(LONG_HOP, scheme, AcceptanceSpec.iid(1.0), tokens=500, engine="simpy").record
    c = ppsd_costs(LONG_HOP, scheme)
    per_token = c.fill_latency + c.hop  # enter, pass every stage, verdict back to stage 1
    assert rec.time_s == pytest.approx(499 * per_token + c.fill_latency, rel=1e-9)


def test_a_slack_bound_changes_nothing():
    # the default example's pipeline never holds more than k + 1 tokens: the numbers are the
    # unbounded ones, bit for bit (README's table), with the bound's bookkeeping on or off
    from ppsd_sim.acceptance import AcceptanceSampler
    from ppsd_sim.engines import simpy_ppsd

    p = HardwareProfile.uniform(32, 0.5e-3, 0.5, hop=20e-6, tick=30e-6, flush=40e-6)
    scheme = SchemeConfig.ppsd_even(32, 4)
    c, acc = ppsd_costs(p, scheme), AcceptanceSpec.iid(0.8)
    assert not bound_binds(c, scheme.inflight_limit, 10**9)
    on = simpy_ppsd.run_ppsd(c, AcceptanceSampler(acc, 1), 3000, limit=scheme.inflight_limit)
    off = simpy_ppsd.run_ppsd(c, AcceptanceSampler(acc, 1), 3000, limit=None)
    assert (on.time_s, on.busy_s, on.wasted_s) == (off.time_s, off.busy_s, off.wasted_s)
    assert analytic.ppsd_rate(p, scheme).schedule is None


def _brute_commits(c, m: int, n: int) -> list[float]:
    """The in-segment recurrence written out plainly, for n tokens (the oracle)."""
    k, e, h = c.k, c.exit_stage, c.hop
    busy = [c.busy_per_token(s) for s in range(k)]
    start = [[0.0] * k for _ in range(n)]
    commit = []
    for j in range(n):
        for s in range(k):
            t = start[j][s - 1] + c.compute[s - 1] + h if s else 0.0
            if j:
                t = max(t, start[j - 1][s] + busy[s])
            if s == 0 and j:
                t = max(t, start[j - 1][e] + c.compute[e] + c.ee_head + (h if e else 0.0))
                if j >= m:
                    t = max(t, commit[j - m] + h)
            start[j][s] = t
        commit.append(start[j][k - 1] + busy[k - 1])
    return commit


@pytest.mark.parametrize("scheme", SCHEMES, ids=[s.label() for s in SCHEMES])
def test_the_schedule_extends_its_period_exactly(scheme):
    c = ppsd_costs(LONG_HOP, scheme)
    m = scheme.inflight_limit
    sched = segment_schedule(c, m, 3000)
    assert sched.periodic_from is not None and sched.computed < 100  # found early
    j = np.arange(3000)
    assert sched.commit(j) == pytest.approx(np.array(_brute_commits(c, m, 3000)), rel=1e-12)


def test_a_limit_that_binds_only_past_the_computed_columns_gives_the_long_run_rate():
    # a slow later stage: stage 1 runs ahead, so even a limit of 10⁶ binds, but only after
    # ~10⁶ tokens; at α = 1 the closed form is the slowest circuit's gap (was inf)
    prof = HardwareProfile.uniform(24, 1e-3, 0.5).with_costs(hop=1.5e-4)
    scheme = SchemeConfig.ppsd([2, 20, 24], max_inflight=10**6)
    c = ppsd_costs(prof, scheme)
    want = 1.0 / max(c.accepted_gap, (c.fill_latency + c.hop) / 10**6)
    assert analytic.ppsd_tokens_per_s(prof, scheme, 1.0) == pytest.approx(want, rel=1e-12)
    rec = simulate(prof, scheme, AcceptanceSpec.iid(1.0), tokens=2000, engine="auto").record
    assert rec.notes["closed_form_speedup"] == pytest.approx(rec.speedup, rel=0.01)
