"""Capacity planning: which scheme, exit layer, stage split and γ give the best predicted speed
for this profile, acceptance curve and number of devices.

The search ranks configurations with the simulator's closed forms (``ppsd_sim.analytic``: exact
long-run rates under i.i.d. acceptance when every stage has its own device), then confirms the
leaders with ``simulate(..., engine="auto")``.

Why PPSD needs no exhaustive search over stage boundaries: with exit after stage 1 (shown below
to dominate), a split's rate depends on it only through the accepted-draft gap
Π = max(draft period of stage 1, busiest later stage) — the rejected gap is the same for every
split with k stages. So for each (E, k) the best split is a min–max partition of layers [E, L)
into k − 1 contiguous stages, which a dynamic programme over boundaries solves exactly in
O(K·L²) for all E and k at once. Putting the exit after a later stage e > 1 only adds ticks
and hops to the draft loop and leaves fewer stages for the rest, so a scheme with the same
later stages and exit after stage 1 is at least as fast on fewer devices; ``brute_force``
(every split, every exit stage) checks this in the tests.

With a memory limit (``analysis.memory``) merging the draft stages may overflow a device, so
the draft part [0, E) takes the fewest stages that fit (``draft_cuts``) and the later layers
the min–max split among the stages that fit; brute force checks this too.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from analysis.curves import AcceptanceCurve
from analysis.memory import WeightBudget
from analysis.plan_record import TARGETS, Candidate, Plan
from ppsd_sim import analytic
from ppsd_sim.costs import contention, stage_busy
from ppsd_sim.errors import ConfigError
from ppsd_sim.predict import verify_extrapolation
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.simulate import simulate

SENSITIVITY = 0.05


# ---- PPSD stage split: min–max DP ---------------------------------------------------------------
def minmax_splits(
    profile: HardwareProfile,
    max_parts: int,
    slow: float,
    memory: WeightBudget | None = None,
    decoding: DecodingSettings = GREEDY,
) -> tuple[list[list[float]], list[list[int]]]:
    """best[m][a]: the smallest possible busiest-stage time when layers [a, L) are cut into m
    contiguous stages (the last one also runs the final head); cut[m][a] is the end of the
    first of those stages. Solves every start a and every m ≤ max_parts in O(max_parts·L²).
    With ``memory`` a stage whose weights do not fit its device costs ∞ (best stays ∞ when no
    split fits). ``decoding``: sampling, the last stage also warps p."""
    n = profile.n_layers
    inf = math.inf
    # every later stage's busy time from the one stage-cost formula, tabled once (O(L²)
    # entries) so the DP itself stays O(max_parts·L²) lookups
    table = [[inf] * (n + 1) for _ in range(n)]
    for a in range(n):
        for b in range(a + 1, n + 1):
            if memory is None or (
                memory.stage_gb(a, b, first=False, exit_=False, last=b == n) <= memory.device_gb
            ):
                table[a][b] = stage_busy(
                    profile,
                    a,
                    b,
                    first=False,
                    exit_=False,
                    last=b == n,
                    slow=slow,
                    decoding=decoding,
                )

    best = [[inf] * (n + 1) for _ in range(max_parts + 1)]
    cut = [[-1] * (n + 1) for _ in range(max_parts + 1)]
    for a in range(n):
        best[1][a] = table[a][n]
        cut[1][a] = n
    for m in range(2, max_parts + 1):
        for a in range(n - m + 1):
            for b in range(a + 1, n - m + 2):
                v = max(table[a][b], best[m - 1][b])
                if v < best[m][a] - 1e-15:
                    best[m][a], cut[m][a] = v, b
    return best, cut


def draft_cuts(memory: WeightBudget | None, exit_layer: int) -> tuple[int, ...] | None:
    """Where to cut layers [0, E) into the fewest stages that each fit (the first holds the
    embedding, the last the early-exit head): () for one stage, None if no cut fits. The draft
    period depends only on how many stages the draft crosses (their ticks and hops), not on
    where they are cut, and fewer draft stages leave more devices for the later layers: so the
    fewest is best. Without a memory limit this is always one stage (exit after stage 1)."""
    if memory is None:
        return ()
    cap, inf = memory.device_gb, math.inf
    e = exit_layer
    fewest, parent = [inf] * (e + 1), [-1] * (e + 1)
    fewest[0] = 0
    for b in range(1, e):  # prefixes [0, b) as whole non-final stages
        for a in range(b):
            if fewest[a] + 1 < fewest[b] and (
                memory.stage_gb(a, b, first=a == 0, exit_=False, last=False) <= cap
            ):
                fewest[b], parent[b] = fewest[a] + 1, a
    end, start = inf, -1
    for a in range(e):  # the exit stage [a, E) carries the early-exit head
        if fewest[a] + 1 < end and (
            memory.stage_gb(a, e, first=a == 0, exit_=True, last=False) <= cap
        ):
            end, start = fewest[a] + 1, a
    if start < 0:
        return None
    cuts, a = [], start
    while a > 0:
        cuts.append(a)
        a = parent[a]
    return tuple(reversed(cuts))


def split_boundaries(exit_layer: int, parts: int, cut: list[list[int]]) -> tuple[int, ...]:
    """Stage end layers: stage 1 = [0, E), then ``parts`` stages read back from ``cut``."""
    out, a = [exit_layer], exit_layer
    for m in range(parts, 0, -1):
        a = cut[m][a]
        out.append(a)
    return tuple(out)


# ---- the search ---------------------------------------------------------------------------------
def exit_of(scheme: SchemeConfig) -> int:
    """E, the layers a drafting scheme's drafter runs (AR drafts nothing and has none)."""
    e = scheme.draft_exit_layer
    if e is None:
        raise ConfigError("scheme", f"{scheme.label()} drafts nothing: it has no exit layer")
    return e


