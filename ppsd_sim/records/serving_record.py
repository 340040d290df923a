"""ServingSettings (the scheduler's knobs) and ServingRecord (one scheme serving one workload:
throughput, latency percentiles, goodput, speedups at the same load). Every metric is defined
in GLOSSARY.md ("Serving")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.run_record import ORIGINS, AcceptanceObserved
from ppsd_sim.records.schema import open_record, tag
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.workload import Workload

#: how a pipeline's stage-1 steps are filled (PP-AR and PPSD alike, so a scheme and its twin
#: are scheduled the same way): which sequences' tokens, and drafts or verified tokens first.
#: The PP-AR *baseline* of ``compare_serving`` always runs ``real_first`` (k waves: the usual
#: pipeline-parallel serving schedule), whatever the compared scheme's policy.
POLICIES = ("real_first", "greedy")
POLICY_HELP = {
    "real_first": "a stage-1 step holds at most `microbatch` tokens (default: the PP-AR wave, "
    "ceil(admitted sequences / k), so k micro-batches fill the k stages); verified tokens take "
    "the places first, oldest request first, and drafts fill what is left, oldest request "
    "first: a draft only where no real token waits",
    "greedy": "every stage step takes the next token of every sequence that has one waiting "
    "(draft or verified), at most one per sequence: each sequence runs PPSD as if alone and "
    "its drafts ride in the same steps as the other sequences' tokens (pays where a step's "
    "cost barely grows with its tokens, i.e. memory-bound hardware); PP-AR: waves merge into one "
    "wave of every ready sequence",
}


@dataclass(frozen=True)
class ServingSettings:
    """The scheduler: at most ``max_batch`` sequences admitted at once, KV cache of
    ``kv_budget`` tokens (None: unlimited; a request reserves prompt + output + its scheme's
    draft slots when admitted), the pipelines' stage-1 slot ``policy`` (``POLICIES``), their
    ``microbatch`` cap (None: ceil(sequences / k)), and the latency targets goodput counts
    against (``ttft_slo_s``, ``tpot_slo_s``; None: not counted)."""

    max_batch: int = 32
    kv_budget: int | None = None
    policy: str = "real_first"
    microbatch: int | None = None
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None

    def __post_init__(self) -> None:
        validate.integer("max_batch", self.max_batch, lo=1, hi=10**6)
        if self.kv_budget is not None:
            validate.integer("kv_budget", self.kv_budget, lo=1, hi=10**12)
        validate.choice("policy", self.policy, POLICIES)
        if self.microbatch is not None:
            validate.integer("microbatch", self.microbatch, lo=1, hi=10**6)
        for name in ("ttft_slo_s", "tpot_slo_s"):
            v = getattr(self, name)
            if v is not None:
                validate.number(name, v, lo=0.0, lo_open=True)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _SETTINGS if getattr(self, k) is not None}

    @classmethod
    def from_dict(cls, data: Any, where: str = "settings") -> ServingSettings:
        d = validate.mapping(where, data, _SETTINGS)
        try:
            return cls(**d)
        except ConfigError as err:
            raise err.within(where) if where else err from None


_SETTINGS = ("max_batch", "kv_budget", "policy", "microbatch", "ttft_slo_s", "tpot_slo_s")


@dataclass(frozen=True)
class LatencySummary:
    """Mean and percentiles (numpy's linear interpolation between order statistics) of one
    latency over the requests it is defined for (``n``)."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Any) -> LatencySummary | None:
        xs = np.asarray(values, dtype=float)
        if xs.size == 0:
            return None
        p50, p90, p99 = (float(v) for v in np.percentile(xs, (50, 90, 99)))
        return cls(int(xs.size), float(xs.mean()), p50, p90, p99, float(xs.max()))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("n", "mean", "p50", "p90", "p99", "max")}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LatencySummary:
        d = validate.mapping(where, data, ("n", "mean", "p50", "p90", "p99", "max"), ())
        n = validate.integer(validate.join(where, "n"), d.get("n"), lo=1)
        vals = {
            k: validate.number(validate.join(where, k), d.get(k), lo=0.0)
            for k in ("mean", "p50", "p90", "p99", "max")
        }
        return cls(n, **vals)


