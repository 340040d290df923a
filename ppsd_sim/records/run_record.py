"""RunRecord: one simulated or measured run, in the same shape so the two can be compared."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.profile import HardwareProfile, Provenance
from ppsd_sim.records.sampling import GREEDY, SamplingSpec
from ppsd_sim.records.schema import open_record, tag
from ppsd_sim.records.scheme import SchemeConfig

ORIGINS = ("simulated", "measured")


@dataclass(frozen=True)
class AcceptanceObserved:
    """Acceptance as it happened. ``rate`` = accepted / judged (marginal rate; a draft is
    judged when the full model's token for its position is known). ``per_position`` holds the
    conditional rate at each draft position (EESD: within the round; PPSD: since the last
    rejection). ``histogram[a]`` counts EESD rounds with a accepted drafts (bonus excluded).

    ``expected`` is the mean over the judged drafts of Σ_x min(p(x), q(x)) (1 − total variation
    between the full model's p and the draft's q at that position: the probability the draft
    is accepted, far less noisy than the 0/1 outcome), ``expected_per_position`` the same mean
    at each draft position. Greedy: p and q are one-hot, so each term is the 0/1 outcome and
    expected equals realised. None/() in records written before it was measured."""

    judged: int
    accepted: int
    per_position: tuple[float, ...] = ()
    histogram: tuple[int, ...] = ()
    trace: tuple[int, ...] = ()
    expected: float | None = None
    expected_per_position: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        validate.integer("acceptance_observed.judged", self.judged, lo=0)
        validate.integer("acceptance_observed.accepted", self.accepted, lo=0, hi=self.judged)
        if self.expected is not None:
            validate.probability("acceptance_observed.expected", self.expected)
        for i, v in enumerate(self.expected_per_position):
            validate.probability(f"acceptance_observed.expected_per_position[{i}]", v)

    @property
    def rate(self) -> float:
        return self.accepted / self.judged if self.judged else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "judged": self.judged,
            "accepted": self.accepted,
            "rate": None if not self.judged else self.rate,
        }
        if self.expected is not None:
            out["expected"] = self.expected
        for name in ("per_position", "histogram", "trace", "expected_per_position"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "acceptance_observed") -> AcceptanceObserved:
        d = validate.mapping(
            where,
            data,
            (
                "judged",
                "accepted",
                "rate",
                "per_position",
                "histogram",
                "trace",
                "expected",
                "expected_per_position",
            ),
            ("judged", "accepted"),
        )
        d.pop("rate", None)
        for name in ("per_position", "histogram", "trace", "expected_per_position"):
            if name in d:
                d[name] = tuple(validate.sequence(validate.join(where, name), d[name]))
        return cls(**d)


@dataclass(frozen=True)
class RunRecord:
    """One run. ``speedups`` maps a named baseline to tokens/s ratio (e.g. ``ar_same_profile``
    for the simulator, ``ar_1thread`` / ``ar_all_cores`` / ``generate`` for real runs);
    ``baseline`` names the one that ``speedup`` reports. ``sampling``: how the tokens were
    chosen (greedy unless a measured run sampled; records without it read as greedy)."""

    origin: str
    engine: str
    scheme: SchemeConfig
    tokens: int
    time_s: float
    acceptance: AcceptanceSpec | None = None
    profile: HardwareProfile | None = None
    seed: int | None = None
    speedups: dict[str, float] = field(default_factory=dict)
    baseline: str | None = None
    acceptance_observed: AcceptanceObserved | None = None
    stage_busy_s: tuple[float, ...] = ()
    stage_wasted_s: tuple[float, ...] = ()
    flushes: int = 0
    rounds: int | None = None
    provenance: Provenance | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    sampling: SamplingSpec = GREEDY

    def __post_init__(self) -> None:
        validate.choice("origin", self.origin, ORIGINS)
        if not isinstance(self.sampling, SamplingSpec):
            raise ConfigError("sampling", f"must be a SamplingSpec, got {self.sampling!r}")
        if not isinstance(self.engine, str) or not self.engine:
            raise ConfigError("engine", "must be a non-empty string")
        validate.integer("tokens", self.tokens, lo=0)
        validate.number("time_s", self.time_s, lo=0.0)
        for name, v in self.speedups.items():
            validate.number(f"speedups.{name}", v, lo=0.0)
        if self.baseline is not None and self.baseline not in self.speedups:
            raise ConfigError(
                "baseline",
                f"must name one of speedups ({', '.join(self.speedups)}), got {self.baseline!r}",
            )
        for name in ("stage_busy_s", "stage_wasted_s"):
            object.__setattr__(
                self,
                name,
                tuple(
                    validate.number(f"{name}[{i}]", v, lo=0.0)
                    for i, v in enumerate(getattr(self, name))
                ),
            )
        validate.integer("flushes", self.flushes, lo=0)
        try:
            json.dumps(self.notes, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ConfigError("notes", f"must be JSON-serialisable: {err}") from None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.time_s if self.time_s > 0 else math.inf

    @property
    def speedup(self) -> float | None:
        return None if self.baseline is None else self.speedups[self.baseline]

    @property
    def stage_busy_fraction(self) -> tuple[float, ...]:
        return tuple(b / self.time_s if self.time_s > 0 else 0.0 for b in self.stage_busy_s)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **tag("RunRecord"),
            "origin": self.origin,
            "engine": self.engine,
            "scheme": self.scheme.to_dict(),
            "tokens": self.tokens,
            "time_s": self.time_s,
            "tokens_per_s": self.tokens_per_s,
            "speedups": dict(self.speedups),
            "baseline": self.baseline,
            "speedup": self.speedup,
            "seed": self.seed,
            "sampling": self.sampling.to_dict(),
            "flushes": self.flushes,
            "rounds": self.rounds,
            "stage_busy_s": list(self.stage_busy_s),
            "stage_busy_fraction": list(self.stage_busy_fraction),
            "stage_wasted_s": list(self.stage_wasted_s),
            "notes": self.notes,
        }
        if self.acceptance is not None:
            out["acceptance"] = self.acceptance.to_dict()
        if self.acceptance_observed is not None:
            out["acceptance_observed"] = self.acceptance_observed.to_dict()
        if self.profile is not None:
            out["profile"] = self.profile.to_dict()
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> RunRecord:
        fields = (
            "origin",
            "engine",
            "scheme",
            "tokens",
            "time_s",
            "acceptance",
            "profile",
            "seed",
            "speedups",
            "baseline",
            "acceptance_observed",
            "stage_busy_s",
            "stage_wasted_s",
            "flushes",
            "rounds",
            "provenance",
            "notes",
            "sampling",
        )
        d = open_record(
            data,
            "RunRecord",
            where,
            fields,
            ("origin", "engine", "scheme", "tokens", "time_s"),
            derived=("tokens_per_s", "speedup", "stage_busy_fraction"),
        )
        d["scheme"] = SchemeConfig.from_dict(d["scheme"], validate.join(where, "scheme"))
        if d.get("acceptance") is not None:
            d["acceptance"] = AcceptanceSpec.from_dict(
                d["acceptance"], validate.join(where, "acceptance")
            )
        if d.get("profile") is not None:
            d["profile"] = HardwareProfile.from_dict(d["profile"], validate.join(where, "profile"))
        if d.get("acceptance_observed") is not None:
            d["acceptance_observed"] = AcceptanceObserved.from_dict(
                d["acceptance_observed"], validate.join(where, "acceptance_observed")
            )
        if d.get("sampling") is not None:
            d["sampling"] = SamplingSpec.from_dict(d["sampling"], validate.join(where, "sampling"))
        else:
            d.pop("sampling", None)
        if d.get("provenance") is not None:
            d["provenance"] = Provenance.from_dict(
                d["provenance"], validate.join(where, "provenance")
            )
        for name in ("stage_busy_s", "stage_wasted_s"):
            if name in d:
                d[name] = tuple(validate.sequence(validate.join(where, name), d[name]))
        if "speedups" in d:
            validate.mapping(
                validate.join(where, "speedups"),
                d["speedups"],
                d["speedups"].keys() if isinstance(d["speedups"], dict) else (),
            )
        return cls(**d)
