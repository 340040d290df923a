"""The SimPy model against the closed forms, where the closed forms' assumptions hold."""

from __future__ import annotations

import math

import pytest

from ppsd_sim import analytic
from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.simulate import simulate

N = 100_000
ALPHAS = (0.3, 0.6, 0.9, 0.99)


def test_ar_is_exact():
    p = HardwareProfile.uniform(12, 2e-3, 1.5, tick=1e-4)
    rec = simulate(p, SchemeConfig.ar(), tokens=1234).record
    assert rec.time_s == pytest.approx(1234 * (12 * 2e-3 + 3e-3 + 1e-4), rel=1e-12)
    assert rec.speedup == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("k", (2, 4, 8))
@pytest.mark.parametrize("alpha", ALPHAS)
def test_ideal_ppsd_matches_closed_form(k, alpha):
    # ideal: equal stages, no heads, no hop/tick/flush, exit after stage 1 (c = 1/k)
    p = HardwareProfile.uniform(16, 1e-3, 0.0)
    rec = simulate(
        p, SchemeConfig.ppsd_even(16, k), AcceptanceSpec.iid(alpha), tokens=N, seed=7
    ).record
    assert rec.engine == "simpy"
    assert rec.speedup == pytest.approx(analytic.ppsd_ideal_speedup(alpha, k), rel=0.01)


@pytest.mark.parametrize("gamma", (1, 4, 8))
@pytest.mark.parametrize("alpha", ALPHAS)
def test_eesd_matches_textbook_formula(gamma, alpha):
    p = HardwareProfile.uniform(16, 1e-3, 1.0, verify_tokens=(1, 16), verify_factor=(1.0, 1.6))
    scheme = SchemeConfig.eesd(4, gamma)
    fr = analytic.eesd_fractions(p, scheme)
    expected = analytic.eesd_speedup(alpha, gamma, fr["c"], fr["v"])
    rec = simulate(p, scheme, AcceptanceSpec.iid(alpha), tokens=N, seed=3).record
    assert rec.speedup == pytest.approx(expected, rel=0.01)


def test_general_ppsd_with_overheads_matches_renewal_formula():
    p = HardwareProfile.uniform(24, 1e-3, 2.0, ee_head=0.5e-3, hop=1e-4, tick=5e-5, flush=2e-4)
    scheme = SchemeConfig.ppsd([4, 14, 24])  # unequal stages
    for alpha in (0.5, 0.95):
        rec = simulate(p, scheme, AcceptanceSpec.iid(alpha), tokens=N, seed=1).record
        assert rec.speedup == pytest.approx(analytic.speedup(p, scheme, alpha), rel=0.01)


def test_eesd_slower_than_ar_where_closed_form_says_so():
    # c = 0.5 (exit at L/2, free heads), γ = 4, v = 1: break-even α ≈ 0.74
    p = HardwareProfile.uniform(8, 1e-3, 0.0)
    scheme = SchemeConfig.eesd(4, 4)
    assert analytic.eesd_break_even_alpha(4, 0.5, 1.0) == pytest.approx(0.7413, abs=1e-3)
    rec = simulate(p, scheme, AcceptanceSpec.iid(0.5), tokens=50_000).record
    assert rec.speedup < 1.0
    assert rec.speedup == pytest.approx(analytic.eesd_speedup(0.5, 4, 0.5, 1.0), rel=0.01)
    assert simulate(p, scheme, AcceptanceSpec.iid(0.95), tokens=50_000).record.speedup > 1.0


def test_closed_forms_known_values():
    assert analytic.expected_tokens_per_round(1.0, 4) == 5.0
    assert analytic.expected_tokens_per_round(0.0, 4) == 1.0
    assert analytic.expected_tokens_per_round(0.5, 1) == pytest.approx(1.5)
    assert analytic.ppsd_ideal_speedup(1.0, 4) == pytest.approx(4.0)
    assert analytic.ppsd_ideal_speedup(0.0, 8) == pytest.approx(1.0)
    # the notes: 3.81x needs at least 4 stages at α ≈ 0.98; 2 stages cap at 2x
    assert analytic.ppsd_ideal_speedup(0.98, 4) == pytest.approx(3.77, abs=0.01)
    assert analytic.ppsd_ideal_speedup(0.999, 2) < 2.0
    assert (
        analytic.eesd_break_even_alpha(4, 2.0, 1.0) is None
    )  # drafting dearer than AR: never pays
    assert math.isclose(analytic.ppsd_general_speedup(0.25, 1.0, 1.0, 1.0), 4.0)
