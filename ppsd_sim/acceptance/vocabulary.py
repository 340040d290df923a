"""Acceptance as other tools report it, converted to ppsd's conditional α.

Every tool means something else by "acceptance rate" (definitions and sources in GLOSSARY.md,
"Acceptance in other tools' vocabularies"):

- ``accepted/judged``: accepted ÷ judged drafts (ppsd's ``acceptance_observed.rate``); under
  i.i.d. acceptance it is α itself, at any γ;
- ``accepted/drafted``: accepted ÷ drafted tokens, every round drafting γ (LayerSkip's
  ``acceptance_rate``, vLLM's "draft acceptance rate"): τ / γ, lower than α because the drafts
  after a rejection are counted but never judged;
- ``tau``: mean accepted drafts per verification, bonus excluded (0..γ);
- ``tau+bonus``: mean tokens per verification, bonus included (vLLM's "mean acceptance
  length", SGLang's accept length; 1..γ+1);
- ``theoretical-speedup``: a pipeline's equivalent accept length, k × tokens per tick
  = k / (k − α(k − 1)) for k equal stages (1..k);
- per-position lists: ``conditional`` α_i (ppsd's ``--alphas``) or ``unconditional`` rates as
  serving engines report them (vLLM: accepted at position i ÷ rounds = survival S_i).

Each scalar converts to the i.i.d. α that reproduces it exactly, given the γ (or k) it was
measured at; ``derive_alpha`` also says, in words, what it did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ppsd_sim.acceptance.semantics import iid_alpha_from_tau
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate

#: measure name -> what it is measured at: "gamma", "stages" or None (no size needed)
SCALAR_MEASURES: dict[str, str | None] = {
    "accepted/judged": None,
    "accepted/drafted": "gamma",
    "tau": "gamma",
    "tau+bonus": "gamma",
    "theoretical-speedup": "stages",
}
LIST_MEASURES = ("conditional", "unconditional")

_WHAT = {
    "accepted/judged": "accepted ÷ judged drafts",
    "accepted/drafted": "accepted ÷ drafted tokens",
    "tau": "mean accepted drafts per verification (no bonus)",
    "tau+bonus": "mean tokens per verification (bonus included)",
    "theoretical-speedup": "theoretical speedup (k × tokens per tick)",
}


def describe(measured_as: str) -> str:
    """What a measure's number is, in words (for the lines that say what was derived)."""
    return _WHAT[validate.choice("measured-as", measured_as, SCALAR_MEASURES)]


@dataclass(frozen=True)
class Derived:
    """The conditional i.i.d. α a measurement converts to, and a sentence saying how."""

    alpha: float
    note: str


def alpha_from_measure(
    value: float,
    measured_as: str,
    *,
    gamma: int | None = None,
    stages: int | None = None,
    field: str = "acceptance-rate",
) -> float:
    """The conditional i.i.d. α that gives ``value`` when measured as ``measured_as`` at
    ``gamma`` drafts per round (or ``stages`` pipeline stages). Errors name ``field``."""
    validate.choice("measured-as", measured_as, SCALAR_MEASURES)
    need = SCALAR_MEASURES[measured_as]
    value = validate.number(field, value)
    for name, size, used in (("gamma", gamma, "gamma"), ("stages", stages, "stages")):
        if size is not None and need != used:
            raise ConfigError(f"measured-{name}", f"is not used by {measured_as}")
    if need is None:  # accepted/judged: α itself under i.i.d. acceptance, at any γ
        return validate.probability(field, value)
    if need == "stages":
        k = _size("measured-stages", stages, measured_as, lo=2)
        value = _in_range(field, value, 1.0, float(k))
        return min(1.0, max(0.0, k * (1.0 - 1.0 / value) / (k - 1.0)))
    g = _size("measured-gamma", gamma, measured_as, lo=1)
    if measured_as == "accepted/drafted":
        value = _in_range(field, value, 0.0, 1.0)
        return iid_alpha_from_tau(value * g, g, with_bonus=False)
    with_bonus = measured_as == "tau+bonus"
    lo, hi = (1.0, g + 1.0) if with_bonus else (0.0, float(g))
    value = _in_range(field, value, lo, hi)
    return iid_alpha_from_tau(value, g, with_bonus=with_bonus)


#: relative slack at a measure's bounds: a figure computed at the bound (e.g. k ÷ (k − α(k − 1))
#: at α = 1, which floating point makes 3.0000000000000004 for k = 3) is the bound, not an error
_ROUNDING = 1e-9


def _in_range(field: str, value: float, lo: float, hi: float) -> float:
    """``value`` checked against [lo, hi] (named by ``field``), rounding slack clamped."""
    slack = _ROUNDING * max(1.0, abs(hi))
    if hi < value <= hi + slack:
        return hi
    if lo - slack <= value < lo:
        return lo
    return validate.number(field, value, lo=lo, hi=hi)


def _size(field: str, size: int | None, measured_as: str, *, lo: int) -> int:
    if size is None:
        what = "γ" if field.endswith("gamma") else "number of stages k"
        raise ConfigError(field, f"{measured_as} needs the {what} it was measured at")
    return validate.integer(field, size, lo=lo, hi=4096)


def derive_alpha(
    value: float,
    measured_as: str,
    *,
    gamma: int | None = None,
    stages: int | None = None,
    field: str = "acceptance-rate",
) -> Derived:
    """``alpha_from_measure`` with the sentence every front end prints."""
    alpha = alpha_from_measure(value, measured_as, gamma=gamma, stages=stages, field=field)
    at = f" at γ={gamma}" if gamma is not None else f" at k={stages}" if stages is not None else ""
    note = (
        f"α = {alpha:.4f} (i.i.d., conditional per judged draft) derived from "
        f"{_WHAT[measured_as]} = {value:g}{at}"
    )
    return Derived(alpha, note)


def conditional_from_unconditional(rates: Sequence[float], field: str = "alphas") -> list[float]:
    """Per-position rates as serving engines report them, S_i = P(at least i drafts accepted)
    (vLLM: accepted at position i ÷ rounds), to conditional α_i = S_i / S_{i−1}. A position
    never reached (S_{i−1} = 0) gets α_i = 0."""
    s = [validate.probability(f"{field}[{i}]", v) for i, v in enumerate(rates)]
    if not s:
        raise ConfigError(field, "must not be empty")
    for i in range(1, len(s)):
        if s[i] > s[i - 1] + 1e-12:
            raise ConfigError(
                f"{field}[{i}]",
                f"unconditional per-position rates cannot rise ({s[i]:g} after {s[i - 1]:g}): "
                "a draft is accepted only if the one before it was",
            )
    prev, out = 1.0, []
    for v in s:
        out.append(min(1.0, v / prev) if prev > 0 else 0.0)
        prev = v
    return out


def unconditional_from_conditional(alphas: Sequence[float]) -> list[float]:
    """The inverse: S_i = α_1·…·α_i (what vLLM would report for these α_i)."""
    out, s = [], 1.0
    for a in alphas:
        s *= a
        out.append(s)
    return out
