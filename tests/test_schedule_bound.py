"""The in-flight bound changes PPSD's in-segment schedule exactly when M·Π < G + hop, so the
closed form skips computing a schedule that cannot differ (a bound of 10⁶ once cost seconds)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppsd_sim import analytic
from ppsd_sim.costs import PpsdCosts, ppsd_costs
from ppsd_sim.records import HardwareProfile, SchemeConfig
from ppsd_sim.schedule import segment_schedule

cost = st.floats(0.01, 10.0)


@st.composite
def pipelines(draw) -> PpsdCosts:
    k = draw(st.integers(2, 6))
    return PpsdCosts(
        compute=tuple(draw(st.lists(cost, min_size=k, max_size=k))),
        ee_head=draw(st.floats(0.0, 2.0)),
        final_head=draw(st.floats(0.0, 2.0)),
        hop=draw(st.floats(0.0, 2.0)),
        flush=0.0,
        exit_stage=draw(st.integers(0, k - 2)),
        devices=tuple(range(k)),
    )


def _linear(c: PpsdCosts, limit: int) -> bool:
    r = np.arange(300)
    lin = c.fill_latency + r * c.accepted_gap
    got = segment_schedule(c, limit, 300).commit(r)
    return bool(np.abs(got - lin).max() <= 1e-9 * max(1.0, float(lin.max())))


@settings(max_examples=150, deadline=None)
@given(pipelines(), st.integers(-2, 3))
def test_the_bound_changes_the_schedule_exactly_below_its_threshold(c, offset):
    need = int(np.ceil((c.fill_latency + c.hop) / c.accepted_gap))
    limit = need + offset
    if limit < 1:
        return
    assert _linear(c, limit) == (c.fill_latency + c.hop <= limit * c.accepted_gap * (1 + 1e-12))


def test_an_unreachable_bound_costs_nothing_and_changes_nothing():
    # a fast first stage feeding slow later ones: stage 1 runs ahead, the bound never binds
    p = HardwareProfile.uniform(24, 1e-3, 1.2, hop=1.5e-4, tick=6e-5, flush=2.5e-4)
    scheme = SchemeConfig.ppsd([2, 20, 24], max_inflight=10**6)
    t0 = time.perf_counter()
    got = analytic.speedup(p, scheme, 0.5)
    assert time.perf_counter() - t0 < 0.5  # was 7 s: 10⁶ columns of the bounded schedule
    c = ppsd_costs(p, scheme)  # the unbounded formula: T ÷ (α·Π + (1 − α)·rejected gap)
    assert got == pytest.approx(p.ar_token_time() / (0.5 * c.accepted_gap + 0.5 * c.rejected_gap))
