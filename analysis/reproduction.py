"""Published numbers beside what the model gives for the same inputs.

Sources are the ones collected in ../shared/PPSD_NOTES.md ("Public numbers" and the prototype
table); each row cites its source and says whether the model agrees, disagrees or cannot say
(when the publication does not give the inputs the model needs, the row states what it assumed).
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.optimize import brentq

from ppsd_sim import analytic
from ppsd_sim.records.profile import HardwareProfile, Provenance
from ppsd_sim.records.scheme import SchemeConfig

PAPER = "PPSD paper abstract, arXiv 2509.19368"
LAYERSKIP = "LayerSkip, arXiv 2404.16710"
LEVIATHAN = "Leviathan et al., arXiv 2211.17192"
REIMPL = "independent PPSD re-implementation, arXiv 2605.30852"
NOTES = "PPSD_NOTES.md (algebra)"
PROTOTYPE = "PPSD_NOTES.md prototype, 2-core CPU, 2 stages"


@dataclass(frozen=True)
class Row:
    """One comparison. ``published`` is what the source reports; ``model`` what our closed
    forms give for the inputs in ``inputs`` (assumptions spelled out there)."""

    claim: str
    source: str
    published: str
    inputs: str
    model: str
    verdict: str  # agrees | consistent | cannot say | disagrees
    detail: str


def _alpha_for_ideal(target: float, k: int) -> float | None:
    """α at which the ideal k-stage PPSD speedup reaches ``target`` (None: above the cap k)."""
    if target >= k:
        return None
    return (k - k / target) / (k - 1)


def _alpha_for_eesd(target: float, gamma: int, c: float, v: float) -> float | None:
    f = lambda a: analytic.eesd_speedup(a, gamma, c, v) - target  # noqa: E731
    if f(1.0) < 0 or f(0.0) > 0:
        return None
    return float(brentq(f, 0.0, 1.0, xtol=1e-10))


def prototype_profile(concurrency_slowdown: float = 1.0) -> HardwareProfile:
    """The notes' prototype costs as a hand profile: 8 layers × 760 µs (middle of 740–780),
    norm + LM head 345 µs (used for both heads), pipe one-way 45 µs, crop 35 µs."""
    return HardwareProfile.uniform(
        8,
        760e-6,
        345 / 760,
        hop=45e-6,
        flush=35e-6,
        provenance=Provenance(
            source="hand",
            device="2-core CPU (prototype in PPSD_NOTES.md)",
            model="random-weight Llama, 8 layers, hidden 384, vocab 4096",
            latency_context="unknown",
            notes="costs transcribed from PPSD_NOTES.md",
        ),
    ).with_costs(concurrency_slowdown=concurrency_slowdown)


def _tick_break_even(tick: float, k: int, layers: int, alpha: float) -> float:
    """All-layer compute time T below which a k-stage PPSD with this per-tick cost is slower
    than AR (equal layers, exit after stage 1, heads and hops ignored)."""

    def f(total: float) -> float:
        prof = HardwareProfile.uniform(layers, total / layers, 0.0, tick=tick)
        return analytic.speedup(prof, SchemeConfig.ppsd_even(layers, k), alpha) - 1.0

    return float(brentq(f, 1e-6, 10.0, xtol=1e-9))


def rows() -> list[Row]:
    """The reproduction table, computed fresh from the closed forms."""
    out: list[Row] = []
    a4 = _alpha_for_ideal(3.81, 4)
    out.append(
        Row(
            "best PPSD speedup 3.81×",
            PAPER,
            "3.81×",
            "ideal PPSD, k equal stages, exit after stage 1",
            f"cap k× (k = 2 → 2.00×); at k = 4 needs α ≥ {a4:.3f}",
            "consistent",
            "Only reachable with ≥ 4 stages and near-perfect acceptance; the authors' README "
            "cuts Vicuna-7B into 4 blocks, which fits.",
        )
    )
    a4lo, a3lo = _alpha_for_ideal(2.01, 4), _alpha_for_ideal(2.01, 3)
    out.append(
        Row(
            "lowest PPSD speedup 2.01×",
            PAPER,
            "2.01×",
            "ideal PPSD, k equal stages",
            f"k = 2 cannot (cap 2.00×); k = 3 needs α ≥ {a3lo:.3f}, k = 4 needs α ≥ {a4lo:.3f}",
            "consistent",
            "Plausible acceptance for a trained early-exit head; the paper's α per benchmark is "
            "not public, so the model cannot check each benchmark.",
        )
    )
    be = analytic.eesd_break_even_alpha(4, 0.5, 1.0)
    out.append(
        Row(
            "EESD break-even α ≈ 0.74 at c = 0.5, γ = 4, v = 1",
            NOTES,
            "≈ 0.74",
            "c = 0.5, γ = 4, v = 1, no overhead",
            f"{be:.3f}",
            "agrees" if be is not None and abs(be - 0.74) < 0.01 else "disagrees",
            "S_EESD = E[N]/(γc + v) with E[N] = (1 − α^(γ+1))/(1 − α).",
        )
    )
    parts = []
    ok = True
    for c in (0.125, 0.25, 0.5):
        best = min(
            b for g in range(1, 33) if (b := analytic.eesd_break_even_alpha(g, c, 1.0)) is not None
        )
        parts.append(f"c = {c:g}: {best:.3f}")
        ok &= abs(best - c) < 1e-6
    out.append(
        Row(
            "speculative decoding needs α > c for some γ",
            LEVIATHAN,
            "α > c",
            "v = 1, γ = 1…32; lowest break-even α over γ",
            "; ".join(parts),
            "agrees" if ok else "disagrees",
            "The lowest break-even is at γ = 1, where S = (1 + α)/(1 + c) = 1 exactly at α = c.",
        )
    )
    en = analytic.expected_tokens_per_round(0.019, 1)
    gam = {g: analytic.eesd_speedup(0.019, g, 0.25, 1.0) for g in (4, 8, 12)}
    need = (analytic.expected_tokens_per_round(0.019, 8) / 0.31 - 1.0) / 0.25
    out.append(
        Row(
            "EESD slows down 3× at acceptance 0.019",
            f"{LAYERSKIP} (development log)",
            "0.31×",
            "α = 0.019; assumed exit 8 of 32 (c = 0.25), v = 1; γ not published",
            ", ".join(f"γ = {g}: {s:.2f}×" for g, s in gam.items()),
            "cannot say",
            f"The model reproduces a slowdown of that size (0.31× needs γ ≈ {need:.0f} at "
            f"c = 0.25; E[N] ≈ {en:.2f}), but γ, the exit and the head cost of that run are not "
            "in the notes, and 0.019 may be a marginal rate rather than α.",
        )
    )
    a8 = _alpha_for_eesd(1.75, 4, 8 / 40, 1 - 8 / 40)
    a4_ = _alpha_for_eesd(0.995, 4, 4 / 40, 1 - 4 / 40)
    out.append(
        Row(
            "Llama2-13B: 1.75× at exit 8, 0.995× at exit 4",
            f"{LAYERSKIP}, one A100",
            "1.75× / 0.995×",
            "assumed γ = 4, c = E/40, v = 1 − c (cache reuse), heads ignored",
            f"implied α: {a8:.2f} at exit 8, {a4_:.2f} at exit 4",
            "cannot say",
            "The model turns each speedup into the acceptance it implies: a drop from exit 8 to "
            "exit 4 is consistent with acceptance collapsing at shallow exits, but the measured "
            "α and γ are not in the notes.",
        )
    )
    t16 = _tick_break_even(1.3e-3, 16, 32, 0.8)
    out.append(
        Row(
            "≈1.3 ms per tick makes a 16-stage PPSD slower than AR",
            f"{REIMPL}, 4B model",
            "slower than AR; ideal > 1",
            "tick 1.3 ms, k = 16 equal stages, α = 0.8, 32 layers; heads and hops ignored",
            f"ideal {analytic.ppsd_ideal_speedup(0.8, k=16):.2f}×; slower than AR whenever "
            f"all-layer compute T < {t16 * 1e3:.1f} ms",
            "consistent",
            "The model predicts the loss whenever the model's token time is below that "
            "threshold; the 4B model's T on that hardware is not in the notes.",
        )
    )
    prof = prototype_profile()
    scheme = SchemeConfig.ppsd([4, 8])
    for alpha, measured in ((1.0, 1.99), (0.95, 1.79), (0.8, 1.57), (0.5, 1.16)):
        s = analytic.speedup(prof, scheme, alpha)
        err = (s - measured) / measured
        out.append(
            Row(
                f"2-stage PPSD on 2 CPU cores, α = {alpha:g}",
                PROTOTYPE,
                f"{measured:.2f}× vs AR 1 thread",
                "hand profile from the notes' costs (layer 760 µs, head 345 µs, hop 45 µs, "
                "crop 35 µs), stages 4 | 4",
                f"{s:.2f}× ({err:+.0%})",
                "agrees" if abs(err) <= 0.10 else "disagrees",
                "Within 10 % counts as agreement. "
                + (
                    "The model is optimistic here: per the notes, a real rejection also costs "
                    "signalling and wrong-branch work the profile does not hold."
                    if err > 0
                    else "The notes explain why stage-wise latencies run faster than inside a "
                    "full-model step, which the full-model profile misses."
                ),
            )
        )
    return out
