"""Invariants of the simulated schemes that hold for any inputs."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.simulate import simulate


@settings(max_examples=40, deadline=None)
@given(alpha=st.floats(0.0, 1.0), k=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_ideal_ppsd_never_slower_than_ar(alpha, k, seed):
    p = HardwareProfile.uniform(8 * k, 1e-3, 0.0)
    rec = simulate(
        p, SchemeConfig.ppsd_even(8 * k, k), AcceptanceSpec.iid(alpha), tokens=500, seed=seed
    ).record
    assert rec.speedup >= 1.0 - 1e-9
    assert rec.speedup <= k + 1e-9


def test_wasted_work_grows_as_alpha_falls_and_vanishes_at_one():
    p = HardwareProfile.uniform(16, 1e-3, 0.5, hop=1e-4, flush=1e-4)
    scheme = SchemeConfig.ppsd_even(16, 4)
    wasted = []
    for alpha in (1.0, 0.9, 0.6, 0.3):
        rec = simulate(p, scheme, AcceptanceSpec.iid(alpha), tokens=20_000, seed=2).record
        wasted.append(sum(rec.stage_wasted_s))
        if alpha == 1.0:
            assert rec.flushes == 0
            assert rec.stage_wasted_s == (0.0, 0.0, 0.0, 0.0)
    assert wasted == sorted(wasted)
    assert wasted[-1] > wasted[1] > 0


def test_last_stage_never_wastes_work_and_busy_is_bounded():
    p = HardwareProfile.uniform(12, 1e-3, 1.0, hop=2e-4, tick=1e-4, flush=3e-4)
    rec = simulate(p, SchemeConfig.ppsd([3, 7, 12]), AcceptanceSpec.iid(0.5), tokens=5000).record
    assert rec.stage_wasted_s[-1] == 0.0
    assert all(0 < f <= 1.0 + 1e-12 for f in rec.stage_busy_fraction)


def test_stages_sharing_one_device_cannot_beat_ar():
    p = HardwareProfile.uniform(16, 1e-3, 0.5)
    shared = SchemeConfig.ppsd([4, 8, 12, 16], devices=[0, 0, 0, 0])
    for alpha in (0.5, 1.0):
        rec = simulate(p, shared, AcceptanceSpec.iid(alpha), tokens=3000).record
        assert rec.speedup <= 1.0 + 1e-9
    two = simulate(
        p,
        SchemeConfig.ppsd([4, 8, 12, 16], devices=[0, 0, 1, 1]),
        AcceptanceSpec.iid(1.0),
        tokens=3000,
    )
    four = simulate(p, SchemeConfig.ppsd_even(16, 4), AcceptanceSpec.iid(1.0), tokens=3000)
    assert 1.0 < two.record.speedup < four.record.speedup


def test_timeline_spans_never_overlap_on_a_device():
    p = HardwareProfile.uniform(16, 1e-3, 0.5, hop=1e-4, flush=2e-4)
    scheme = SchemeConfig.ppsd([4, 8, 12, 16], devices=[0, 1, 0, 1])
    sim = simulate(p, scheme, AcceptanceSpec.iid(0.6), tokens=300, timeline=True)
    by_device: dict[int, list] = {}
    for sp in sim.spans:
        by_device.setdefault(scheme.devices[sp.stage], []).append(sp)
    assert set(by_device) == {0, 1}
    for spans in by_device.values():
        spans.sort(key=lambda s: s.start)
        for a, b in itertools.pairwise(spans):
            assert b.start >= a.end - 1e-12
    cats = {sp.category for sp in sim.spans}
    assert {"compute", "crop", "wasted"} <= cats


def test_same_seed_same_record_and_simulations_do_not_interfere():
    p = HardwareProfile.uniform(16, 1e-3, 0.5, hop=1e-4)
    scheme = SchemeConfig.ppsd_even(16, 4)
    acc = AcceptanceSpec.markov(0.7, 0.5)
    first = simulate(p, scheme, acc, tokens=5000, seed=11).record.to_dict()
    other = simulate(p, SchemeConfig.eesd(4, 3), acc, tokens=5000, seed=12).record  # noqa: F841
    again = simulate(p, scheme, acc, tokens=5000, seed=11).record.to_dict()
    assert json.dumps(first) == json.dumps(again)
    different = simulate(p, scheme, acc, tokens=5000, seed=12).record.to_dict()
    assert different["time_s"] != first["time_s"]


def test_ppsd_speed_depends_on_rejection_count_not_clustering():
    # each commit gap depends only on the judgement before it, so bursty and i.i.d. acceptance
    # with the same mean give the same PPSD speed (EESD, whose rounds do feel clustering, differs)
    p = HardwareProfile.uniform(16, 1e-3, 0.5, hop=1e-4, flush=1e-4)
    ppsd = SchemeConfig.ppsd_even(16, 4)
    iid = simulate(p, ppsd, AcceptanceSpec.iid(0.8), tokens=100_000, engine="fast").record
    bursty = simulate(
        p, ppsd, AcceptanceSpec.markov(0.8, 0.7), tokens=100_000, engine="fast"
    ).record
    assert bursty.speedup == pytest.approx(iid.speedup, rel=0.01)
    eesd = SchemeConfig.eesd(4, 8)
    e_iid = simulate(p, eesd, AcceptanceSpec.iid(0.8), tokens=100_000, engine="fast").record
    e_bursty = simulate(
        p, eesd, AcceptanceSpec.markov(0.8, 0.7), tokens=100_000, engine="fast"
    ).record
    assert abs(e_bursty.speedup / e_iid.speedup - 1) > 0.03


def test_observed_acceptance_matches_requested_per_position():
    p = HardwareProfile.uniform(16, 1e-3, 0.5)
    alphas = [0.9, 0.7, 0.5]
    acc = AcceptanceSpec.per_position(alphas)
    e = simulate(
        p, SchemeConfig.eesd(4, 3), acc, tokens=60_000, engine="fast"
    ).record.acceptance_observed
    assert e.per_position == pytest.approx(alphas, abs=0.02)
    assert sum(e.histogram) > 0 and len(e.histogram) == 4
    q = simulate(
        p, SchemeConfig.ppsd_even(16, 2), acc, tokens=60_000, engine="fast"
    ).record.acceptance_observed
    assert q.per_position[:4] == pytest.approx([0.9, 0.7, 0.5, 0.5], abs=0.02)


def test_eesd_cache_reuse_saves_time_when_verify_grows_with_tokens():
    p = HardwareProfile.uniform(16, 1e-3, 1.0, verify_tokens=(1, 8), verify_factor=(1.0, 2.0))
    acc = AcceptanceSpec.iid(0.8)
    reuse = simulate(p, SchemeConfig.eesd(8, 4), acc, tokens=10_000).record
    no_reuse = simulate(p, SchemeConfig.eesd(8, 4, cache_reuse=False), acc, tokens=10_000).record
    assert reuse.speedup > no_reuse.speedup
