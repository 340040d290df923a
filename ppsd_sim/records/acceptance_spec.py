"""AcceptanceSpec: how drafts are accepted, always tagged with what its numbers mean.

Its meaning includes the decoding settings the numbers were measured under (``decoding``:
temperature, top-k, top-p; greedy by default and for files that do not say), so a what-if at
other settings can flag the mismatch (``ppsd_sim.records.decoding.mismatch``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.schema import open_record, rerooted, tag

KINDS = ("iid", "per_position", "markov", "trace", "histogram")

#: What the numbers of each kind mean (written into every JSON record).
SEMANTICS = {
    "iid": "alpha = P(draft == verified token), independent per drafted token (conditional per-token rate)",
    "per_position": "alphas[i] = P(draft i+1 accepted | drafts 1..i accepted); position counts from the "
    "start of an EESD round, or (PPSD) from the last verified token that followed a rejection",
    "markov": "two-state Markov chain over judged drafts: stationary accept rate alpha, lag-1 "
    "correlation burstiness (0 = iid, ->1 = rejections cluster)",
    "trace": "recorded 0/1 outcome per judged draft in order (1 = accepted); replay wraps around",
    "histogram": "counts[a] = EESD rounds with a accepted drafts out of len(counts)-1 (bonus token excluded)",
}


@dataclass(frozen=True)
class AcceptanceSpec:
    """One of five acceptance models. Construct with the class methods."""

    kind: str
    alpha: float | None = None
    burstiness: float = 0.0
    alphas: tuple[float, ...] = ()
    trace: tuple[int, ...] = ()
    counts: tuple[int, ...] = ()
    #: the decoding its numbers were measured under (``ppsd_sim.records.decoding``)
    decoding: DecodingSettings = GREEDY

    def __post_init__(self) -> None:
        validate.choice("acceptance.kind", self.kind, KINDS)
        if not isinstance(self.decoding, DecodingSettings):
            raise ConfigError("acceptance.decoding", "must be a DecodingSettings")
        if self.kind in ("iid", "markov"):
            if self.alpha is None:
                raise ConfigError("acceptance.alpha", f"is required for kind {self.kind!r}")
            object.__setattr__(self, "alpha", validate.probability("acceptance.alpha", self.alpha))
        elif self.alpha is not None:
            raise ConfigError("acceptance.alpha", f"is not used by kind {self.kind!r}")
        b = validate.number("acceptance.burstiness", self.burstiness, lo=0.0, hi=1.0, hi_open=True)
        if self.kind != "markov" and b != 0.0:
            raise ConfigError("acceptance.burstiness", "is only used by kind 'markov'")
        object.__setattr__(self, "burstiness", b)
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
    def markov(cls, alpha: float, burstiness: float) -> AcceptanceSpec:
        return cls("markov", alpha=alpha, burstiness=burstiness)

    @classmethod
    def per_position(cls, alphas: list[float] | tuple[float, ...]) -> AcceptanceSpec:
        return cls("per_position", alphas=tuple(alphas))

    @classmethod
    def from_trace(cls, trace: list[int] | tuple[int, ...]) -> AcceptanceSpec:
        return cls("trace", trace=tuple(int(x) if isinstance(x, bool) else x for x in trace))

    @classmethod
    def histogram(cls, counts: list[int] | tuple[int, ...]) -> AcceptanceSpec:
        return cls("histogram", counts=tuple(counts))

    @property
    def semantics(self) -> str:
        return SEMANTICS[self.kind]

    @property
    def mean_alpha(self) -> float:
        """A single summary α (marginal accept rate per judged draft) for tables and labels."""
        from ppsd_sim.acceptance.semantics import marginal_rate

        return marginal_rate(self)

    def with_decoding(self, decoding: DecodingSettings) -> AcceptanceSpec:
        return replace(self, decoding=decoding)

    def label(self) -> str:
        at = "" if self.decoding.greedy else f" at {self.decoding.label()}"
        if self.kind == "iid":
            return f"iid α={self.alpha:g}{at}"
        if self.kind == "markov":
            return f"markov α={self.alpha:g} ρ={self.burstiness:g}{at}"
        return f"{self.kind} (mean α≈{self.mean_alpha:.3f}){at}"

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
        for name in ("alphas", "trace", "counts"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
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
            "decoding",
        )
        d = open_record(data, "AcceptanceSpec", where, fields, ("kind",))
        sem = d.pop("semantics", None)
        kind = validate.choice(validate.join(where, "kind"), d["kind"], KINDS)
        if sem is not None and sem != SEMANTICS[kind]:
            raise ConfigError(
                validate.join(where, "semantics"),
                f"does not match kind {kind!r}: expected {SEMANTICS[kind]!r}",
            )
        for name in ("alphas", "trace", "counts"):
            if name in d:
                d[name] = tuple(validate.sequence(validate.join(where, name), d[name]))
        d["decoding"] = DecodingSettings.from_dict(
            d.get("decoding"), validate.join(where, "decoding")
        )
        try:
            return cls(**d)
        except ConfigError as err:
            raise rerooted(err, "acceptance", where) from None


def _bit(field: str, value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if value not in (0, 1) or isinstance(value, float):
        raise ConfigError(field, f"must be 0 or 1, got {value!r}")
    return int(value)
