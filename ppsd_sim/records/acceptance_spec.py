"""AcceptanceSpec: how drafts are accepted, always tagged with what its numbers mean.

Its meaning includes the decoding settings the numbers were measured under (``decoding``:
temperature, top-k, top-p; greedy by default and for files that do not say), so a what-if at
other settings can flag the mismatch (``ppsd_sim.records.decoding.mismatch``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_math import (
    histogram_marginal_rate,
    histogram_tau,
    markov_bounds,
    run_marginal_rate,
)
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.schema import open_record, rerooted, tag

KINDS = ("iid", "per_position", "markov", "trace", "histogram")
#: What a histogram says past its γ drafts, when a scheme needs that (PPSD runs, or EESD with a
#: larger γ): nothing, unless the user chooses one of these rules.
HISTOGRAM_TAILS = ("zero", "repeat-last", "marginal")
_TAIL_TEXT = {
    None: "nothing is known (refused wherever a scheme would need it)",
    "zero": "no further draft is accepted (alpha = 0)",
    "repeat-last": "the last position's conditional alpha repeats",
    "marginal": "every further draft is accepted with the histogram's accepted/judged rate",
}
#: Which 0/1 sequence a Markov chain runs over.
MARKOV_CHAINS = ("judged", "positions")

#: What the numbers of each kind mean (written into every JSON record). The histogram's text
#: adds its tail rule, the Markov chain's names its chain (see ``AcceptanceSpec.semantics``).
SEMANTICS = {
    "iid": "alpha = P(draft == verified token), independently for every judged draft (the "
    "conditional per-draft rate; in the long run accepted / judged drafts)",
    "per_position": "alphas[i] = P(draft i+1 accepted | drafts 1..i accepted) (conditional); the "
    "position counts from the start of an EESD round, or (PPSD) from the last rejection; past "
    "the list the last alpha repeats",
    "markov": "two-state Markov chain over judged drafts (EESD: the drafts of consecutive rounds, "
    "bonus positions left out; PPSD: every output position): stationary accept rate alpha, "
    "lag-1 correlation burstiness (0 = iid, > 0 rejections cluster, < 0 they alternate)",
    "trace": "recorded 0/1 outcome per judged draft in order (1 = accepted); replay wraps around",
    "histogram": "counts[a] = EESD rounds with a accepted drafts out of len(counts)-1 (bonus token "
    "excluded); past len(counts)-1 drafts: ",
}
_MARKOV_POSITIONS = (
    "two-state Markov chain over output positions (one per token of a greedy continuation, as "
    "the model card measures it): stationary accept rate alpha, lag-1 correlation burstiness; "
    "PPSD judges every position, EESD's bonus positions step the chain but are not drafted"
)
#: The texts records carried before tail rules and chains were stated (still read: a legacy
#: histogram was simulated with no draft accepted past γ, so it reads as tail "zero").
LEGACY_SEMANTICS = {
    "iid": "alpha = P(draft == verified token), independent per drafted token (conditional per-token rate)",
    "per_position": "alphas[i] = P(draft i+1 accepted | drafts 1..i accepted); position counts from the "
    "start of an EESD round, or (PPSD) from the last verified token that followed a rejection",
    "markov": "two-state Markov chain over judged drafts: stationary accept rate alpha, lag-1 "
    "correlation burstiness (0 = iid, ->1 = rejections cluster)",
    "histogram": "counts[a] = EESD rounds with a accepted drafts out of len(counts)-1 (bonus token excluded)",
}


@dataclass(frozen=True)
class AcceptanceSpec:
    """One of five acceptance models. Construct with the class methods.

    ``tail`` (histogram only) is the rule for drafts past the histogram's γ; ``chain`` (Markov
    only) says which 0/1 sequence the chain runs over: ``judged`` drafts (the simulator's
    native view) or output ``positions`` (what the model card measures)."""

    kind: str
    alpha: float | None = None
    burstiness: float = 0.0
    alphas: tuple[float, ...] = ()
    trace: tuple[int, ...] = ()
    counts: tuple[int, ...] = ()
    tail: str | None = None
    chain: str = "judged"
    #: the decoding its numbers were measured under (``ppsd_sim.records.decoding``)
    decoding: DecodingSettings = GREEDY

    def __post_init__(self) -> None:
        validate.choice("acceptance.kind", self.kind, KINDS)
        if not isinstance(self.decoding, DecodingSettings):
            raise ConfigError("acceptance.decoding", "must be a DecodingSettings")
        if self.kind in ("iid", "markov"):
            if self.alpha is None:
                raise ConfigError("acceptance.alpha", f"is required for kind {self.kind!r}")
            alpha = validate.probability("acceptance.alpha", self.alpha)
            object.__setattr__(self, "alpha", alpha)
        elif self.alpha is not None:
            raise ConfigError("acceptance.alpha", f"is not used by kind {self.kind!r}")
        b = validate.number("acceptance.burstiness", self.burstiness, lo=-1.0, hi=1.0, hi_open=True)
        if self.kind != "markov" and b != 0.0:
            raise ConfigError("acceptance.burstiness", "is only used by kind 'markov'")
        if self.kind == "markov":
            lo, _ = markov_bounds(alpha)
            if b < lo:
                raise ConfigError(
                    "acceptance.burstiness",
                    f"must be >= {lo:.4g} for alpha = {self.alpha:g} (below it a transition "
                    f"probability leaves [0, 1]), got {b:g}",
                )
        object.__setattr__(self, "burstiness", b)
        if self.kind == "markov":
            validate.choice("acceptance.chain", self.chain, MARKOV_CHAINS)
        elif self.chain != "judged":
            raise ConfigError("acceptance.chain", "is only used by kind 'markov'")
        if self.kind == "histogram":
            if self.tail is not None:
                validate.choice("acceptance.tail", self.tail, HISTOGRAM_TAILS)
        elif self.tail is not None:
            raise ConfigError("acceptance.tail", "is only used by kind 'histogram'")
        self._check_list("alphas", "per_position", lambda f, v: validate.probability(f, v))
        self._check_list("trace", "trace", _bit)
        self._check_list("counts", "histogram", lambda f, v: validate.integer(f, v, lo=0))
        if self.kind == "histogram":
            if len(self.counts) < 2:
                raise ConfigError(
                    "acceptance.counts", "needs counts for 0..gamma accepted drafts (>= 2 entries)"
                )
            if sum(self.counts) == 0:
                raise ConfigError("acceptance.counts", "must count at least one round")

    def _check_list(self, name: str, owner: str, check: Any) -> None:
        value = getattr(self, name)
        if self.kind == owner:
            items = validate.sequence(f"acceptance.{name}", value, min_len=1)
            object.__setattr__(
                self, name, tuple(check(f"acceptance.{name}[{i}]", v) for i, v in enumerate(items))
            )
        elif value:
            raise ConfigError(f"acceptance.{name}", f"is only used by kind {owner!r}")

    # ---- constructors ---------------------------------------------------------------------
    @classmethod
    def iid(cls, alpha: float) -> AcceptanceSpec:
        return cls("iid", alpha=alpha)

    @classmethod
    def markov(cls, alpha: float, burstiness: float, chain: str = "judged") -> AcceptanceSpec:
        return cls("markov", alpha=alpha, burstiness=burstiness, chain=chain)

    @classmethod
    def per_position(cls, alphas: list[float] | tuple[float, ...]) -> AcceptanceSpec:
        return cls("per_position", alphas=tuple(alphas))

    @classmethod
    def from_trace(cls, trace: list[int] | tuple[int, ...]) -> AcceptanceSpec:
        return cls("trace", trace=tuple(int(x) if isinstance(x, bool) else x for x in trace))

    @classmethod
    def histogram(
        cls, counts: list[int] | tuple[int, ...], tail: str | None = None
    ) -> AcceptanceSpec:
        return cls("histogram", counts=tuple(counts), tail=tail)

    # ---- derived ----------------------------------------------------------------------------
    @property
    def gamma(self) -> int | None:
        """The round length a histogram was measured at (None for other kinds)."""
        return len(self.counts) - 1 if self.kind == "histogram" else None

    @property
    def semantics(self) -> str:
        if self.kind == "histogram":
            return SEMANTICS["histogram"] + _TAIL_TEXT[self.tail]
        if self.kind == "markov" and self.chain == "positions":
            return _MARKOV_POSITIONS
        return SEMANTICS[self.kind]

    @property
    def mean_alpha(self) -> float:
        """A single summary α: accepted ÷ judged drafts. For a histogram, of the rounds it
        counts (no assumption past its γ); for per-position α, on a stream of judged drafts
        (the last α repeating)."""
        if self.alpha is not None:  # iid, markov
            return self.alpha
        if self.kind == "trace":
            return sum(self.trace) / len(self.trace)
        if self.kind == "histogram":
            return histogram_marginal_rate(self.counts)
        return run_marginal_rate(self.alphas)

    def needs_tail(self, drafts: int | None) -> bool:
        """Would a scheme that judges up to ``drafts`` consecutive drafts (None: unbounded, as
        PPSD) go past what this histogram measured? False when no round reached its γ (the
        tail then has probability 0) or for other kinds."""
        if self.kind != "histogram" or self.counts[-1] == 0:
            return False
        return drafts is None or drafts > len(self.counts) - 1

    def with_decoding(self, decoding: DecodingSettings) -> AcceptanceSpec:
        return replace(self, decoding=decoding)

    def label(self) -> str:
        at = "" if self.decoding.greedy else f" at {self.decoding.label()}"
        if self.kind == "iid":
            return f"iid α={self.alpha:g}{at}"
        if self.kind == "markov":
            over = " over output positions" if self.chain == "positions" else ""
            return f"markov α={self.alpha:g} ρ={self.burstiness:g}{over}{at}"
        if self.kind == "histogram":
            return (
                f"histogram of γ={self.gamma} rounds (accepted/judged {self.mean_alpha:.3f}, "
                f"τ {histogram_tau(self.counts):.2f}; past γ: {self.tail or 'not given'}){at}"
            )
        if self.kind == "per_position":
            shown = ",".join(f"{a:g}" for a in self.alphas[:8])
            more = ",…" if len(self.alphas) > 8 else ""
            return (
                f"per-position α_i={shown}{more} (conditional, the last repeats; "
                f"accepted/judged {self.mean_alpha:.3f}){at}"
            )
        return (
            f"trace of {len(self.trace)} judged drafts (accepted/judged {self.mean_alpha:.3f}){at}"
        )

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **tag("AcceptanceSpec"),
            "kind": self.kind,
            "semantics": self.semantics,
        }
        if self.kind in ("iid", "markov"):
            out["alpha"] = self.alpha
        if self.kind == "markov":
            out["burstiness"] = self.burstiness
            if self.chain != "judged":
                out["chain"] = self.chain
        for name in ("alphas", "trace", "counts"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        if self.tail is not None:
            out["tail"] = self.tail
        if not self.decoding.greedy:  # greedy stays implicit: old files read the same
            out["decoding"] = self.decoding.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "acceptance") -> AcceptanceSpec:
        fields = (
            "kind",
            "semantics",
            "alpha",
            "burstiness",
            "alphas",
            "trace",
            "counts",
            "tail",
            "chain",
            "decoding",
        )
        d = open_record(data, "AcceptanceSpec", where, fields, ("kind",))
        sem = d.pop("semantics", None)
        kind = validate.choice(validate.join(where, "kind"), d["kind"], KINDS)
        for name in ("alphas", "trace", "counts"):
            if name in d:
                d[name] = tuple(validate.sequence(validate.join(where, name), d[name]))
        legacy = sem is not None and sem == LEGACY_SEMANTICS.get(kind)
        if legacy and kind == "histogram" and d.get("tail") is None:
            d["tail"] = "zero"  # what the simulator did with such a histogram when it wrote it
        d["decoding"] = DecodingSettings.from_dict(
            d.get("decoding"), validate.join(where, "decoding")
        )
        try:
            spec = cls(**d)
        except ConfigError as err:
            raise rerooted(err, "acceptance", where) from None
        if sem is not None and sem != spec.semantics and not legacy:
            raise ConfigError(
                validate.join(where, "semantics"),
                f"does not match kind {kind!r}: expected {spec.semantics!r}",
            )
        return spec


def _bit(field: str, value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if value not in (0, 1) or isinstance(value, float):
        raise ConfigError(field, f"must be 0 or 1, got {value!r}")
    return int(value)
