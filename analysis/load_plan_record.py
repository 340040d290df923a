"""The load plan as a versioned record (``LoadPlan``): for each load (batch size, closed-loop
users or request rate) the configurations simulated and how they served it, and the
switch-off point of each speculative scheme. Written by ``ppsd plan --batch/--users/--rate
--out`` and read back field by field (``LoadPlan.from_dict``) by ``ppsd report``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from analysis.curves import AcceptanceCurve
from analysis.plan_record import ALPHA_STATUSES
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.profile import SOURCES
from ppsd_sim.records.schema import open_record, tag
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.serving_record import POLICIES

RECORD = "LoadPlan"
LOAD_KINDS = ("batch", "users", "rate")
#: the ranking metrics: ``compare_serving``'s speedup keys (throughput: higher is better;
#: p50 TPOT and p50 end-to-end latency: lower is better)
METRICS = ("throughput", "tpot_p50", "e2e_p50")
METRIC_LABEL = {
    "throughput": "throughput (tokens/s)",
    "tpot_p50": "p50 time per output token",
    "e2e_p50": "p50 end-to-end latency",
}
#: what each speculative scheme must beat: its non-speculative twin (``serving.twin``) and
#: the ``compare_serving`` baseline that is that twin
TWIN_BASELINE = {"eesd": "ar_same_load", "ppsd": "pp_ar_same_load"}
TWIN_LABEL = {"eesd": "AR (one device)", "ppsd": "PP-AR on the same stages"}
SPECULATIVE = tuple(TWIN_BASELINE)
BASE_KINDS = ("ar", "tp_ar", "pp_ar")  # the non-speculative ways to use the devices
#: what a switch-off is measured against: ``twin`` (EESD: AR; PPSD: PP-AR on the same
#: stages, run by ``compare_serving`` under the same settings), ``ar`` (AR on one device, the
#: plan's own AR row) and ``best_base`` (the best AR, TP-AR or PP-AR row of the plan on at
#: most as many devices); EESD uses one device, so all three are AR and only ``twin`` is kept
BASELINES = ("twin", "ar", "best_base")
FAMILY_BASELINES = {"eesd": ("twin",), "ppsd": BASELINES}
SWITCH_STATUSES = ("switches_off", "never_wins", "always_wins")
MAX_LOAD = {"batch": 4096, "users": 100_000}


def _opt(where: str, v: Any, **bounds: Any) -> float | None:
    return None if v is None else validate.number(where, v, **bounds)


def baseline_label(family: str, baseline: str) -> str:
    """A switch-off baseline in words (GLOSSARY: switch-off point)."""
    if baseline == "twin":
        return TWIN_LABEL[family]
    if baseline == "ar":
        return "AR on one device"
    return "the best of AR, TP-AR, PP-AR on ≤ the same devices"


@dataclass(frozen=True)
class Load:
    """One load point: ``batch`` B (a closed loop keeping B sequences in flight, max batch B),
    ``users`` N (a closed loop of N users with the question's think time and max batch) or
    ``rate`` R (Poisson arrivals, requests/s)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        validate.choice("load.kind", self.kind, LOAD_KINDS)
        if self.kind == "rate":
            v = validate.number("load.value", self.value, lo=0.0, lo_open=True, hi=1e9)
            object.__setattr__(self, "value", float(v))
        else:
            v = validate.integer("load.value", self.value, lo=1, hi=MAX_LOAD[self.kind])
            object.__setattr__(self, "value", int(v))

    def label(self) -> str:
        if self.kind == "batch":
            return f"batch {self.value}"
        if self.kind == "users":
            return f"{self.value} users"
        return f"{self.value:g} req/s"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Load:
        d = validate.mapping(where, data, ("kind", "value"), ("kind", "value"))
        try:
            return cls(d["kind"], d["value"])
        except ConfigError as err:
            raise ConfigError(err.field.replace("load", where, 1), err.message) from None


_ROW_NUMBERS = (
    "throughput_tok_s",
    "requests_per_s",
    "ttft_p50",
    "tpot_p50",
    "tpot_p99",
    "e2e_p50",
    "mean_batch",
    "goodput_rps",
)
_ROW_FIELDS = (
    "scheme", "label", "devices", "policy", "alpha", "alpha_status", *_ROW_NUMBERS,
    "speedups", "baselines", "kv_budget", "notes",
)  # fmt: skip


@dataclass(frozen=True)
class LoadRow:
    """One configuration serving one load (simulated): what it achieved and its speedups,
    each under the name of its baseline (``baselines``: the scheme each baseline ran).
    ``policy`` is the pipelines' stage-1 slot policy (None for AR, TP-AR, EESD);
    ``kv_budget`` the KV tokens its devices hold when that bound the run (None: it did
    not)."""

    scheme: SchemeConfig
    policy: str | None
    alpha: float | None
    alpha_status: str
    throughput_tok_s: float
    requests_per_s: float
    ttft_p50: float | None
    tpot_p50: float | None
    tpot_p99: float | None
    e2e_p50: float | None
    mean_batch: float
    goodput_rps: float | None = None
    speedups: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)
    kv_budget: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def devices(self) -> int:
        return self.scheme.n_devices

    @property
    def kind(self) -> str:
        return self.scheme.kind

    def value(self, metric: str) -> float | None:
        """The metric's own value (tokens/s or seconds)."""
        return self.throughput_tok_s if metric == "throughput" else getattr(self, metric)

    def score(self, metric: str) -> float:
        """Higher is better: tokens/s, or minus the latency (−∞ when undefined)."""
        v = self.value(metric)
        if v is None:
            return -math.inf
        return v if metric == "throughput" else -v

    def over_twin(self, metric: str) -> float | None:
        """Speedup over the non-speculative twin (EESD: AR; PPSD: PP-AR on its stages) on
        ``metric``; None for the non-speculative schemes."""
        base = TWIN_BASELINE.get(self.kind)
        return None if base is None else self.speedups.get(base, {}).get(metric)

    def layout(self) -> str:
        s = self.scheme
        if s.kind in ("ppsd", "pp_ar"):
            out = "stages end " + ",".join(map(str, s.stage_boundaries))
        elif s.kind == "eesd":
            out = f"γ={s.gamma}"
        else:
            out = "-"
        return out + (f", {self.policy}" if self.policy else "")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scheme": self.scheme.to_dict(),
            "label": self.scheme.label(),
            "devices": self.devices,
            "policy": self.policy,
            "alpha": self.alpha,
            "alpha_status": self.alpha_status,
        }
        out.update({n: getattr(self, n) for n in _ROW_NUMBERS})
        out.update(
            speedups={b: dict(m) for b, m in self.speedups.items()},
            baselines=dict(self.baselines),
            kv_budget=self.kv_budget,
            notes=list(self.notes),
        )
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LoadRow:
        j = validate.join
        d = validate.mapping(
            where, data, _ROW_FIELDS, ("scheme", "alpha_status", "throughput_tok_s")
        )
        scheme = SchemeConfig.from_dict(d["scheme"], j(where, "scheme"))
        if "devices" in d and d["devices"] != scheme.n_devices:
            raise ConfigError(
                j(where, "devices"), f"{scheme.label()} uses {scheme.n_devices}, got {d['devices']}"
            )
        policy = d.get("policy")
        if policy is not None:
            validate.choice(j(where, "policy"), policy, POLICIES)
        alpha = d.get("alpha")
        if (scheme.kind in SPECULATIVE) != (alpha is not None):
            need = "is required" if alpha is None else "must be null"
            raise ConfigError(j(where, "alpha"), f"{need} for {scheme.label()}")
        nums = {
            n: _opt(j(where, n), d.get(n), lo=0.0)
            for n in _ROW_NUMBERS
            if n not in ("throughput_tok_s", "requests_per_s", "mean_batch")
        }
        speedups: dict[str, dict[str, float]] = {}
        for b, m in validate.mapping(
            j(where, "speedups"), d.get("speedups", {}), ("ar_same_load", "pp_ar_same_load")
        ).items():
            w = j(where, f"speedups.{b}")
            speedups[b] = {
                k: float(validate.number(j(w, k), v, lo=0.0))
                for k, v in validate.mapping(w, m, METRICS).items()
            }
        kv = d.get("kv_budget")
        return cls(
            scheme=scheme,
            policy=policy,
            alpha=None if alpha is None else validate.probability(j(where, "alpha"), alpha),
            alpha_status=validate.choice(
                j(where, "alpha_status"), d["alpha_status"], ALPHA_STATUSES
            ),
            throughput_tok_s=validate.number(
                j(where, "throughput_tok_s"), d["throughput_tok_s"], lo=0.0
            ),
            requests_per_s=validate.number(
                j(where, "requests_per_s"), d.get("requests_per_s", 0.0), lo=0.0
            ),
            mean_batch=validate.number(j(where, "mean_batch"), d.get("mean_batch", 0.0), lo=0.0),
            speedups=speedups,
            baselines={
                str(k): str(v)
                for k, v in validate.mapping(
                    j(where, "baselines"),
                    d.get("baselines", {}),
                    ("ar_same_load", "pp_ar_same_load"),
                ).items()
            },
            kv_budget=None if kv is None else validate.integer(j(where, "kv_budget"), kv, lo=0),
            notes=tuple(str(n) for n in validate.sequence(j(where, "notes"), d.get("notes", []))),
            **nums,
        )


