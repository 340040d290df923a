"""Acceptance in other tools' vocabularies, tail rules, and the two Markov chains: each
converter is checked against what a simulated run actually reports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ppsd_sim import analytic
from ppsd_sim.acceptance import AcceptanceSampler
from ppsd_sim.acceptance.semantics import (
    histogram_from_alphas,
    judged_chain_of_positions,
    lag1_correlation,
    marginal_rate,
    rounds_from_positions,
    tau,
)
from ppsd_sim.acceptance.vocabulary import (
    alpha_from_measure,
    conditional_from_unconditional,
    derive_alpha,
    unconditional_from_conditional,
)
from ppsd_sim.errors import ConfigError
from ppsd_sim.examples import example_profile
from ppsd_sim.records import AcceptanceSpec, SchemeConfig
from ppsd_sim.simulate import simulate


@pytest.mark.parametrize(("gamma", "alpha"), [(4, 0.7), (6, 0.9)])
def test_a_published_accepted_per_drafted_rate_read_as_alpha_under_predicts(gamma, alpha):
    # A tool that divides accepted drafts by DRAFTED tokens (LayerSkip's acceptance_rate,
    # vLLM's draft acceptance rate) reports τ/γ. Measure it on a simulated run, as that tool
    # would, then predict the run back from the number.
    p, scheme = example_profile(), SchemeConfig.eesd(8, gamma)
    run = simulate(p, scheme, AcceptanceSpec.iid(alpha), tokens=60_000, engine="fast").record
    hist = np.array(run.acceptance_observed.histogram)
    published = float((np.arange(gamma + 1) * hist).sum() / (hist.sum() * gamma))
    naive = analytic.speedup(p, scheme, published)  # the number read as ppsd's α
    fixed = analytic.speedup(
        p, scheme, alpha_from_measure(published, "accepted/drafted", gamma=gamma)
    )
    under = 1 - naive / run.speedup
    assert 0.36 <= under <= 0.47  # the under-prediction issue 10 reports
    assert fixed == pytest.approx(run.speedup, rel=0.01)  # converted: right


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(1, 12))
def test_every_gamma_measure_round_trips(alpha, gamma):
    t = tau([alpha], gamma, with_bonus=False)
    for value, measure in ((t / gamma, "accepted/drafted"), (t, "tau"), (t + 1, "tau+bonus")):
        back = alpha_from_measure(value, measure, gamma=gamma)
        assert back == pytest.approx(alpha, abs=1e-7)
    assert alpha_from_measure(alpha, "accepted/judged") == alpha


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(2, 16))
@example(1.0, 3)  # k ÷ (k − α(k − 1)) rounds to 3.0000000000000004 there: still the bound
def test_theoretical_speedup_inverts_the_ideal_pipeline(alpha, k):
    s = analytic.ppsd_ideal_speedup(alpha, k=k)  # k × tokens per tick
    back = alpha_from_measure(s, "theoretical-speedup", stages=k)
    assert back == pytest.approx(alpha, abs=1e-9)


def test_measures_refuse_what_they_cannot_mean():
    with pytest.raises(ConfigError, match="measured-gamma"):
        alpha_from_measure(0.5, "tau")
    with pytest.raises(ConfigError, match="measured-gamma: is not used"):
        alpha_from_measure(0.5, "accepted/judged", gamma=4)
    with pytest.raises(ConfigError, match="rate: must be <= 5"):
        alpha_from_measure(6, "tau+bonus", gamma=4, field="rate")
    with pytest.raises(ConfigError, match="must be >= 1"):
        alpha_from_measure(0.5, "theoretical-speedup", stages=4)
    with pytest.raises(ConfigError, match=r"must be <= 3, got 3\.01"):  # slack is rounding only
        alpha_from_measure(3.01, "theoretical-speedup", stages=3)
    d = derive_alpha(0.6, "accepted/drafted", gamma=4)
    assert "0.8058" in d.note and "γ=4" in d.note


def test_unconditional_per_position_rates_are_what_a_serving_engine_reports():
    # vLLM: accepted at position i ÷ rounds. Simulate EESD rounds with conditional α_i and
    # count it that way: the converter gives the α_i back.
    alphas = [0.9, 0.7, 0.5, 0.8]
    s = AcceptanceSampler(AcceptanceSpec.per_position(alphas), seed=2)
    rounds = s.rounds(200_000, 4)
    reported = [float((rounds >= i).mean()) for i in range(1, 5)]
    assert reported == pytest.approx(unconditional_from_conditional(alphas), abs=0.005)
    assert conditional_from_unconditional(reported) == pytest.approx(alphas, abs=0.01)
    with pytest.raises(ConfigError, match=r"alphas\[1\]: unconditional"):
        conditional_from_unconditional([0.5, 0.6])


def test_a_histogram_without_a_tail_rule_is_refused_past_its_gamma():
    spec = AcceptanceSpec.histogram([1, 2, 3, 4])
    s = AcceptanceSampler(spec, seed=0)
    assert len(s.rounds(10, 3)) == 10  # its own γ: fine
    with pytest.raises(ConfigError, match="tail"):
        s.rounds(10, 5)
    with pytest.raises(ConfigError, match="tail"):
        s.runs(10)
    with pytest.raises(ConfigError, match="tail"):
        simulate(example_profile(), SchemeConfig.ppsd_even(32, 4), spec, tokens=10)
    # no round reached γ: the tail can never matter, so no rule is needed
    assert len(AcceptanceSampler(AcceptanceSpec.histogram([3, 1, 0]), seed=0).runs(5)) == 5


@pytest.mark.parametrize(
    ("tail", "beyond"),
    [("zero", 0.0), ("repeat-last", 4 / 7), ("marginal", None)],
)
def test_tail_rules_set_the_acceptance_past_gamma(tail, beyond):
    counts = [1, 2, 3, 4]  # S = 1, .9, .7, .4 → α_3 = 4/7
    spec = AcceptanceSpec.histogram(counts, tail)
    if beyond is None:
        beyond = spec.mean_alpha  # the histogram's own accepted/judged
    runs = AcceptanceSampler(spec, seed=5).runs(200_000)
    reached = runs >= 3
    past = float((runs[reached] >= 4).mean())  # P(4th accepted | 3 accepted)
    assert past == pytest.approx(beyond, abs=0.01)
    assert spec.mean_alpha == pytest.approx((2 + 6 + 12) / (1 + 4 + 9 + 12))


def test_a_histogram_label_shows_its_true_mean():
    spec = AcceptanceSpec.histogram([0, 0, 0, 0, 10])
    assert spec.mean_alpha == 1.0
    assert "accepted/judged 1.000" in spec.label()
    with pytest.raises(ConfigError, match="tail"):
        marginal_rate(spec)
    assert marginal_rate(AcceptanceSpec.histogram([0, 0, 0, 0, 10], "zero")) == 0.8


def test_legacy_histogram_records_read_as_what_they_were_simulated_with():
    old = {
        "kind": "histogram",
        "counts": [1, 2],
        "semantics": "counts[a] = EESD rounds with a accepted drafts out of len(counts)-1 "
        "(bonus token excluded)",
    }
    assert AcceptanceSpec.from_dict(old).tail == "zero"
    new = AcceptanceSpec.histogram([1, 2], "repeat-last")
    assert AcceptanceSpec.from_dict(new.to_dict()) == new


def test_position_chain_rounds_skip_the_bonus_position():
    # the greedy 0/1 sequence per output position, and the rounds EESD meets along it
    bits = [1, 1, 1, 1, 1, 0, 1, 0]
    # round 1: positions 0-3 accepted, 4 is the bonus; round 2: 5 rejected; round 3: 6 ok, 7 no
    assert list(rounds_from_positions(bits, 4)) == [4, 0, 1]
    spec = AcceptanceSpec.markov(0.7, 0.4, chain="positions")
    s = AcceptanceSampler(spec, seed=1)
    rounds = np.concatenate([s.rounds(c, 4) for c in (1, 5, 300, 7, 5000)])
    ref_s = AcceptanceSampler(spec, seed=1)
    runs = ref_s.runs(8000)
    seq = np.concatenate([np.r_[np.ones(r, dtype=int), 0] for r in runs])
    ref = rounds_from_positions(seq, 4)
    assert (rounds == ref[: len(rounds)]).all()  # the same outcomes, chunking irrelevant
    judged = AcceptanceSampler(AcceptanceSpec.markov(0.7, 0.4), seed=1).rounds(len(rounds), 4)
    assert not (judged == rounds).all()  # the chains differ for EESD


def test_judged_chain_of_a_position_chain_matches_a_long_simulation():
    a, rho, g = 0.7, 0.4, 4
    runs = AcceptanceSampler(AcceptanceSpec.markov(a, rho, chain="positions"), seed=9).runs(150_000)
    seq = np.concatenate([np.r_[np.ones(r, dtype=int), 0] for r in runs])
    rounds = rounds_from_positions(seq, g)
    judged = np.concatenate([np.r_[np.ones(r, dtype=int), [0] if r < g else []] for r in rounds])
    mean, lag = judged_chain_of_positions(a, rho, g)
    assert float(judged.mean()) == pytest.approx(mean, abs=0.004)
    assert lag1_correlation(judged) == pytest.approx(lag, abs=0.01)
    assert mean != pytest.approx(a, abs=1e-3)  # the bonus positions it leaves out are accepts
    assert judged_chain_of_positions(0.7, 0.0, 4) == (0.7, 0.0)  # i.i.d.: nothing changes


def test_negative_burstiness_alternates_and_is_bounded():
    spec = AcceptanceSpec.markov(0.6, -0.4)
    runs = AcceptanceSampler(spec, seed=4).runs(50_000)
    seq = np.concatenate([np.r_[np.ones(r, dtype=int), 0] for r in runs])
    assert float(seq.mean()) == pytest.approx(0.6, abs=0.01)
    assert lag1_correlation(seq) == pytest.approx(-0.4, abs=0.02)
    with pytest.raises(ConfigError, match="burstiness"):
        AcceptanceSpec.markov(0.2, -0.5)  # P(acc | acc) would be negative


def test_histogram_from_alphas_is_what_rounds_sample():
    alphas = [0.9, 0.6]
    rounds = AcceptanceSampler(AcceptanceSpec.per_position(alphas), seed=3).rounds(100_000, 3)
    freq = np.bincount(rounds, minlength=4) / len(rounds)
    assert freq == pytest.approx(histogram_from_alphas(alphas, 3), abs=0.005)


def test_records_import_without_the_acceptance_package():
    # the records <-> acceptance import circle is gone: the record stands alone
    code = (
        "import sys; from ppsd_sim.records import AcceptanceSpec as A; "
        "A.histogram([1, 2]).label(); A.per_position([0.5]).label(); "
        "assert 'ppsd_sim.acceptance' not in sys.modules, sorted(sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