def alpha_status(curve: AcceptanceCurve, exit_layer: int) -> str:
    if exit_layer < curve.exits[0] or exit_layer > curve.exits[-1]:
        return "extrapolated"
    return "interpolated" if curve.interpolated(exit_layer) else "given"


def _candidate(
    profile: HardwareProfile, scheme: SchemeConfig, curve: AcceptanceCurve, ar_tps: float
) -> Candidate:
    if scheme.kind == "ar":
        return Candidate(scheme, 1, None, ar_tps, 1.0, "n/a")
    e = exit_of(scheme)
    alpha = curve.alpha(e)
    tps = analytic.tokens_per_s(profile, scheme, alpha, curve.decoding)
    verify = verify_extrapolation(profile, scheme)
    notes = (verify,) if verify else ()
    return Candidate(
        scheme, scheme.n_devices, alpha, tps, tps / ar_tps, alpha_status(curve, e), notes=notes
    )


def enumerate_candidates(
    profile: HardwareProfile,
    curve: AcceptanceCurve,
    devices: int,
    *,
    max_gamma: int = 12,
    exits: list[int] | None = None,
    memory: WeightBudget | None = None,
) -> list[Candidate]:
    """Every AR/EESD configuration and, for each (exit E, stages k ≤ devices), the best PPSD
    split — each scored by the closed form. Exits default to the curve's given range; pass
    ``exits`` to search beyond it (α is then held flat and tagged extrapolated). With
    ``memory`` only configurations whose weights fit every device they use are returned (AR
    first whenever it fits: it is also the speed reference)."""
    n = profile.n_layers
    devices = validate.integer("devices", devices, lo=1)
    max_gamma = validate.integer("max_gamma", max_gamma, lo=1, hi=64)
    if exits is None:  # only where α(E) was given or interpolated: never extrapolate silently
        exit_list = list(range(max(1, curve.exits[0]), min(n - 1, curve.exits[-1]) + 1))
    else:
        exit_list = sorted(set(exits))
    for i, e in enumerate(exit_list):
        validate.integer(f"exits[{i}]", e, lo=1, hi=n - 1)
    if memory is not None and memory.n_layers != n:
        raise ConfigError("memory", f"describes {memory.n_layers} layers, the profile {n}")
    ar_tps = analytic.ar_tokens_per_s(profile, curve.decoding)

    def fits(scheme: SchemeConfig) -> bool:
        return memory is None or memory.fits(scheme)

    out = [_candidate(profile, SchemeConfig.ar(), curve, ar_tps)]
    out = [c for c in out if fits(c.scheme)]
    for e in exit_list:
        for g in range(1, max_gamma + 1):
            if fits(SchemeConfig.eesd(e, g)):
                out.append(_candidate(profile, SchemeConfig.eesd(e, g), curve, ar_tps))
    max_k = min(devices, n)
    if max_k >= 2:
        slow = contention(profile, tuple(range(max_k)))  # one device per stage
        best, cut = minmax_splits(profile, max_k - 1, slow, memory, curve.decoding)
        for e in exit_list:
            draft = draft_cuts(memory, e)
            if draft is None:
                continue  # layers [0, E) cannot be held by any number of stages
            j = len(draft) + 1  # stages the draft crosses; the exit is after the j-th
            for k in range(j + 1, max_k + 1):
                if n - e < k - j:
                    break
                if best[k - j][e] == math.inf:
                    continue  # no split of the later layers into k - j stages fits
                bounds = (*draft, *split_boundaries(e, k - j, cut))
                scheme = SchemeConfig.ppsd(bounds, exit_stage=j)
                out.append(_candidate(profile, scheme, curve, ar_tps))
    return out


