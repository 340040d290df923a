"""Speedup and break-even grids over acceptance α × exit position E, from the closed forms.

They feed the heatmaps and the break-even chart; kept apart from drawing so the numbers can be
tested and tabulated without matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.planner import minmax_splits, split_boundaries
from ppsd_sim import analytic
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig


@dataclass(frozen=True)
class Grid:
    """speedup[i, j] at alpha[i] and exit[j]; ``stages[i, j]`` is the PPSD stage count used."""

    alphas: np.ndarray
    exits: np.ndarray
    speedup: np.ndarray
    title: str
    stages: np.ndarray | None = None


def eesd_grid(profile: HardwareProfile, gamma: int, alphas: np.ndarray) -> Grid:
    """EESD(E, γ) speedup over AR for every exit E = 1..L−1 (closed form, i.i.d. α)."""
    exits = np.arange(1, profile.n_layers)
    s = np.empty((len(alphas), len(exits)))
    for j, e in enumerate(exits):
        scheme = SchemeConfig.eesd(int(e), gamma)
        for i, a in enumerate(alphas):
            s[i, j] = analytic.speedup(profile, scheme, float(a))
    return Grid(np.asarray(alphas), exits, s, f"EESD, γ = {gamma}")


def ppsd_schemes(profile: HardwareProfile, max_stages: int) -> dict[tuple[int, int], SchemeConfig]:
    """For each (exit E, stages k ≤ max_stages): PPSD with stage 1 = layers [0, E) and the
    rest split by the planner's min–max rule."""
    n = profile.n_layers
    max_k = min(max_stages, n)
    _, cut = minmax_splits(profile, max(1, max_k - 1), profile.concurrency_slowdown)
    out = {}
    for e in range(1, n):
        for k in range(2, max_k + 1):
            if n - e >= k - 1:
                out[(e, k)] = SchemeConfig.ppsd(split_boundaries(e, k - 1, cut))
    return out


def ppsd_grid(profile: HardwareProfile, max_stages: int, alphas: np.ndarray) -> Grid:
    """Best PPSD speedup with at most ``max_stages`` stages (one device each), exit after
    stage 1 at E; records which k won in each cell."""
    exits = np.arange(1, profile.n_layers)
    schemes = ppsd_schemes(profile, max_stages)
    s = np.full((len(alphas), len(exits)), np.nan)
    ks = np.zeros((len(alphas), len(exits)), dtype=int)
    for (e, k), scheme in schemes.items():
        j = e - 1
        for i, a in enumerate(alphas):
            v = analytic.speedup(profile, scheme, float(a))
            if not v <= s[i, j]:  # also replaces NaN
                s[i, j], ks[i, j] = v, k
    return Grid(np.asarray(alphas), exits, s, f"PPSD, best of k ≤ {max_stages} stages", ks)


def break_even_curves(
    profile: HardwareProfile, gammas: tuple[int, ...], stages: tuple[int, ...]
) -> dict[str, list[float | None]]:
    """Break-even α (speedup = 1) at each exit E = 1..L−1, per EESD γ and PPSD stage count;
    None where the scheme never reaches AR speed."""
    n = profile.n_layers
    out: dict[str, list[float | None]] = {}
    for g in gammas:
        out[f"EESD γ={g}"] = [
            analytic.break_even_alpha(profile, SchemeConfig.eesd(e, g)) for e in range(1, n)
        ]
    schemes = ppsd_schemes(profile, max(stages) if stages else 2)
    for k in stages:
        out[f"PPSD k={k}"] = [
            analytic.break_even_alpha(profile, schemes[(e, k)]) if (e, k) in schemes else None
            for e in range(1, n)
        ]
    return out