def ratio(row: LoadRow, base: LoadRow, metric: str) -> float | None:
    """``row`` over ``base`` on ``metric`` (> 1: ``row`` is better); None when undefined."""
    mine, theirs = row.value(metric), base.value(metric)
    if mine is None or theirs is None:
        return None
    if metric == "throughput":
        return mine / theirs if theirs > 0 else None
    return theirs / mine if mine > 0 else None


@dataclass(frozen=True)
class LoadPoint:
    """Every configuration simulated at one load, best first by ``metric``."""

    load: Load
    rows: tuple[LoadRow, ...]
    metric: str
    notes: tuple[str, ...] = ()

    def best(self, kinds: tuple[str, ...] | None = None, devices: int | None = None) -> LoadRow:
        """The best row (of ``kinds`` / on exactly ``devices`` devices, when given)."""
        pick = [
            r
            for r in self.rows
            if (kinds is None or r.kind in kinds) and (devices is None or r.devices == devices)
        ]
        if not pick:
            raise ConfigError("kinds", f"no {kinds or 'configuration'} was simulated here")
        return max(pick, key=lambda r: (r.score(self.metric), -r.devices))

    def has(self, kinds: tuple[str, ...], devices: int | None = None) -> bool:
        return any(r.kind in kinds and (devices is None or r.devices == devices) for r in self.rows)

    def base_for(self, row: LoadRow, baseline: str) -> LoadRow | None:
        """The plan's own non-speculative row ``row`` is compared with under ``baseline``
        (``ar``: AR; ``best_base``: the best AR/TP-AR/PP-AR on ≤ ``row``'s devices); None
        for ``twin`` (compare_serving's) or when no such row was simulated."""
        if baseline == "ar":
            pick = [r for r in self.rows if r.kind == "ar"]
        elif baseline == "best_base":
            pick = [r for r in self.rows if r.kind in BASE_KINDS and r.devices <= row.devices]
        else:
            return None
        return max(pick, key=lambda r: (r.score(self.metric), -r.devices)) if pick else None

    def speedup(self, row: LoadRow, baseline: str = "twin") -> float | None:
        """``row``'s speedup on the point's metric over ``baseline`` (``BASELINES``):
        throughput ratio, or the baseline's latency ÷ the row's."""
        validate.choice("baseline", baseline, BASELINES)
        if baseline == "twin":
            return row.over_twin(self.metric)
        base = self.base_for(row, baseline)
        return None if base is None else ratio(row, base, self.metric)

    def wins(self, family: str, baseline: str = "twin") -> bool:
        """Does any simulated configuration of ``family`` beat ``baseline``?"""
        return any(
            (v := self.speedup(r, baseline)) is not None and v > 1.0
            for r in self.rows
            if r.kind == family
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "load": self.load.to_dict(),
            "metric": self.metric,
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LoadPoint:
        j = validate.join
        d = validate.mapping(where, data, ("load", "metric", "rows", "notes"), ("load", "rows"))
        return cls(
            load=Load.from_dict(d["load"], j(where, "load")),
            metric=validate.choice(j(where, "metric"), d.get("metric", "throughput"), METRICS),
            rows=tuple(
                LoadRow.from_dict(r, j(where, f"rows[{i}]"))
                for i, r in enumerate(validate.sequence(j(where, "rows"), d["rows"], min_len=1))
            ),
            notes=tuple(str(n) for n in validate.sequence(j(where, "notes"), d.get("notes", []))),
        )


@dataclass(frozen=True)
class SwitchOff:
    """Where a speculative scheme stops paying: ``switch_off`` is the smallest load above
    ``last_win`` (the largest load at which some configuration of ``family`` beat its
    twin) at which none does, found between the listed loads by bisection. ``status``:
    ``switches_off`` (both known), ``never_wins`` (it loses at every listed load) or
    ``always_wins`` (it still wins at the largest). ``alpha_shift``: the α(E) curve moved by
    this much (0 for the question's own, ±0.05 for the sensitivity)."""

    family: str
    metric: str
    alpha_shift: float
    status: str
    last_win: float | None
    switch_off: float | None
    load_kind: str
    evaluated: tuple[float, ...] = ()  # every load the search simulated, ascending
    baseline: str = "twin"

    def __post_init__(self) -> None:
        validate.choice("switch_off.family", self.family, SPECULATIVE)
        validate.choice("switch_off.baseline", self.baseline, FAMILY_BASELINES[self.family])
        validate.choice("switch_off.status", self.status, SWITCH_STATUSES)
        validate.choice("switch_off.load_kind", self.load_kind, LOAD_KINDS)
        validate.choice("switch_off.metric", self.metric, METRICS)
        if self.load_kind != "rate":  # a read-back JSON number: batch sizes, users are whole
            for name in ("last_win", "switch_off"):
                v = getattr(self, name)
                if v is not None:
                    if float(v) != int(v):
                        raise ConfigError(f"switch_off.{name}", f"must be whole, got {v!r}")
                    object.__setattr__(self, name, int(v))
            object.__setattr__(self, "evaluated", tuple(int(v) for v in self.evaluated))
        if (self.status == "switches_off") != (
            self.last_win is not None and self.switch_off is not None
        ):
            raise ConfigError("switch_off.status", f"{self.status} does not match the loads")

    @property
    def twin(self) -> str:
        return TWIN_LABEL[self.family]

    @property
    def against(self) -> str:
        """The baseline in words."""
        return baseline_label(self.family, self.baseline)

    def label(self) -> str:
        def ld(v: float) -> str:
            return Load(self.load_kind, v).label()

        if self.status == "switches_off":
            assert self.last_win is not None and self.switch_off is not None
            return f"{ld(self.switch_off)} (still wins at {ld(self.last_win)})"
        if self.status == "never_wins":
            return "never wins at these loads"
        return "still wins at the largest load"

    def short(self) -> str:
        if self.status == "switches_off":
            assert self.switch_off is not None
            return Load(self.load_kind, self.switch_off).label()
        return {"never_wins": "never wins", "always_wins": "not reached"}[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "twin": self.twin,
            "baseline": self.baseline,
            "against": self.against,
            "metric": self.metric,
            "alpha_shift": self.alpha_shift,
            "status": self.status,
            "last_win": self.last_win,
            "switch_off": self.switch_off,
            "load_kind": self.load_kind,
            "evaluated": list(self.evaluated),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SwitchOff:
        j = validate.join
        fields = ("family", "twin", "baseline", "against", "metric", "alpha_shift", "status")
        d = validate.mapping(
            where,
            data,
            (*fields, "last_win", "switch_off", "load_kind", "evaluated"),
            ("family", "status"),
        )
        try:
            return cls(
                family=d["family"],
                metric=d.get("metric", "throughput"),
                alpha_shift=validate.number(
                    j(where, "alpha_shift"), d.get("alpha_shift", 0.0), lo=-1.0, hi=1.0
                ),
                status=d["status"],
                baseline=d.get("baseline", "twin"),
                last_win=_opt(j(where, "last_win"), d.get("last_win"), lo=0.0),
                switch_off=_opt(j(where, "switch_off"), d.get("switch_off"), lo=0.0),
                load_kind=d.get("load_kind", "batch"),
                evaluated=tuple(
                    float(validate.number(j(where, f"evaluated[{i}]"), v, lo=0.0))
                    for i, v in enumerate(
                        validate.sequence(j(where, "evaluated"), d.get("evaluated", []))
                    )
                ),
            )
        except ConfigError as err:
            if err.field.startswith("switch_off."):
                raise ConfigError(j(where, err.field.split(".", 1)[1]), err.message) from None
            raise


_PLAN_FIELDS = (
    "devices", "metric", "load_kind", "workload", "profile_source", "profile_label", "curve",
    "memory", "seed", "points", "switch_offs", "notes",
)  # fmt: skip


@dataclass(frozen=True)
class LoadPlan:
    """The answer to one load question: the points (one per listed load, ascending) and the
    switch-off of each speculative scheme at α(E) and at α(E) ± 0.05."""

    devices: int
    metric: str
    load_kind: str
    workload: str  # the requests, in words
    profile_source: str
    profile_label: str
    curve: AcceptanceCurve
    points: tuple[LoadPoint, ...]
    switch_offs: tuple[SwitchOff, ...]
    memory: str = ""
    seed: int = 0
    notes: tuple[str, ...] = ()

    def switch_off(
        self, family: str, alpha_shift: float = 0.0, baseline: str = "twin"
    ) -> SwitchOff | None:
        for s in self.switch_offs:
            if (
                s.family == family
                and s.baseline == baseline
                and abs(s.alpha_shift - alpha_shift) < 1e-12
            ):
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            **tag(RECORD),
            "devices": self.devices,
            "metric": self.metric,
            "load_kind": self.load_kind,
            "workload": self.workload,
            "profile_source": self.profile_source,
            "profile_label": self.profile_label,
            "curve": self.curve.to_dict(),
            "memory": self.memory or None,
            "seed": self.seed,
            "points": [p.to_dict() for p in self.points],
            "switch_offs": [s.to_dict() for s in self.switch_offs],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> LoadPlan:
        """Read a saved load plan, refusing a missing tag, another version or a bad field."""
        j = validate.join
        d = open_record(
            data, RECORD, where, _PLAN_FIELDS, ("devices", "metric", "load_kind", "points", "curve")
        )
        kind = validate.choice(j(where, "load_kind"), d["load_kind"], LOAD_KINDS)
        points = tuple(
            LoadPoint.from_dict(p, j(where, f"points[{i}]"))
            for i, p in enumerate(validate.sequence(j(where, "points"), d["points"], min_len=1))
        )
        for i, p in enumerate(points):
            if p.load.kind != kind:
                raise ConfigError(
                    j(where, f"points[{i}].load.kind"), f"is {p.load.kind!r}, the plan's {kind!r}"
                )
        devices = validate.integer(j(where, "devices"), d["devices"], lo=1)
        for i, p in enumerate(points):
            for r, row in enumerate(p.rows):
                if row.devices > devices:
                    raise ConfigError(
                        j(where, f"points[{i}].rows[{r}].devices"),
                        f"uses {row.devices} devices, more than the plan's {devices}",
                    )
        return cls(
            devices=devices,
            metric=validate.choice(j(where, "metric"), d["metric"], METRICS),
            load_kind=kind,
            workload=str(d.get("workload", "")),
            profile_source=validate.choice(
                j(where, "profile_source"), d.get("profile_source", "hand"), SOURCES
            ),
            profile_label=str(d.get("profile_label", "")),
            curve=AcceptanceCurve.from_dict(d["curve"], j(where, "curve")),
            points=points,
            switch_offs=tuple(
                SwitchOff.from_dict(s, j(where, f"switch_offs[{i}]"))
                for i, s in enumerate(
                    validate.sequence(j(where, "switch_offs"), d.get("switch_offs", []))
                )
            ),
            memory=str(d.get("memory") or ""),
            seed=validate.integer(j(where, "seed"), d.get("seed", 0), lo=0),
            notes=tuple(str(n) for n in validate.sequence(j(where, "notes"), d.get("notes", []))),
        )
