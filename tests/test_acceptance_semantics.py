"""Converters between acceptance semantics, each checked both ways and against sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppsd_sim.acceptance import (
    AcceptanceSampler,
    histogram_from_alphas,
    iid_alpha_from_tau,
    marginal_rate,
    marginal_rate_eesd,
    per_position_from_histogram,
    tau,
)
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import AcceptanceSpec


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 0.99), min_size=1, max_size=6))
def test_histogram_and_per_position_invert_each_other(alphas):
    gamma = len(alphas)
    hist = histogram_from_alphas(alphas, gamma)
    assert hist.sum() == pytest.approx(1.0)
    assert per_position_from_histogram(hist) == pytest.approx(alphas, rel=1e-9)
    # τ from the histogram equals τ from α
    assert float((np.arange(gamma + 1) * hist).sum()) == pytest.approx(
        tau(alphas, gamma, with_bonus=False)
    )


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(1, 12))
def test_tau_and_iid_alpha_invert_each_other(alpha, gamma):
    t = tau([alpha], gamma, with_bonus=True)
    assert t == pytest.approx((1 - alpha ** (gamma + 1)) / (1 - alpha) if alpha < 1 else gamma + 1)
    assert iid_alpha_from_tau(t, gamma, with_bonus=True) == pytest.approx(alpha, abs=1e-9)
    assert iid_alpha_from_tau(t - 1, gamma, with_bonus=False) == pytest.approx(alpha, abs=1e-9)


def test_marginal_rate_of_iid_is_alpha_and_of_positions_is_a_ratio():
    assert marginal_rate_eesd([0.7], 5) == pytest.approx(0.7)
    # α = (1, 0): the first draft always accepted, the second never: 1 accepted of 2 judged
    assert marginal_rate_eesd([1.0, 0.0], 2) == pytest.approx(0.5)
    assert marginal_rate(AcceptanceSpec.iid(0.3)) == 0.3
    assert marginal_rate(AcceptanceSpec.from_trace([1, 1, 0, 1])) == 0.75
    # per-position with a repeating tail: E[r] = 0.9 + 0.9·0.5/(1−0.5) = 1.8 → 1.8/2.8
    assert marginal_rate(AcceptanceSpec.per_position([0.9, 0.5])) == pytest.approx(1.8 / 2.8)


def test_sampled_rounds_match_the_histogram_they_came_from():
    counts = [10, 20, 30, 40]
    s = AcceptanceSampler(AcceptanceSpec.histogram(counts), seed=1)
    rounds = s.rounds(200_000, 3)
    freq = np.bincount(rounds, minlength=4) / len(rounds)
    assert freq == pytest.approx(np.array(counts) / 100, abs=0.005)


def test_markov_model_has_the_requested_mean_and_correlation():
    s = AcceptanceSampler(AcceptanceSpec.markov(0.8, 0.6), seed=3)
    runs = s.runs(100_000)
    outcomes = np.concatenate([np.r_[np.ones(r), 0] for r in runs[:20_000]])
    assert outcomes.mean() == pytest.approx(0.8, abs=0.01)
    x = outcomes - outcomes.mean()
    lag1 = float((x[1:] * x[:-1]).mean() / x.var())
    assert lag1 == pytest.approx(0.6, abs=0.03)


@pytest.mark.parametrize(
    "spec",
    [
        AcceptanceSpec.iid(0.6),
        AcceptanceSpec.markov(0.6, 0.5),
        AcceptanceSpec.per_position([0.9, 0.4]),
        AcceptanceSpec.from_trace([1, 0, 1, 1]),
    ],
)
def test_streams_do_not_depend_on_chunking(spec):
    a, b = AcceptanceSampler(spec, 9), AcceptanceSampler(spec, 9)
    assert (a.runs(500) == np.concatenate([b.runs(1), b.runs(200), b.runs(299)])).all()
    a, b = AcceptanceSampler(spec, 9), AcceptanceSampler(spec, 9)
    assert (
        a.rounds(500, 3) == np.concatenate([b.rounds(250, 3), b.rounds(1, 3), b.rounds(249, 3)])
    ).all()


def test_converter_inputs_are_checked():
    with pytest.raises(ConfigError, match="tau"):
        iid_alpha_from_tau(7.0, 4, with_bonus=True)
    with pytest.raises(ConfigError, match="counts"):
        per_position_from_histogram([0, 0, 0])