def _finish(
    profile: HardwareProfile,
    c: Candidate,
    sim_tokens: int,
    seed: int,
    decoding: DecodingSettings = GREEDY,
) -> Candidate:
    """Add break-even α, sensitivity to α ± 0.05 and a simulator confirmation, all decoded as
    the curve was measured (``decoding``)."""
    if c.scheme.kind == "ar":
        if sim_tokens:
            rec = simulate(profile, c.scheme, tokens=sim_tokens, seed=seed, engine="auto").record
            return _replace(c, simulated_speedup=rec.speedup, simulated_engine=rec.engine)
        return c
    alpha = c.alpha
    if alpha is None:
        raise ConfigError("alpha", f"{c.scheme.label()} needs an acceptance to be judged")
    lo, hi = max(0.0, alpha - SENSITIVITY), min(1.0, alpha + SENSITIVITY)
    changes: dict[str, Any] = {
        "break_even_alpha": analytic.break_even_alpha(profile, c.scheme, decoding),
        "speedup_alpha_lo": analytic.speedup(profile, c.scheme, lo, decoding),
        "speedup_alpha_hi": analytic.speedup(profile, c.scheme, hi, decoding),
    }
    if sim_tokens:
        rec = simulate(
            profile,
            c.scheme,
            AcceptanceSpec.iid(alpha).with_decoding(decoding),
            tokens=sim_tokens,
            seed=seed,
            engine="auto",
        ).record
        changes.update(simulated_speedup=rec.speedup, simulated_engine=rec.engine)
    return _replace(c, **changes)


def _replace(c: Candidate, **changes: Any) -> Candidate:
    from dataclasses import replace

    return replace(c, **changes)


