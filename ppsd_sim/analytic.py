"""Closed forms for AR, EESD and PPSD: instant what-ifs and the oracles the SimPy model is
tested against. Formulas and their assumptions are in PPSD_NOTES.md and GLOSSARY.md.

Two levels:
- textbook forms in (α, γ, c, v, k), as published (Leviathan et al. 2023; the PPSD notes);
- profile forms, from the same ``costs`` the simulators use. For i.i.d. acceptance they are
  exact long-run rates (renewal-reward), so the SimPy model must converge to them.

The textbook PPSD forms (``ppsd_ideal_speedup``, ``ppsd_general_speedup``) assume no bound on
the tokens in flight. The profile form honours ``SchemeConfig.inflight_limit`` (what the real
runner allows): while the bound is slack it is T / (α·Π + (1 − α)·(G + hop + flush)); where it
binds, the commit times inside a segment come from ``ppsd_sim.schedule`` and the same renewal
reward is summed over them (``PpsdRate``), still exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ppsd_sim.costs import PpsdCosts, ar_costs, eesd_costs, ppsd_costs
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.schedule import SegmentSchedule, segment_schedule

#: columns of the bounded schedule computed before giving up on finding its period
_MAX_TRANSIENT = 1_000_000


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
    S = k / (k − α(k − 1)). Never below 1; tends to 1/c as α → 1. Assumes no bound on the
    tokens in flight (with no hop it needs at most k + 1, the real runner's default)."""
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
    """S ≈ T_AR / (α·accepted gap + (1 − α)·rejected gap) (PPSD_NOTES, real stages; no bound
    on the tokens in flight: see ``ppsd_tokens_per_s`` for the bounded form)."""
    alpha = validate.probability("alpha", alpha)
    gap = alpha * accepted_gap + (1.0 - alpha) * rejected_gap
    return t_ar / gap if gap > 0 else math.inf


# ---- profile forms ------------------------------------------------------------------------------
def ar_tokens_per_s(profile: HardwareProfile, decoding: DecodingSettings = GREEDY) -> float:
    t = ar_costs(profile, decoding).token
    return 1.0 / t if t > 0 else math.inf


def eesd_tokens_per_s(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    alpha: float,
    decoding: DecodingSettings = GREEDY,
) -> float:
    """Long-run tokens/s of EESD under i.i.d. acceptance α (renewal reward over rounds)."""
    c = eesd_costs(profile, scheme, decoding)
    alpha = validate.probability("alpha", alpha)
    p_reject = 1.0 - alpha**c.gamma
    round_time = c.gamma * c.draft_step + c.verify + p_reject * c.flush
    return expected_tokens_per_round(alpha, c.gamma) / round_time if round_time > 0 else math.inf


@dataclass(frozen=True)
class PpsdRate:
    """PPSD's long-run commit rate on dedicated devices as a function of i.i.d. α, for one
    profile and scheme (built once: the in-segment schedule does not depend on α).

    A segment is a verified token and the r accepted drafts behind it (P(r) = α^r(1 − α)),
    then a rejection; it commits r + 1 tokens and lasts C_r + hop + flush, C_r being the
    commit of its rejected draft's verdict. Renewal reward: rate = E[r + 1] / E[C_r + hop +
    flush]. Unbounded (or a slack bound): C_r = G + r·Π."""

    costs: PpsdCosts
    limit: int
    schedule: SegmentSchedule | None  # None: the bound never changes a commit time

    def tokens_per_s(self, alpha: float) -> float:
        alpha = validate.probability("alpha", alpha)
        c = self.costs
        if self.schedule is None:
            gap = alpha * c.accepted_gap + (1.0 - alpha) * c.rejected_gap
            return 1.0 / gap if gap > 0 else math.inf
        sch, m = self.schedule, self.limit
        if alpha == 1.0:  # one endless segment: the periodic regime's gap
            gap = sch.shift / m if sch.periodic_from is not None else _long_run_gap(c, m)
            return 1.0 / gap if gap > 0 else math.inf
        expected_c = _expected_commit(sch, alpha, c)
        seg = expected_c + c.hop + c.flush
        return (1.0 / (1.0 - alpha)) / seg if seg > 0 else math.inf


def _long_run_gap(c: PpsdCosts, limit: int) -> float:
    """The commit gap of an endless segment: the slowest critical circuit of the max-plus
    system, a stage or the draft loop (Π) or the in-flight loop ((G + hop) ÷ M); see
    ``ppsd_sim.schedule``. Used where no period was found within the computed columns (e.g. a
    limit of 10⁶ that binds only after 10⁶ tokens)."""
    return max(c.accepted_gap, (c.fill_latency + c.hop) / limit)


def _last_gap(sch: SegmentSchedule, c: PpsdCosts) -> float:
    if sch.computed - 1 - sch.limit < 0:  # fewer columns than the limit: it never bound
        return _long_run_gap(c, sch.limit)
    j = np.array([sch.computed - 1 - sch.limit, sch.computed - 1])
    cj = sch.commit(j)
    return float(cj[1] - cj[0]) / sch.limit


