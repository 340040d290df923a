"""AcceptanceRecord: measured greedy acceptance of one model's early exits (``ppsd accept``).

What is measured, per exit layer E and head (the shared LM head, or a trained early-exit
head): along the model's own greedy continuation of each prompt, bit t is 1 when the exit's
greedy token for generated position t equals the full model's. Every draft a greedy decoder
makes follows a prefix equal to AR output, so these 0/1 traces are exactly the outcomes PPSD
judges, in order (the first generated position included); EESD judges a subset of them,
from the second position on (``eesd_rounds``; its first token comes from the prefill).

The traces are the record's data. Everything else is derived from them here (recomputed on
read, never trusted from the file): the conditional per-token α and its standard error, the
EESD replay at several γ (histogram, τ, marginal rate, per-position α_i) and the burstiness.
Readers: ``curve(head)`` gives the α(E) points for the planner's ``AcceptanceCurve``;
``trace(exit, head)`` gives the 0/1 sequence ``ppsd sim --acceptance-trace`` replays.

Sampled decoding (temperature > 0): a row also carries its ``decoding`` settings and, per
judged position, the expected acceptance Σ_x min(p(x), q(x)) of the warped full-model and
exit distributions; its bits are the realised outcomes of the exact rule (a draft x ~ q
accepted with probability min(1, p(x)/q(x))). One record holds a row per (exit, head,
decoding); the readers take ``decoding=`` (greedy by default).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_math import pooled_lag1_correlation, rounds_from_positions
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.profile import Provenance
from ppsd_sim.records.schema import open_record, tag

NAME = "AcceptanceRecord"
HEADS = ("shared", "trained")
#: the record-level tag: every row greedy, or rows at their own settings
DECODING = ("greedy", "per_row")
DEFAULT_GAMMAS = (1, 2, 4, 8)


def eesd_rounds(trace: list[int] | tuple[int, ...], gamma: int) -> list[int]:
    """Accepted drafts of each EESD round of γ replayed along one continuation's 0/1 trace.

    A round drafts positions t..t+γ-1 and accepts up to the first rejection; the full model's
    token comes next (the correction at a rejected position, or the bonus after γ accepts),
    so the next round starts one position after the last accepted draft's successor. A round
    cut short by the end of the trace is dropped (its fate is unknown). The one rule:
    ``acceptance_math.rounds_from_positions``."""
    validate.integer("gamma", gamma, lo=1)
    return [int(a) for a in rounds_from_positions(trace, gamma)]


def _at(decoding: DecodingSettings) -> str:
    return "" if decoding.greedy else f" at {decoding.label()} decoding"


def cluster_se(rows: list[tuple[float, ...]] | list[tuple[int, ...]]) -> float | None:
    """Standard error of the pooled mean of per-position values with prompts as clusters
    (values within one continuation are correlated): sqrt(Σ n_p² (m_p − m)² / (P (P − 1))) / n̄
    over P non-empty prompts; None with fewer than two."""
    rows = [t for t in rows if t]
    if len(rows) < 2:
        return None
    judged = sum(len(t) for t in rows)
    m = sum(sum(t) for t in rows) / judged
    nbar = judged / len(rows)
    s = sum(len(t) ** 2 * (sum(t) / len(t) - m) ** 2 for t in rows)
    return math.sqrt(s / (len(rows) * (len(rows) - 1))) / nbar


def lag1(traces: list[tuple[int, ...]]) -> float | None:
    """Lag-1 autocorrelation of the 0/1 outcomes, pairs taken within each trace (the Markov
    model's burstiness ρ over output positions); None when undefined (constant outcomes or
    fewer than 3). The one estimator: ``acceptance_math.pooled_lag1_correlation``."""
    return pooled_lag1_correlation(traces)


@dataclass(frozen=True)
class GammaStats:
    """EESD rounds of γ replayed along the traces. ``histogram[a]``: rounds with a accepted;
    τ = mean accepted per round (bonus excluded); marginal rate = accepted / judged;
    ``per_position[i-1]`` = α_i = S_i / S_{i-1} (0 where position i was never reached)."""

    gamma: int
    histogram: tuple[int, ...]

    @property
    def rounds(self) -> int:
        return sum(self.histogram)

    @property
    def tau(self) -> float | None:
        if not self.rounds:
            return None
        return sum(a * c for a, c in enumerate(self.histogram)) / self.rounds

    @property
    def marginal_rate(self) -> float | None:
        acc = sum(a * c for a, c in enumerate(self.histogram))
        judged = acc + sum(c for a, c in enumerate(self.histogram) if a < self.gamma)
        return acc / judged if judged else None

    @property
    def per_position(self) -> tuple[float, ...]:
        if not self.rounds:
            return ()
        reach = [sum(self.histogram[i:]) for i in range(self.gamma + 1)]  # rounds with a >= i
        return tuple(reach[i] / reach[i - 1] if reach[i - 1] else 0.0 for i in range(1, len(reach)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "gamma": self.gamma,
            "rounds": self.rounds,
            "histogram": list(self.histogram),
            "tau": self.tau,
            "marginal_rate": self.marginal_rate,
            "per_position": list(self.per_position),
        }


@dataclass(frozen=True)
class ExitAcceptance:
    """One exit layer with one head: the 0/1 trace of each prompt's continuation."""

    exit: int
    head: str
    traces: tuple[tuple[int, ...], ...]
    decoding: DecodingSettings = GREEDY
    #: sampled rows: Σ_x min(p(x), q(x)) per judged position, shaped like ``traces``
    expected: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        validate.integer("exit", self.exit, lo=1)
        validate.choice("head", self.head, HEADS)
        rows = validate.sequence("traces", self.traces, min_len=1)
        clean = []
        for i, row in enumerate(rows):
            bits = validate.sequence(f"traces[{i}]", row)
            for j, b in enumerate(bits):
                if b not in (0, 1) or isinstance(b, bool | float):
                    raise ConfigError(f"traces[{i}][{j}]", f"must be 0 or 1, got {b!r}")
            clean.append(tuple(int(b) for b in bits))
        object.__setattr__(self, "traces", tuple(clean))
        if not isinstance(self.decoding, DecodingSettings):
            raise ConfigError("decoding", "must be a DecodingSettings")
        if self.decoding.greedy:
            if self.expected is not None:
                raise ConfigError("expected", "is only for sampled rows (greedy: it is the bits)")
            return
        if self.expected is None:
            raise ConfigError("expected", "is required for a sampled row")
        exp = validate.sequence("expected", self.expected, min_len=len(clean))
        if len(exp) != len(clean):
            raise ConfigError("expected", f"needs {len(clean)} rows like traces, got {len(exp)}")
        out = []
        for i, (row, trace) in enumerate(zip(exp, clean, strict=True)):
            vals = validate.sequence(f"expected[{i}]", row)
            if len(vals) != len(trace):
                raise ConfigError(f"expected[{i}]", f"needs {len(trace)} values, got {len(vals)}")
            out.append(
                tuple(validate.probability(f"expected[{i}][{j}]", v) for j, v in enumerate(vals))
            )
        object.__setattr__(self, "expected", tuple(out))

    @property
    def judged(self) -> int:
        return sum(len(t) for t in self.traces)

    @property
    def accepted(self) -> int:
        return sum(sum(t) for t in self.traces)

    @property
    def alpha(self) -> float | None:
        """Conditional per-token α: accepted / judged over every generated position."""
        return self.accepted / self.judged if self.judged else None

    @property
    def alpha_se(self) -> float | None:
        """Standard error of α with prompts as clusters (``cluster_se``)."""
        return cluster_se(list(self.traces))

    @property
    def expected_alpha(self) -> float | None:
        """Expected per-token α (sampled rows): mean Σ_x min(p, q) over judged positions; for
        greedy rows the realised α (a one-hot p and q agree or not)."""
        if self.expected is None:
            return self.alpha
        n = sum(len(t) for t in self.expected)
        return sum(sum(t) for t in self.expected) / n if n else None

    @property
    def expected_se(self) -> float | None:
        return self.alpha_se if self.expected is None else cluster_se(list(self.expected))

    @property
    def burstiness(self) -> float | None:
        return lag1(list(self.traces))

    def gamma_stats(self, gamma: int) -> GammaStats:
        """EESD rounds of γ along each continuation. EESD's first token comes from the
        prefill, so its rounds start at the second generated position."""
        hist = [0] * (gamma + 1)
        for t in self.traces:
            for a in eesd_rounds(t[1:], gamma):
                hist[a] += 1
        return GammaStats(gamma, tuple(hist))

    def flat_trace(self) -> list[int]:
        return [b for t in self.traces for b in t]

    def to_dict(self, gammas: tuple[int, ...]) -> dict[str, Any]:
        return {
            "exit": self.exit,
            "head": self.head,
            "alpha": self.alpha,
            "alpha_se": self.alpha_se,
            "judged": self.judged,
            "accepted": self.accepted,
            "burstiness": self.burstiness,
            "per_gamma": [self.gamma_stats(g).to_dict() for g in gammas],
            "traces": [list(t) for t in self.traces],
            **(
                {}
                if self.expected is None
                else {
                    "decoding": self.decoding.to_dict(),
                    "expected_alpha": self.expected_alpha,
                    "expected_se": self.expected_se,
                    "expected": [list(t) for t in self.expected],
                }
            ),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ExitAcceptance:
        d = validate.mapping(
            where,
            data,
            (
                "exit",
                "head",
                "traces",
                "alpha",
                "alpha_se",
                "judged",
                "accepted",
                "burstiness",
                "per_gamma",
                "decoding",
                "expected_alpha",
                "expected_se",
                "expected",
            ),
            ("exit", "head", "traces"),
        )
        try:
            dec = DecodingSettings.from_dict(d.get("decoding"))
            return cls(d["exit"], d["head"], d["traces"], dec, d.get("expected"))
        except ConfigError as err:
            raise ConfigError(f"{where}.{err.field}", err.message) from None


@dataclass(frozen=True)
class AcceptanceRecord:
    """Measured acceptance of one model (see the module docstring). ``model`` names it
    (name, fingerprint, model_type, n_layers, vocab); ``prompts`` says what was decoded
    (source, prompt_tokens per prompt, new_tokens); ``heads`` the trained heads' folder and
    manifest fingerprint when any were measured."""

    model: dict[str, Any]
    prompts: dict[str, Any]
    exits: tuple[ExitAcceptance, ...]
    gammas: tuple[int, ...] = DEFAULT_GAMMAS
    decoding: str = "greedy"
    heads: dict[str, Any] | None = None
    provenance: Provenance | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        m = validate.mapping(
            "model", self.model, ("name", "fingerprint", "model_type", "n_layers", "vocab")
        )
        n_layers = validate.integer("model.n_layers", m.get("n_layers"), lo=2)
        p = validate.mapping(
            "prompts", self.prompts, ("source", "prompt_tokens", "new_tokens"), ("new_tokens",)
        )
        validate.integer("prompts.new_tokens", p["new_tokens"], lo=1)
        validate.choice("decoding", self.decoding, DECODING)
        tag_ = "greedy" if all(e.decoding.greedy for e in self.exits) else "per_row"
        object.__setattr__(self, "decoding", tag_)
        gammas = [
            validate.integer(f"gammas[{i}]", g, lo=1)
            for i, g in enumerate(validate.sequence("gammas", self.gammas, min_len=1))
        ]
        object.__setattr__(self, "gammas", tuple(gammas))
        seen = set()
        for i, e in enumerate(validate.sequence("exits", self.exits, min_len=1)):
            if not isinstance(e, ExitAcceptance):
                raise ConfigError(f"exits[{i}]", "must be an ExitAcceptance")
            if not 1 <= e.exit < n_layers:
                raise ConfigError(
                    f"exits[{i}].exit", f"must satisfy 1 <= E < L = {n_layers}, got {e.exit}"
                )
            if (e.exit, e.head, e.decoding) in seen:
                raise ConfigError(
                    f"exits[{i}]",
                    f"exit {e.exit} with head {e.head!r} at {e.decoding.label()} twice",
                )
            seen.add((e.exit, e.head, e.decoding))
        object.__setattr__(self, "exits", tuple(self.exits))

    # ---- readers ------------------------------------------------------------------------
    def heads_measured(self) -> list[str]:
        return [h for h in HEADS if any(e.head == h for e in self.exits)]

    def decodings(self) -> list[DecodingSettings]:
        """The decoding settings measured, in the record's order."""
        out: list[DecodingSettings] = []
        for e in self.exits:
            if e.decoding not in out:
                out.append(e.decoding)
        return out

    def of(
        self,
        exit_layer: int,
        head: str = "shared",
        field: str = "exit",
        decoding: DecodingSettings = GREEDY,
    ) -> ExitAcceptance:
        for e in self.exits:
            if e.exit == exit_layer and e.head == head and e.decoding == decoding:
                return e
        have = sorted(e.exit for e in self.exits if e.head == head and e.decoding == decoding)
        raise ConfigError(
            field,
            f"no measurement at exit {exit_layer} with the {head} head{_at(decoding)} "
            f"(have {have})",
        )

    def curve(
        self, head: str = "shared", decoding: DecodingSettings = GREEDY
    ) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """α(E) points (strictly increasing E) for ``analysis.curves.AcceptanceCurve`` at one
        decoding setting: the expected α for sampled rows (an unbiased, far less noisy estimate
        of the same rate as the realised one), the measured α for greedy."""
        rows = sorted(
            (e.exit, e.expected_alpha)
            for e in self.exits
            if e.head == head and e.decoding == decoding
        )
        pts = [(x, a) for x, a in rows if a is not None]
        if not pts:
            raise ConfigError(
                "head",
                f"no measurement with the {head} head{_at(decoding)} in this record",
            )
        return tuple(p[0] for p in pts), tuple(float(p[1]) for p in pts)

    def trace(
        self, exit_layer: int, head: str = "shared", decoding: DecodingSettings = GREEDY
    ) -> list[int]:
        """The judged 0/1 sequence at one exit, prompts concatenated (what PPSD judges)."""
        return self.of(exit_layer, head, decoding=decoding).flat_trace()

    # ---- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **tag(NAME),
            "model": dict(self.model),
            "decoding": self.decoding,
            "prompts": dict(self.prompts),
            "gammas": list(self.gammas),
            "exits": [e.to_dict(self.gammas) for e in self.exits],
        }
        if self.heads is not None:
            out["heads"] = dict(self.heads)
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_dict()
        if self.notes:
            out["notes"] = self.notes
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> AcceptanceRecord:
        d = open_record(
            data,
            NAME,
            where,
            ("model", "decoding", "prompts", "gammas", "exits", "heads", "provenance", "notes"),
            ("model", "prompts", "exits"),
        )
        pre = f"{where}." if where else ""
        exits = tuple(
            ExitAcceptance.from_dict(e, f"{pre}exits[{i}]")
            for i, e in enumerate(validate.sequence(f"{pre}exits", d["exits"], min_len=1))
        )
        prov = d.get("provenance")
        try:
            return cls(
                model=d["model"],
                prompts=d["prompts"],
                exits=exits,
                gammas=tuple(d.get("gammas", DEFAULT_GAMMAS)),
                decoding=d.get("decoding", "greedy"),
                heads=d.get("heads"),
                provenance=None if prov is None else Provenance.from_dict(prov, f"{pre}provenance"),
                notes=d.get("notes", ""),
            )
        except ConfigError as err:
            raise (ConfigError(pre + err.field, err.message) if pre else err) from None
