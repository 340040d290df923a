"""The pure arithmetic of acceptance: survival, histograms, τ, marginal rates, Markov chains.

Plain numbers in, plain numbers out: no record types, so ``AcceptanceSpec`` (which needs a
summary α for its label) and ``ppsd_sim.acceptance`` (converters, samplers) both import it
without an import cycle. Definitions (GLOSSARY.md, "Acceptance semantics"):

- conditional per-position α_i = P(draft i accepted | drafts 1..i−1 accepted);
- survival S_i = α_1·…·α_i = P(at least i drafts accepted), S_0 = 1;
- histogram: counts[a] = rounds of γ drafts with a accepted (bonus token excluded);
- τ = Σ_{i=1..γ} S_i, mean accepted drafts per round (+1 with the bonus token);
- marginal rate = accepted ÷ judged drafts (a draft is judged when the full model's token for
  its position is known: drafts after the first rejection of a round are never judged).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ppsd_sim.errors import ConfigError


def survival(alphas: Sequence[float], gamma: int) -> np.ndarray:
    """S_0..S_γ for per-position α (the last α repeats past the list)."""
    if gamma < 1:
        raise ConfigError("gamma", f"must be >= 1, got {gamma}")
    if not len(alphas):
        raise ConfigError("alphas", "must not be empty")
    a = np.array([alphas[min(i, len(alphas) - 1)] for i in range(gamma)], dtype=float)
    return np.concatenate(([1.0], np.cumprod(a)))


def histogram_from_alphas(alphas: Sequence[float], gamma: int) -> np.ndarray:
    """P(a accepted drafts in a round of γ), a = 0..γ."""
    s = survival(alphas, gamma)
    return s - np.concatenate((s[1:], [0.0]))


def histogram_probabilities(counts: Sequence[float]) -> np.ndarray:
    """Counts (or probabilities) of rounds with 0..γ accepted drafts, normalised."""
    c = np.asarray(counts, dtype=float)
    if c.ndim != 1 or len(c) < 2 or (c < 0).any() or c.sum() <= 0:
        raise ConfigError("counts", "must be >= 2 non-negative counts with a positive total")
    return c / c.sum()


def per_position_from_histogram(counts: Sequence[float]) -> list[float]:
    """α_i = S_i / S_{i-1} from counts (or probabilities) of a = 0..γ accepted drafts.
    A position never reached (S_{i-1} = 0) gets α_i = 0."""
    p = histogram_probabilities(counts)
    s = p[::-1].cumsum()[::-1]  # S_i = P(a >= i), i = 0..γ
    return [float(s[i] / s[i - 1]) if s[i - 1] > 0 else 0.0 for i in range(1, len(s))]


def tau(alphas: Sequence[float], gamma: int, *, with_bonus: bool) -> float:
    """Mean accepted drafts per round (+1 for the bonus/corrected token if ``with_bonus``)."""
    return float(survival(alphas, gamma)[1:].sum()) + (1.0 if with_bonus else 0.0)


def marginal_rate_eesd(alphas: Sequence[float], gamma: int) -> float:
    """Accepted / judged drafts for EESD rounds of γ: Σ_{i=1..γ} S_i / Σ_{i=0..γ-1} S_i."""
    s = survival(alphas, gamma)
    return float(s[1:].sum() / s[:-1].sum())


def histogram_marginal_rate(counts: Sequence[float]) -> float:
    """Accepted ÷ judged drafts of the rounds a histogram counts (its own γ): the true mean
    acceptance of what was measured, which needs no assumption about drafts past γ."""
    p = histogram_probabilities(counts)
    gamma = len(p) - 1
    a = np.arange(gamma + 1)
    judged = np.where(a < gamma, a + 1, gamma)
    return float((a * p).sum() / (judged * p).sum())


def histogram_tau(counts: Sequence[float]) -> float:
    """Mean accepted drafts per round of a histogram (bonus excluded)."""
    p = histogram_probabilities(counts)
    return float((np.arange(len(p)) * p).sum())


def run_marginal_rate(alphas: Sequence[float]) -> float:
    """Long-run accepted ÷ judged drafts on a stream of judged drafts (the PPSD view) when
    position i accepts with α_i and the last α repeats past the list: a run is r accepts then
    one rejection, so the rate is E[r] / (E[r] + 1) with E[r] = Σ_i S_i."""
    if not len(alphas):
        raise ConfigError("alphas", "must not be empty")
    s = np.cumprod(np.asarray(alphas, dtype=float))
    last = float(alphas[-1])
    if last >= 1.0 and s[-1] > 0:
        return 1.0
    mean_run = float(s.sum() + (s[-1] * last / (1.0 - last) if last < 1.0 else 0.0))
    return mean_run / (mean_run + 1.0)


# ---- the two-state Markov chain ---------------------------------------------------------------
def markov_bounds(alpha: float) -> tuple[float, float]:
    """The lag-1 correlations ρ a two-state chain with stationary accept rate α can have:
    P(acc | acc) = α + ρ(1 − α) and P(acc | rej) = α(1 − ρ) must both lie in [0, 1]. The upper
    bound is open (ρ = 1 would never leave its first state)."""
    lo = -1.0
    if 0.0 < alpha < 1.0:
        lo = max(-alpha / (1.0 - alpha), 1.0 - 1.0 / alpha)
    return lo, 1.0


def markov_transitions(alpha: float, rho: float) -> tuple[float, float]:
    """(P(accept | previous accepted), P(accept | previous rejected)) of the chain."""
    return alpha + rho * (1.0 - alpha), alpha * (1.0 - rho)


def lag1_correlation(bits: Sequence[int] | np.ndarray) -> float | None:
    """Lag-1 autocorrelation of one 0/1 sequence (None if too short or constant): the Markov
    model's ρ estimated from a trace."""
    return pooled_lag1_correlation([bits])