def _expected_commit(sch: SegmentSchedule, alpha: float, c: PpsdCosts) -> float:
    """E[C_r] for r ~ Geometric: P(r) = α^r(1 − α), from the transient columns and, past them,
    the periodic part summed in closed form (C_{r+qM} = C_r + q·D)."""
    m = sch.limit
    r0 = sch.periodic_from if sch.periodic_from is not None else sch.computed
    r = np.arange(r0)
    w = (1.0 - alpha) * alpha**r
    total = float((w * sch.commit(r)).sum()) if r0 else 0.0
    if sch.periodic_from is None:  # no period found: the rest at the last gap (negligible)
        tail_w = alpha**r0
        return total + tail_w * (
            float(sch.commit(np.array([r0 - 1]))[0]) + _last_gap(sch, c) / (1 - alpha)
        )
    i = np.arange(m)
    am = alpha**m
    base = (1.0 - alpha) * alpha ** (r0 + i)
    cyc = sch.commit(r0 + i)
    total += float((base * (cyc / (1.0 - am) + sch.shift * am / (1.0 - am) ** 2)).sum())
    return total


def ppsd_rate(
    profile: HardwareProfile, scheme: SchemeConfig, decoding: DecodingSettings = GREEDY
) -> PpsdRate:
    """The long-run rate model of a PPSD scheme whose stages have one device each."""
    c = ppsd_costs(profile, scheme, decoding)
    if not c.dedicated:
        raise ConfigError(
            "scheme.devices",
            "the closed form assumes one device per stage; simulate shared devices",
        )
    limit = scheme.inflight_limit
    return PpsdRate(c, limit, _bounded_schedule(c, limit))


def _bounded_schedule(c: PpsdCosts, limit: int) -> SegmentSchedule | None:
    """The bounded in-segment schedule, or None when every commit time equals the unbounded
    G + r·Π (then the plain formula is exact and stays bit-for-bit what it was)."""
    G, pi = c.fill_latency, c.accepted_gap
    if G + c.hop <= limit * pi * (1 + 1e-12):  # (equal up to rounding: still linear)
        # The bound holds stage 1's start of token j until G + (j − M)·Π + hop <= j·Π: tokens
        # still enter no later than one per Π, the slowest stage's time per token, so none
        # queues and every commit stays G + j·Π (a tandem line's departures only grow with its
        # arrivals). Π >= P_e, so this holds too where stage 1 paces the pipeline. Sharp: with
        # one slot fewer the schedule changes (tests/test_schedule_bound.py). Without this test
        # a bound far beyond any segment (M = 10⁶) costs M columns of the schedule, seconds.
        return None
    sch = segment_schedule(c, limit, _MAX_TRANSIENT)
    top = (sch.periodic_from if sch.periodic_from is not None else sch.computed - limit) + limit
    r = np.arange(max(top, 1))
    linear = G + r * pi
    tol = 1e-12 * max(1.0, float(np.abs(linear).max()))
    same = np.abs(sch.commit(r) - linear).max() <= tol
    if same and sch.periodic_from is not None and abs(sch.shift - limit * pi) <= tol:
        return None
    return sch


def ppsd_tokens_per_s(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    alpha: float,
    decoding: DecodingSettings = GREEDY,
) -> float:
    """Long-run tokens/s of PPSD under i.i.d. acceptance α, every stage on its own device,
    at most ``scheme.inflight_limit`` tokens in flight (see ``PpsdRate``)."""
    return ppsd_rate(profile, scheme, decoding).tokens_per_s(alpha)


def tokens_per_s(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    alpha: float,
    decoding: DecodingSettings = GREEDY,
) -> float:
    """Closed-form long-run tokens/s of any scheme under i.i.d. acceptance; ``decoding``
    adds the profile's sampling costs when it samples (``ppsd_sim.costs``)."""
    if scheme.kind == "ar":
        return ar_tokens_per_s(profile, decoding)
    if scheme.kind == "eesd":
        return eesd_tokens_per_s(profile, scheme, alpha, decoding)
    return ppsd_tokens_per_s(profile, scheme, alpha, decoding)


def speedup(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    alpha: float,
    decoding: DecodingSettings = GREEDY,
) -> float:
    """Closed-form speedup over AR decoded the same way on the same profile."""
    return tokens_per_s(profile, scheme, alpha, decoding) / ar_tokens_per_s(profile, decoding)


def break_even_alpha(
    profile: HardwareProfile, scheme: SchemeConfig, decoding: DecodingSettings = GREEDY
) -> float | None:
    """Smallest α at which the scheme is at least as fast as AR on this profile (None: never)."""
    if scheme.kind == "ppsd":
        rate, ar = ppsd_rate(profile, scheme, decoding), ar_tokens_per_s(profile, decoding)
        f = lambda a: rate.tokens_per_s(a) / ar - 1.0  # noqa: E731
    else:
        f = lambda a: speedup(profile, scheme, a, decoding) - 1.0  # noqa: E731
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