def plan(
    profile: HardwareProfile,
    curve: AcceptanceCurve,
    devices: int,
    *,
    target: str = "max_speed",
    min_tokens_per_s: float | None = None,
    max_gamma: int = 12,
    top: int = 8,
    sim_tokens: int = 20_000,
    seed: int = 0,
    exits: list[int] | None = None,
    memory: WeightBudget | None = None,
) -> Plan:
    """Answer a capacity question. ``max_speed``: the fastest configurations on at most
    ``devices`` devices. ``min_devices``: the configurations reaching ``min_tokens_per_s`` on
    the fewest devices (then fastest first). With ``memory``, configurations whose weights do
    not fit a device are left out (speedups stay relative to single-device AR, which is then
    a hypothetical reference if it does not fit)."""
    if not isinstance(profile, HardwareProfile):
        raise ConfigError("profile", "must be a HardwareProfile")
    target = validate.choice("target", target, TARGETS)
    top = validate.integer("top", top, lo=1, hi=1000)
    sim_tokens = validate.integer("sim_tokens", sim_tokens, lo=0, hi=10**7)
    if target == "min_devices":
        if min_tokens_per_s is None:
            raise ConfigError("min_tokens_per_s", "is required for target 'min_devices'")
        min_tokens_per_s = validate.number(
            "min_tokens_per_s", min_tokens_per_s, lo=0.0, lo_open=True
        )
    cands = enumerate_candidates(
        profile, curve, devices, max_gamma=max_gamma, exits=exits, memory=memory
    )
    ar_tps = analytic.ar_tokens_per_s(profile, curve.decoding)
    best_kind: dict[str, Candidate] = {}
    for c in cands:
        if c.scheme.kind not in best_kind or c.tokens_per_s > best_kind[c.scheme.kind].tokens_per_s:
            best_kind[c.scheme.kind] = c
    message = "" if cands else f"no configuration on ≤ {devices} device(s) fits in memory"
    if target == "max_speed":
        ranked = sorted(cands, key=lambda c: (-c.tokens_per_s, c.devices))
    else:
        need = min_tokens_per_s
        assert need is not None  # required and validated above for this target
        ok = [c for c in cands if c.tokens_per_s >= need]
        ranked = sorted(ok, key=lambda c: (c.devices, -c.tokens_per_s))
        if not ranked and cands:
            b = max(cands, key=lambda c: c.tokens_per_s)
            message = (
                f"no configuration on ≤ {devices} device(s) reaches {min_tokens_per_s:g} tokens/s;"
                f" the fastest is {b.scheme.label()} at {b.tokens_per_s:.1f} tokens/s"
            )
    dec = curve.decoding
    chosen = tuple(_finish(profile, c, sim_tokens, seed, dec) for c in ranked[:top])
    best = {k: _finish(profile, c, 0, seed, dec) for k, c in best_kind.items()}
    return Plan(
        candidates=chosen,
        best_per_scheme=best,
        target=target,
        devices=devices,
        min_tokens_per_s=min_tokens_per_s,
        ar_tokens_per_s=ar_tps,
        evaluated=len(cands),
        curve=curve,
        profile_source=profile.provenance.source,
        message=message,
        sim_tokens=sim_tokens,
        memory="" if memory is None else memory.describe(),
    )


# ---- brute force (the tests' oracle) -----------------------------------------------------------
def brute_force(
    profile: HardwareProfile,
    curve: AcceptanceCurve,
    devices: int,
    *,
    max_gamma: int = 12,
    memory: WeightBudget | None = None,
) -> list[tuple[SchemeConfig, float]]:
    """Every AR, EESD(E, γ) and PPSD(any contiguous split, any exit stage) on ≤ ``devices``
    devices with its closed-form tokens/s (with ``memory``: those that fit). Exponential in L:
    small cases only."""
    out = _every_config(profile, curve, devices, max_gamma)
    return out if memory is None else [(s, t) for s, t in out if memory.fits(s)]


def _every_config(
    profile: HardwareProfile, curve: AcceptanceCurve, devices: int, max_gamma: int
) -> list[tuple[SchemeConfig, float]]:
    n = profile.n_layers
    dec = curve.decoding
    out = [(SchemeConfig.ar(), analytic.ar_tokens_per_s(profile, dec))]
    for e in range(1, n):
        for g in range(1, max_gamma + 1):
            s = SchemeConfig.eesd(e, g)
            out.append((s, analytic.tokens_per_s(profile, s, curve.alpha(e), dec)))
    for k in range(2, min(devices, n) + 1):
        for cuts in itertools.combinations(range(1, n), k - 1):
            for es in range(1, k):
                s = SchemeConfig.ppsd((*cuts, n), exit_stage=es)
                out.append((s, analytic.tokens_per_s(profile, s, curve.alpha(exit_of(s)), dec)))
    return out