def pooled_lag1_correlation(
    sequences: Sequence[Sequence[int] | np.ndarray],
) -> float | None:
    """Lag-1 autocorrelation of several 0/1 sequences of the same process (e.g. one per
    generated continuation): mean and variance over every value, products only over
    neighbours inside one sequence (never across the end of one and the start of the next).
    None if fewer than 3 values, no neighbour pair, or no variation."""
    seqs = [np.asarray(s, dtype=float).ravel() for s in sequences]
    x = np.concatenate(seqs) if seqs else np.zeros(0)
    pairs = sum(max(0, len(s) - 1) for s in seqs)
    if x.size < 3 or pairs == 0 or x.std() == 0:
        return None
    m = x.mean()
    num = sum(float(((s[1:] - m) * (s[:-1] - m)).sum()) for s in seqs if len(s) > 1)
    return float(num / pairs / x.var())


def rounds_from_positions(bits: Sequence[int] | np.ndarray, gamma: int) -> np.ndarray:
    """EESD rounds (accepted drafts in each, 0..γ) that a greedy drafter meets along a 0/1
    sequence of OUTPUT POSITIONS (1 = the drafter's token at that position equals the full
    model's, given the correct prefix). A round drafts the next γ positions; it ends at the
    first rejection (that position takes the verified token) or, after γ accepts, with the
    bonus token, whose position is therefore not drafted: the next round starts after it.
    An unfinished round at the end of the sequence is dropped."""
    if gamma < 1:
        raise ConfigError("gamma", f"must be >= 1, got {gamma}")
    x = np.asarray(bits).ravel()
    out: list[int] = []
    i, n = 0, len(x)
    while i < n:
        a = 0
        while a < gamma and i + a < n and x[i + a]:
            a += 1
        if a == gamma:
            out.append(gamma)
            i += gamma + 1  # the bonus position is not drafted
        elif i + a < n:
            out.append(a)  # rejected at position i + a, which takes the verified token
            i += a + 1
        else:
            break  # ran out of positions mid-round
    return np.asarray(out, dtype=np.int64)


def judged_outcomes(rounds: Sequence[int] | np.ndarray, gamma: int) -> np.ndarray:
    """The 0/1 outcomes of the judged drafts of EESD rounds, in order: a round with a < γ
    accepted drafts judged a accepts and one rejection; a round of γ judged γ accepts."""
    r = np.asarray(rounds, dtype=np.int64).ravel()
    if r.size and (r.min() < 0 or r.max() > gamma):
        raise ConfigError("rounds", f"accepted drafts per round must lie in 0..{gamma}")
    judged = np.where(r < gamma, r + 1, gamma)
    out = np.ones(int(judged.sum()), dtype=np.int64)
    out[(np.cumsum(judged) - 1)[r < gamma]] = 0
    return out
