"""The speculative-sampling rule and the logit warping, against exact distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from ppsd_real import sampling
from ppsd_real.sampling import SamplingSpec, judge, residual, warp
from ppsd_sim.errors import ConfigError

SIGNIFICANCE = 1e-3  # a correct rule fails one of these tests once in 1,000 runs at most


def _dist(rng: np.random.Generator, n: int, sharp: float) -> torch.Tensor:
    return torch.softmax(torch.tensor(rng.normal(size=n) * sharp, dtype=torch.float64), 0)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"),
    [(1.0, None, 1.0), (0.7, None, 0.9), (1.3, 5, 1.0), (0.9, 8, 0.8), (2.0, None, 0.3)],
)
def test_warp_matches_the_transformers_warpers(temperature, top_k, top_p):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k is not None:
        x = TopKLogitsWarper(top_k)(None, x)
    if top_p < 1.0:
        x = TopPLogitsWarper(top_p)(None, x)
    want = torch.softmax(x, -1)
    got = warp(logits, SamplingSpec(temperature, top_k, top_p))
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.allclose(got.sum(-1), torch.ones(3, dtype=torch.float64))


def test_draw_follows_the_distribution_and_never_picks_a_zero():
    p = torch.tensor([0.0, 0.5, 0.0, 0.25, 0.25, 0.0], dtype=torch.float64)
    us = (np.arange(4000) + 0.5) / 4000
    counts = np.bincount([sampling.draw(p, float(u)) for u in us], minlength=6)
    assert counts[[0, 2, 5]].sum() == 0
    assert counts[1] == 2000 and counts[3] == 1000 and counts[4] == 1000
    assert sampling.draw(p, 1.0 - 1e-17) == 4  # the right end never falls on a zero


def test_keyed_uniforms_are_deterministic_and_distinct():
    a = [sampling.uniform(7, pos, sampling.ACCEPT) for pos in range(2000)]
    assert a == [sampling.uniform(7, pos, sampling.ACCEPT) for pos in range(2000)]
    assert a != [sampling.uniform(8, pos, sampling.ACCEPT) for pos in range(2000)]
    assert a != [sampling.uniform(7, pos, sampling.DRAFT) for pos in range(2000)]
    assert min(a) >= 0.0 and max(a) < 1.0
    assert abs(np.mean(a) - 0.5) < 0.03


def _committed(rule, p, q, n, seed=0):
    out = []
    for pos in range(n):
        x = sampling.draft_from(q, seed, pos)
        out.append(rule(x, p, q, seed, pos)[1])
    return np.bincount(out, minlength=len(p))


def _p_value(counts: np.ndarray, probs: torch.Tensor) -> float:
    expected = probs.numpy() * counts.sum()
    keep = expected > 0
    assert counts[~keep].sum() == 0, "a token of probability 0 was committed"
    return float(chisquare(counts[keep], expected[keep]).pvalue)


def _accept_if_equal_to_a_sample(draft, p, q, seed, pos):
    """The known bug: accept when the draft equals an independent sample of p (instead of with
    probability min(1, p/q)), else draw the replacement from the residual."""
    y = sampling.draw(p, sampling.uniform(seed, pos, sampling.ACCEPT))
    if draft == y:
        return True, draft
    return False, sampling.draw(residual(p, q), sampling.uniform(seed, pos, sampling.RESIDUAL))


def _accept_if_equal_commit_the_sample(draft, p, q, seed, pos):
    """Accept-if-equal that commits the sample itself: exact in distribution (every committed
    token IS a sample of p), only wasteful: it accepts Σ p·q of drafts, not Σ min(p, q)."""
    y = sampling.draw(p, sampling.uniform(seed, pos, sampling.ACCEPT))
    return draft == y, y


def _no_residual(draft, p, q, seed, pos):
    """The other known bug: on rejection sample p itself instead of norm(max(0, p − q))."""
    ok, _ = judge(draft, p, q, seed, pos)
    return ok, draft if ok else sampling.draw(p, sampling.uniform(seed, pos, sampling.RESIDUAL))


def test_exact_rule_commits_tokens_distributed_as_p_and_wrong_rules_are_caught():
    rng = np.random.default_rng(3)
    p, q = _dist(rng, 12, 1.2), _dist(rng, 12, 1.2)
    n = 4_000  # power: the no-residual bug sits ~4 SD beyond the 1e-3 critical value
    assert _p_value(_committed(judge, p, q, n), p) > SIGNIFICANCE
    # the same test, same sample size, rejects both classic mistakes
    assert _p_value(_committed(_no_residual, p, q, n), p) < SIGNIFICANCE
    assert _p_value(_committed(_accept_if_equal_to_a_sample, p, q, n), p) < SIGNIFICANCE
    # committing the independent sample is exact, so the distribution test must NOT flag it;
    # its tell is the acceptance rate (Σ p·q instead of Σ min(p, q) = 1 − TV)
    assert _p_value(_committed(_accept_if_equal_commit_the_sample, p, q, n), p) > SIGNIFICANCE

    def rate(rule):
        return np.mean([rule(sampling.draft_from(q, 0, i), p, q, 0, i)[0] for i in range(n)])

    assert abs(rate(judge) - sampling.expected_acceptance(p, q)) < 4 * np.sqrt(0.25 / n)
    assert abs(rate(_accept_if_equal_commit_the_sample) - float((p * q).sum())) < 4 * np.sqrt(
        0.25 / n
    )


def test_acceptance_probability_is_one_minus_total_variation():
    rng = np.random.default_rng(5)
    p, q = _dist(rng, 30, 2.0), _dist(rng, 30, 2.0)
    tv = 0.5 * float((p - q).abs().sum())
    assert sampling.expected_acceptance(p, q) == pytest.approx(1.0 - tv, abs=1e-12)
    assert sampling.expected_acceptance(p, p) == pytest.approx(1.0)
    r = residual(p, q)
    assert float(r.sum()) == pytest.approx(1.0) and float(r.min()) >= 0.0
    assert torch.equal(residual(p, p), p)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"temperature": -0.1}, "--temperature"),
        ({"temperature": float("nan")}, "--temperature"),
        ({"temperature": 1.0, "top_p": 0.0}, "--top-p"),
        ({"temperature": 1.0, "top_p": 1.5}, "--top-p"),
        ({"temperature": 1.0, "top_k": 0}, "--top-k"),
        ({"temperature": 1.0, "seed": 1.5}, "--seed"),
        ({"temperature": 1.0, "seed": -1}, "--seed"),
        ({"temperature": 0.0, "top_p": 0.9}, "--top-p"),
        ({"temperature": 0.0, "top_k": 5}, "--top-k"),
    ],
)
def test_bad_sampling_settings_name_the_flag(kwargs, flag):
    with pytest.raises(ConfigError) as err:
        SamplingSpec(**kwargs)
    assert err.value.field == flag


def test_greedy_is_not_warped():
    assert SamplingSpec().greedy and SamplingSpec().label() == "greedy"
    with pytest.raises(ConfigError):
        warp(torch.zeros(4), SamplingSpec())
    assert SamplingSpec(0.7, None, 0.9, 3).label() == "T=0.7 top-p=0.9 seed=3"
