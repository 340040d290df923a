"""Converters between the acceptance semantics found in the literature.

- conditional per-position α_i: P(draft i accepted | drafts 1..i-1 accepted);
- survival S_i = P(at least i drafts accepted) = α_1·…·α_i;
- histogram of accepted drafts per round of γ (bonus token excluded);
- τ: mean accepted drafts per round, with or without the bonus token;
- marginal rate: accepted / judged drafts (a draft is judged once the full model's token for
  its position is known; drafts after the first rejection of a round are never judged).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import brentq

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_spec import AcceptanceSpec


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


def per_position_from_histogram(counts: Sequence[float]) -> list[float]:
    """α_i = S_i / S_{i-1} from counts (or probabilities) of a = 0..γ accepted drafts.
    A position never reached (S_{i-1} = 0) gets α_i = 0."""
    c = np.asarray(counts, dtype=float)
    if c.ndim != 1 or len(c) < 2 or (c < 0).any() or c.sum() <= 0:
        raise ConfigError("counts", "must be >= 2 non-negative counts with a positive total")
    p = c / c.sum()
    s = p[::-1].cumsum()[::-1]  # S_i = P(a >= i), i = 0..γ
    return [float(s[i] / s[i - 1]) if s[i - 1] > 0 else 0.0 for i in range(1, len(s))]


def tau(alphas: Sequence[float], gamma: int, *, with_bonus: bool) -> float:
    """Mean accepted drafts per round (+1 for the bonus/corrected token if ``with_bonus``)."""
    return float(survival(alphas, gamma)[1:].sum()) + (1.0 if with_bonus else 0.0)


def marginal_rate_eesd(alphas: Sequence[float], gamma: int) -> float:
    """Accepted / judged drafts for EESD rounds of γ: Σ_{i=1..γ} S_i / Σ_{i=0..γ-1} S_i."""
    s = survival(alphas, gamma)
    return float(s[1:].sum() / s[:-1].sum())


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
    """Per-position α of a per_position or histogram spec (i.i.d.: a single α)."""
    if spec.kind == "per_position":
        return list(spec.alphas)
    if spec.kind == "histogram":
        alphas = per_position_from_histogram(spec.counts)
        # Beyond the profiled round length nothing is known: no further draft is accepted.
        return [*alphas, 0.0]
    if spec.kind in ("iid", "markov"):
        return [float(spec.alpha)]
    trace = np.asarray(spec.trace, dtype=float)
    return [float(trace.mean())]


def marginal_rate(spec: AcceptanceSpec) -> float:
    """Long-run accepted / judged drafts of a spec on a stream of judged drafts (PPSD view)."""
    if spec.kind in ("iid", "markov"):
        return float(spec.alpha)
    if spec.kind == "trace":
        return float(np.mean(spec.trace))
    alphas = alphas_of(spec)
    # A run is r accepts then one rejection: rate = E[r] / (E[r] + 1), E[r] = Σ_i S_i.
    s = np.cumprod(alphas)
    last = alphas[-1]
    if last >= 1.0 and s[-1] > 0:
        return 1.0
    mean_run = float(s.sum() + (s[-1] * last / (1.0 - last) if last < 1.0 else 0.0))
    return mean_run / (mean_run + 1.0)