@dataclass(frozen=True)
class RequestTimes:
    """Per-request columns (seconds; index = request number): arrival, admission (its prefill
    starts), first token, finish, and its lengths."""

    arrival: tuple[float, ...]
    admitted: tuple[float, ...]
    first: tuple[float, ...]
    finish: tuple[float, ...]
    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.arrival)
        for name in _COLUMNS:
            if len(getattr(self, name)) != n:
                raise ConfigError(f"per_request.{name}", f"needs {n} values")

    def to_dict(self) -> dict[str, Any]:
        return {name: list(getattr(self, name)) for name in _COLUMNS}

    @classmethod
    def from_dict(cls, data: Any, where: str = "per_request") -> RequestTimes:
        d = validate.mapping(where, data, _COLUMNS, _COLUMNS)
        return cls(**{n: tuple(validate.sequence(validate.join(where, n), d[n])) for n in _COLUMNS})


_COLUMNS = ("arrival", "admitted", "first", "finish", "prompt_tokens", "output_tokens")


@dataclass(frozen=True)
class ServingRecord:
    """One scheme serving one workload (simulated now; measured later, same shape).

    ``speedups[baseline][metric]``: baseline ``ar_same_load`` (AR on one device) or
    ``pp_ar_same_load`` (PP-AR on the same k devices), metric ``throughput`` (tokens/s
    ratio), ``tpot_p50`` and ``e2e_p50`` (baseline latency ÷ this latency); ``baselines``
    names the scheme each baseline ran. ``little`` holds the Little's-law check over the
    arrival window (see GLOSSARY)."""

    origin: str
    engine: str
    scheme: SchemeConfig
    workload: Workload
    settings: ServingSettings
    requests: int
    output_tokens: int
    prompt_tokens: int
    duration_s: float
    throughput_tok_s: float
    requests_per_s: float
    ttft: LatencySummary | None
    tpot: LatencySummary | None
    e2e: LatencySummary | None
    queue: LatencySummary | None
    goodput_rps: float | None = None
    mean_batch: float = 0.0
    mean_queue: float = 0.0
    little: dict[str, float] = field(default_factory=dict)
    stage_busy_fraction: tuple[float, ...] = ()
    stage_wasted_fraction: tuple[float, ...] = ()
    flushes: int = 0
    steps: int = 0
    acceptance_observed: AcceptanceObserved | None = None
    speedups: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    profile: HardwareProfile | None = None
    per_request: RequestTimes | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate.choice("origin", self.origin, ORIGINS)
        for name, cls in (
            ("scheme", SchemeConfig),
            ("workload", Workload),
            ("settings", ServingSettings),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(name, f"must be a {cls.__name__}")
        for name in ("requests", "output_tokens", "prompt_tokens", "flushes", "steps"):
            validate.integer(name, getattr(self, name), lo=0)
        for name in (
            "duration_s",
            "throughput_tok_s",
            "requests_per_s",
            "mean_batch",
            "mean_queue",
        ):
            validate.number(name, getattr(self, name), lo=0.0)
        if self.goodput_rps is not None:
            validate.number("goodput_rps", self.goodput_rps, lo=0.0)
        for base, metrics in self.speedups.items():
            for m, v in metrics.items():
                if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                    raise ConfigError(f"speedups.{base}.{m}", f"must be a finite ratio, got {v!r}")

    @property
    def label(self) -> str:
        return self.scheme.label()

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **tag("ServingRecord"),
            "origin": self.origin,
            "engine": self.engine,
            "scheme": self.scheme.to_dict(),
            "workload": self.workload.to_dict(),
            "settings": self.settings.to_dict(),
            "seed": self.seed,
        }
        for name in _SCALARS:
            out[name] = getattr(self, name)
        for name in ("ttft", "tpot", "e2e", "queue"):
            v = getattr(self, name)
            out[name] = None if v is None else v.to_dict()
        out["little"] = dict(self.little)
        out["stage_busy_fraction"] = list(self.stage_busy_fraction)
        out["stage_wasted_fraction"] = list(self.stage_wasted_fraction)
        out["acceptance_observed"] = (
            None if self.acceptance_observed is None else self.acceptance_observed.to_dict()
        )
        out["speedups"] = {b: dict(m) for b, m in self.speedups.items()}
        out["baselines"] = dict(self.baselines)
        out["notes"] = dict(self.notes)
        if self.profile is not None:
            out["profile"] = self.profile.to_dict()
        if self.per_request is not None:
            out["per_request"] = self.per_request.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> ServingRecord:
        allowed = (
            "origin",
            "engine",
            "scheme",
            "workload",
            "settings",
            "seed",
            *_SCALARS,
            "ttft",
            "tpot",
            "e2e",
            "queue",
            "little",
            "stage_busy_fraction",
            "stage_wasted_fraction",
            "acceptance_observed",
            "speedups",
            "baselines",
            "notes",
            "profile",
            "per_request",
        )
        d = open_record(
            data,
            "ServingRecord",
            where,
            allowed,
            ("origin", "engine", "scheme", "workload", "settings", *_SCALARS[:6]),
        )
        j = lambda n: validate.join(where, n)  # noqa: E731

        def fractions(n: str) -> tuple[float, ...]:
            seq = validate.sequence(j(n), d.get(n, []))
            return tuple(validate.number(f"{j(n)}[{i}]", v, lo=0.0) for i, v in enumerate(seq))

        try:
            kw: dict[str, Any] = {n: d[n] for n in _SCALARS if n in d}
            for n in ("ttft", "tpot", "e2e", "queue"):
                kw[n] = None if d.get(n) is None else LatencySummary.from_dict(d[n], j(n))
            if d.get("acceptance_observed") is not None:
                kw["acceptance_observed"] = AcceptanceObserved.from_dict(
                    d["acceptance_observed"], j("acceptance_observed")
                )
            if d.get("profile") is not None:
                kw["profile"] = HardwareProfile.from_dict(d["profile"], j("profile"))
            if d.get("per_request") is not None:
                kw["per_request"] = RequestTimes.from_dict(d["per_request"], j("per_request"))
            return cls(
                origin=d["origin"],
                engine=d["engine"],
                scheme=SchemeConfig.from_dict(d["scheme"], j("scheme")),
                workload=Workload.from_dict(d["workload"], j("workload")),
                settings=ServingSettings.from_dict(d["settings"], j("settings")),
                seed=d.get("seed"),
                little=dict(validate.mapping(j("little"), d.get("little", {}), _LITTLE)),
                stage_busy_fraction=fractions("stage_busy_fraction"),
                stage_wasted_fraction=fractions("stage_wasted_fraction"),
                speedups={
                    b: dict(m)
                    for b, m in validate.mapping(
                        j("speedups"), d.get("speedups", {}), ("ar_same_load", "pp_ar_same_load")
                    ).items()
                },
                baselines=dict(d.get("baselines", {})),
                notes=dict(d.get("notes", {})),
                **kw,
            )
        except ConfigError as err:
            raise (err.within(where) if where else err) from None


_SCALARS = (
    "requests",
    "output_tokens",
    "prompt_tokens",
    "duration_s",
    "throughput_tok_s",
    "requests_per_s",
    "goodput_rps",
    "mean_batch",
    "mean_queue",
    "flushes",
    "steps",
)
_LITTLE = ("window_s", "mean_in_system", "arrival_rate", "mean_time_in_system", "relative_error")
