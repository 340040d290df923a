"""Converters between the acceptance semantics ppsd's own models use.

The plain arithmetic (survival, histogram ↔ per-position α, τ, marginal rates, the Markov
chain's transitions) lives in ``ppsd_sim.records.acceptance_math`` and is re-exported here;
this module adds what needs a spec: the per-position α a sampler draws from (a histogram's
tail rule included), the long-run rate on a stream of judged drafts, and the Markov chain
over output positions seen as a chain over EESD's judged drafts. The vocabularies of other
tools (accepted ÷ drafted, vLLM's per-position rates, …) are in ``vocabulary``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_math import (
    histogram_from_alphas,
    histogram_marginal_rate,
    histogram_tau,
    judged_outcomes,
    lag1_correlation,
    marginal_rate_eesd,
    markov_bounds,
    markov_transitions,
    per_position_from_histogram,
    pooled_lag1_correlation,
    rounds_from_positions,
    run_marginal_rate,
    survival,
    tau,
)
from ppsd_sim.records.acceptance_spec import AcceptanceSpec

__all__ = [
    "alphas_of",
    "histogram_from_alphas",
    "histogram_marginal_rate",
    "histogram_tau",
    "iid_alpha_from_tau",
    "judged_chain_of_positions",
    "judged_outcomes",
    "lag1_correlation",
    "marginal_rate",
    "marginal_rate_eesd",
    "markov_bounds",
    "markov_transitions",
    "per_position_from_histogram",
    "pooled_lag1_correlation",
    "rounds_from_positions",
    "run_marginal_rate",
    "survival",
    "tau",
]


def iid_alpha_from_tau(tau_value: float, gamma: int, *, with_bonus: bool) -> float:
    """The i.i.d. α whose mean accepted length per round of γ equals ``tau_value``."""
    target = tau_value - (1.0 if with_bonus else 0.0)
    if not 0.0 <= target <= gamma:
        lo, hi = (1, gamma + 1) if with_bonus else (0, gamma)
        raise ConfigError("tau", f"must lie in [{lo}, {hi}] for gamma={gamma}, got {tau_value:g}")
    if target in (0.0, float(gamma)):
        return target / gamma
    return float(brentq(lambda a: tau([a], gamma, with_bonus=False) - target, 0.0, 1.0, xtol=1e-14))


def alphas_of(spec: AcceptanceSpec) -> list[float]:
    """Per-position α of a spec, the last one repeating past the list (i.i.d., Markov: a
    single α). A histogram's list ends with its tail rule's α; without a rule it ends with 0,
    which only matters where no round reached γ (samplers refuse the rest)."""
    if spec.kind == "per_position":
        return list(spec.alphas)
    if spec.kind == "histogram":
        alphas = per_position_from_histogram(spec.counts)
        if spec.tail == "repeat-last":
            return alphas
        if spec.tail == "marginal":
            return [*alphas, histogram_marginal_rate(spec.counts)]
        return [*alphas, 0.0]  # "zero", or no rule (then never reached: see needs_tail)
    if spec.alpha is not None:  # iid, markov
        return [float(spec.alpha)]
    trace = np.asarray(spec.trace, dtype=float)
    return [float(trace.mean())]


def marginal_rate(spec: AcceptanceSpec) -> float:
    """Long-run accepted / judged drafts of a spec on a stream of judged drafts (PPSD view).
    A histogram needs its tail rule here (PPSD runs go past its γ)."""
    if spec.kind in ("iid", "markov", "trace"):
        return spec.mean_alpha
    if spec.needs_tail(None) and spec.tail is None:
        raise ConfigError(
            "acceptance.tail", "a histogram's rate on unbounded runs needs a tail rule"
        )
    return run_marginal_rate(alphas_of(spec))


def _judged_chain_matrix(alpha: float, rho: float, gamma: int) -> tuple[np.ndarray, np.ndarray]:
    """The joint chain (outcome at a position, its place in the EESD round) of a Markov chain
    over output positions. States 0..2γ−1: (x, i) = draft i of a round with outcome x, index
    2·i + x; state 2γ + x: a bonus position with outcome x. Returns (transition matrix,
    outcome of each state)."""
    p11, p01 = markov_transitions(alpha, rho)
    n = 2 * gamma + 2
    m = np.zeros((n, n))
    x = np.array([s % 2 for s in range(n)], dtype=float)

    def to(i: int, prev: int) -> list[tuple[int, float]]:  # next position at place i
        p1 = p11 if prev else p01
        base = 2 * gamma if i == gamma else 2 * i
        return [(base + 1, p1), (base, 1.0 - p1)]

    for i in range(gamma):
        for out in (0, 1):
            s = 2 * i + out
            nxt = (i + 1 if i + 1 < gamma else gamma) if out else 0  # γ stands for the bonus
            for t, p in to(nxt, out):
                m[s, t] += p
    for out in (0, 1):
        for t, p in to(0, out):
            m[2 * gamma + out, t] += p
    return m, x


def judged_chain_of_positions(alpha: float, rho: float, gamma: int) -> tuple[float, float]:
    """(α, ρ) of EESD's judged drafts when acceptance is a Markov chain over output positions
    (α, ρ): the bonus position after γ accepts steps the chain but is not drafted, so the
    judged sequence is the position sequence with those positions left out. Returns its exact
    long-run accept rate and lag-1 correlation (from the stationary law of the joint chain of
    outcome and place in the round). The judged sequence is not exactly a Markov chain of
    order 1; ``AcceptanceSpec.markov(α', ρ')`` with these values matches its first two
    moments, and ``chain="positions"`` simulates the position chain itself."""
    lo, _ = markov_bounds(alpha)
    if not 0.0 <= alpha <= 1.0 or not lo <= rho < 1.0:
        raise ConfigError("burstiness", f"({alpha:g}, {rho:g}) is not a valid Markov chain")
    if gamma < 1:
        raise ConfigError("gamma", f"must be >= 1, got {gamma}")
    if alpha in (0.0, 1.0) or rho == 0.0:
        return alpha, rho
    m, x = _judged_chain_matrix(alpha, rho, gamma)
    n = len(x)
    # stationary law: π M = π, Σ π = 1
    a = np.vstack((m.T - np.eye(n), np.ones(n)))
    b = np.concatenate((np.zeros(n), [1.0]))
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    judged = np.arange(n) < 2 * gamma
    # from a judged position, the next judged one: one step, or two through a bonus position
    through_bonus = m[:, ~judged] @ m[~judged][:, judged]
    nxt = m[:, judged] + through_bonus  # rows: any state; columns: judged states
    pj = pi[judged] / pi[judged].sum()
    xj = x[judged]
    mean = float(pj @ xj)
    joint = float(pj @ (xj * (nxt[judged] @ xj)))
    var = mean * (1.0 - mean)
    return mean, float((joint - mean * mean) / var) if var > 0 else 0.0
