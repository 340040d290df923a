"""Closed forms for AR, EESD and PPSD: instant what-ifs and the oracles the SimPy model is
tested against. Formulas and their assumptions are in PPSD_NOTES.md and GLOSSARY.md.

Two levels:
- textbook forms in (α, γ, c, v, k), as published (Leviathan et al. 2023; the PPSD notes);
- profile forms, from the same ``costs`` the simulators use. For i.i.d. acceptance they are
  exact long-run rates (renewal-reward), so the SimPy model must converge to them.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq

from ppsd_sim.costs import ar_costs, eesd_costs, ppsd_costs
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig


def expected_tokens_per_round(alpha: float, gamma: int) -> float:
    """E[N] = (1 − α^(γ+1)) / (1 − α): tokens committed per EESD round, bonus included."""
    alpha = validate.probability("alpha", alpha)
    gamma = validate.integer("gamma", gamma, lo=1)
    if alpha == 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def eesd_speedup(
    alpha: float, gamma: int, c: float, v: float = 1.0, overhead: float = 0.0
) -> float:
    """S_EESD = E[N] / (γ·c + v + o/T), all costs as fractions of one AR token time T."""
    c = validate.number("c", c, lo=0.0)
    v = validate.number("v", v, lo=0.0)
    overhead = validate.number("overhead", overhead, lo=0.0)
    denom = gamma * c + v + overhead
    if denom <= 0:
        raise ConfigError("c", "γ·c + v + o must be > 0")
    return expected_tokens_per_round(alpha, gamma) / denom


def eesd_break_even_alpha(
    gamma: int, c: float, v: float = 1.0, overhead: float = 0.0
) -> float | None:
    """The α at which EESD matches AR (speedup 1); None if EESD never pays (even at α = 1)
    and 0.0 if it always does."""
    f = lambda a: eesd_speedup(a, gamma, c, v, overhead) - 1.0  # noqa: E731
    if f(1.0) < 0:
        return None
    if f(0.0) >= 0:
        return 0.0
    return float(brentq(f, 0.0, 1.0, xtol=1e-12))


def ppsd_ideal_speedup(alpha: float, k: int | None = None, c: float | None = None) -> float:
    """S = 1 / (α·c + 1 − α); with k equal stages and exit after stage 1, c = 1/k and
    S = k / (k − α(k − 1)). Never below 1; tends to 1/c as α → 1."""
    alpha = validate.probability("alpha", alpha)
    if (k is None) == (c is None):
        raise ConfigError("k", "give exactly one of k (equal stages) or c (draft fraction)")
    if k is not None:
        c = 1.0 / validate.integer("k", k, lo=1)
    c = validate.number("c", c, lo=0.0, hi=1.0, lo_open=True)
    return 1.0 / (alpha * c + 1.0 - alpha)


def ppsd_general_speedup(
    accepted_gap: float, rejected_gap: float, alpha: float, t_ar: float
) -> float:
    """S ≈ T_AR / (α·accepted gap + (1 − α)·rejected gap) (PPSD_NOTES, real stages)."""
    alpha = validate.probability("alpha", alpha)
    gap = alpha * accepted_gap + (1.0 - alpha) * rejected_gap
    return t_ar / gap if gap > 0 else math.inf


# ---- profile forms ------------------------------------------------------------------------------
def ar_tokens_per_s(profile: HardwareProfile) -> float:
    t = ar_costs(profile).token
    return 1.0 / t if t > 0 else math.inf


def eesd_tokens_per_s(profile: HardwareProfile, scheme: SchemeConfig, alpha: float) -> float:
    """Long-run tokens/s of EESD under i.i.d. acceptance α (renewal reward over rounds)."""
    c = eesd_costs(profile, scheme)
    alpha = validate.probability("alpha", alpha)
    p_reject = 1.0 - alpha**c.gamma
    round_time = c.gamma * c.draft_step + c.verify + p_reject * c.flush
    return expected_tokens_per_round(alpha, c.gamma) / round_time if round_time > 0 else math.inf


def ppsd_tokens_per_s(profile: HardwareProfile, scheme: SchemeConfig, alpha: float) -> float:
    """Long-run tokens/s of PPSD under i.i.d. acceptance α, every stage on its own device.
    Each commit is followed by Π (draft accepted) or G + hop + flush (rejected)."""
    c = ppsd_costs(profile, scheme)
    if not c.dedicated:
        raise ConfigError(
            "scheme.devices",
            "the closed form assumes one device per stage; simulate shared devices",
        )
    alpha = validate.probability("alpha", alpha)
    gap = alpha * c.accepted_gap + (1.0 - alpha) * c.rejected_gap
    return 1.0 / gap if gap > 0 else math.inf


def tokens_per_s(profile: HardwareProfile, scheme: SchemeConfig, alpha: float) -> float:
    """Closed-form long-run tokens/s of any scheme under i.i.d. acceptance."""
    if scheme.kind == "ar":
        return ar_tokens_per_s(profile)
    if scheme.kind == "eesd":
        return eesd_tokens_per_s(profile, scheme, alpha)
    return ppsd_tokens_per_s(profile, scheme, alpha)


def speedup(profile: HardwareProfile, scheme: SchemeConfig, alpha: float) -> float:
    """Closed-form speedup over AR on the same profile."""
    return tokens_per_s(profile, scheme, alpha) / ar_tokens_per_s(profile)


def break_even_alpha(profile: HardwareProfile, scheme: SchemeConfig) -> float | None:
    """Smallest α at which the scheme is at least as fast as AR on this profile (None: never)."""
    f = lambda a: speedup(profile, scheme, a) - 1.0  # noqa: E731
    if f(1.0) < 0:
        return None
    if f(0.0) >= 0:
        return 0.0
    return float(brentq(f, 0.0, 1.0, xtol=1e-12))


def eesd_fractions(profile: HardwareProfile, scheme: SchemeConfig) -> dict[str, float]:
    """c, v and o/T of an EESD scheme on a profile, for the textbook formula."""
    c = eesd_costs(profile, scheme)
    t = ar_costs(profile).token
    return {"c": c.draft_step / t, "v": c.verify / t, "o": 0.0}
