"""Load-aware planning: what serves a given load best on at most k devices — AR, EESD, PP-AR,
TP-AR or PPSD, with which exit, stages, γ and pipeline slot policy — and the switch-off point
above which speculation no longer beats its non-speculative twin.

Every number is a ``compare_serving`` simulation (``ppsd_sim.serving``) of the same requests
(same seed) at that load. The search per load:

- the non-speculative ways to use the devices: AR (one device), TP-AR(k) for every TP degree
  the profile prices (k ≤ devices), PP-AR(k) for k = 2 … devices on the min–max split of all
  layers (``planner.minmax_splits``), under the standard wave schedule (``real_first``);
- EESD: every (E, γ) scored by the serving closed form at the load's batch
  (``closed_form.eesd_tokens_per_s``: a full batch of AR's mean batch at this load, at the
  mean context), the ``shortlist`` best simulated;
- PPSD: no closed form under load, so for each k the ``shortlist`` exits with the best
  batch-1 closed-form rate (each with the batch-1 planner's min–max split) are simulated,
  under every slot policy asked for.

A load is ``batch`` B (a closed loop of B users with no think time and max batch B: B
sequences always in flight), ``users`` N (a closed loop with the question's think time and
max batch) or ``rate`` R (Poisson). Memory: configurations whose weights do not fit a
device are left out (``analysis.memory``); with a KV model (``analysis.kv_memory``) a
configuration's KV budget is the memory its weights leave, applied where it binds (its twin
in that ``compare_serving`` call runs under it too; the ``ar`` and ``best_base`` speedups
compare with the plan's own rows, each under its own room), and one that cannot hold one
request is left out and named.

Switch-off: a speculative family (EESD, PPSD) *wins* at a load when some simulated
configuration of it beats its twin (EESD: AR; PPSD: PP-AR on the same stages) on the ranking
metric. The switch-off point is the smallest load above the largest listed load at which it
wins, found by bisection between that load and the next listed one (integers for batch and
users, to 5 % for rates; it assumes one crossing there), and is repeated with α(E) moved by
∓0.05 for its sensitivity to acceptance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from analysis.curves import AcceptanceCurve
from analysis.kv_memory import KVRoom
from analysis.load_plan_record import (
    FAMILY_BASELINES,
    LOAD_KINDS,
    METRICS,
    SPECULATIVE,
    Load,
    LoadPlan,
    LoadPoint,
    LoadRow,
    SwitchOff,
)
from analysis.memory import WeightBudget
from analysis.planner import (
    SENSITIVITY,
    alpha_status,
    enumerate_candidates,
    minmax_splits,
    split_boundaries,
)
from ppsd_sim.costs import contention
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.serving_record import POLICIES, ServingRecord, ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Workload
from ppsd_sim.serving import compare_serving
from ppsd_sim.serving.closed_form import eesd_tokens_per_s
from ppsd_sim.serving.simulate import draft_slots

#: the metric a load kind is ranked by unless asked otherwise: a closed loop's throughput; at
#: an arrival rate every scheme that keeps up serves the same tokens/s, so latency decides
DEFAULT_METRIC = {"batch": "throughput", "users": "throughput", "rate": "e2e_p50"}
RATE_TOLERANCE = 0.05  # bisection on a rate stops when hi / lo ≤ 1 + this
PIPELINES = ("ppsd", "pp_ar")
BASE_POLICY = "real_first"


@dataclass(frozen=True)
class LoadSetup:
    """What every load point of a question shares: the requests (``prompt``, ``output``
    lengths; ``requests`` per load, default 4 per concurrent sequence and at least 16 for a
    closed loop, 200 at a rate), the scheduler (``max_batch`` for users and rates; a batch
    load B uses B), the closed loop's ``think_s``, the pipelines' slot ``policies`` searched,
    the ``shortlist`` size, the ranking ``metric`` (None: by load kind), goodput targets and
    the seed."""

    prompt: LengthDist = LengthDist.fixed(256)
    output: LengthDist = LengthDist.fixed(128)
    requests: int | None = None
    max_batch: int = 64
    think_s: float = 0.0
    policies: tuple[str, ...] = POLICIES
    shortlist: int = 2
    metric: str | None = None
    tpot_slo_s: float | None = None
    ttft_slo_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt", "output"):
            if not isinstance(getattr(self, name), LengthDist):
                raise ConfigError(name, "must be a LengthDist")
        if self.requests is not None:
            validate.integer("requests", self.requests, lo=1, hi=10**6)
        validate.integer("max_batch", self.max_batch, lo=1, hi=10**6)
        validate.number("think_s", self.think_s, lo=0.0)
        pols = validate.sequence("policies", self.policies, min_len=1)
        for p in pols:
            validate.choice("policies", p, POLICIES)
        object.__setattr__(self, "policies", tuple(dict.fromkeys(pols)))
        validate.integer("shortlist", self.shortlist, lo=1, hi=100)
        if self.metric is not None:
            validate.choice("metric", self.metric, METRICS)
        for name in ("tpot_slo_s", "ttft_slo_s"):
            if getattr(self, name) is not None:
                validate.number(name, getattr(self, name), lo=0.0, lo_open=True)
        validate.integer("seed", self.seed, lo=0)

    def metric_for(self, kind: str) -> str:
        return self.metric or DEFAULT_METRIC[kind]

    def count(self, load: Load) -> int:
        if self.requests is not None:
            return self.requests
        return 200 if load.kind == "rate" else max(16, 4 * int(load.value))

    def workload(self, load: Load, alpha: float | None) -> Workload:
        if load.kind == "rate":
            arrivals = Arrivals.poisson(float(load.value))
        else:
            think = self.think_s if load.kind == "users" else 0.0
            arrivals = Arrivals.closed(int(load.value), think)
        return Workload(
            count=self.count(load),
            prompt=self.prompt,
            output=self.output,
            arrivals=arrivals,
            acceptance=None if alpha is None else AcceptanceSpec.iid(alpha),
        )

    def settings(self, load: Load, policy: str, kv_budget: int | None) -> ServingSettings:
        return ServingSettings(
            max_batch=int(load.value) if load.kind == "batch" else self.max_batch,
            kv_budget=kv_budget,
            policy=policy,
            ttft_slo_s=self.ttft_slo_s,
            tpot_slo_s=self.tpot_slo_s,
        )

    def context(self) -> int:
        """A sequence's typical cached tokens: mean prompt + half the mean output."""
        return round(self.prompt.mean_hint + self.output.mean_hint / 2)

    def label(self, load_kind: str) -> str:
        n = (
            f"{self.requests} requests"
            if self.requests
            else (
                "200 requests"
                if load_kind == "rate"
                else "4 requests per sequence in flight (≥ 16)"
            )
        )
        sched = {
            "batch": "batch B: B sequences always in flight (closed loop, max batch B)",
            "users": f"closed loop, think {self.think_s:g} s, max batch {self.max_batch}",
            "rate": f"Poisson arrivals, max batch {self.max_batch}",
        }[load_kind]
        return f"prompt {self.prompt.label()}, output {self.output.label()}, {n} per load; {sched}"


@dataclass(frozen=True)
class _Cand:
    scheme: SchemeConfig
    alpha: float | None
    status: str  # alpha_status


def shift_curve(curve: AcceptanceCurve, shift: float) -> AcceptanceCurve:
    """α(E) + shift at every exit, clipped to [0, 1] (the sensitivity question)."""
    if shift == 0:
        return curve
    return replace(curve, alphas=tuple(min(1.0, max(0.0, a + shift)) for a in curve.alphas))


class _Search:
    """One question's search state: its inputs and the per-α PPSD shortlists (a cache, so
    the bisection does not redo them)."""

    def __init__(
        self,
        profile: HardwareProfile,
        curve: AcceptanceCurve,
        devices: int,
        setup: LoadSetup,
        kind: str,
        memory: WeightBudget | None,
        kv: KVRoom | None,
        max_gamma: int,
        exits: list[int] | None,
    ) -> None:
        self.profile, self.curve, self.devices, self.setup = profile, curve, devices, setup
        self.kind = kind
        self.memory, self.kv, self.max_gamma, self.exits = memory, kv, max_gamma, exits
        self._ppsd: dict[float, list[_Cand]] = {}
        self._base: dict[float, tuple[list[LoadRow], list[str]]] = {}
        self._fam: dict[tuple[float, float, str], tuple[list[LoadRow], list[str]]] = {}
        self.base = self._baselines()
        n = profile.n_layers
        self.exit_list = (
            sorted(set(exits))
            if exits is not None
            else list(range(max(1, curve.exits[0]), min(n - 1, curve.exits[-1]) + 1))
        )
        self.eesd_fits = self._fits(SchemeConfig.eesd(1, 1))

    def _fits(self, scheme: SchemeConfig) -> bool:
        return self.memory is None or self.memory.fits(scheme)

    def _baselines(self) -> list[SchemeConfig]:
        p, n = self.profile, self.profile.n_layers
        out = [s for s in (SchemeConfig.ar(),) if self._fits(s)]
        out += [
            SchemeConfig.tp_ar(t.degree)
            for t in sorted(p.tp, key=lambda t: t.degree)
            if t.degree <= self.devices and self._fits(SchemeConfig.tp_ar(t.degree))
        ]
        kmax = min(self.devices, n)
        if kmax >= 2:
            slow = contention(p, tuple(range(kmax)))
            best, cut = minmax_splits(p, kmax, slow, self.memory)
            for k in range(2, kmax + 1):
                if best[k][0] == math.inf:
                    continue
                s = SchemeConfig.pp_ar(split_boundaries(0, k, cut)[1:])
                if self._fits(s):
                    out.append(s)
        return out

    def ppsd_shortlist(self, shift: float) -> list[_Cand]:
        """Per k, the ``shortlist`` exits with the best batch-1 closed-form rate."""
        if shift not in self._ppsd:
            curve = shift_curve(self.curve, shift)
            cands = enumerate_candidates(
                self.profile,
                curve,
                self.devices,
                max_gamma=1,
                exits=self.exit_list,
                memory=self.memory,
            )
            by_k: dict[int, list] = {}
            for c in cands:
                if c.scheme.kind == "ppsd":
                    by_k.setdefault(c.scheme.n_stages, []).append(c)
            out = []
            for k in sorted(by_k):
                top = sorted(by_k[k], key=lambda c: -c.tokens_per_s)[: self.setup.shortlist]
                out += [_Cand(c.scheme, c.alpha, c.alpha_status) for c in top]
            self._ppsd[shift] = out
        return self._ppsd[shift]

    def eesd_shortlist(self, shift: float, batch: int) -> list[_Cand]:
        """The ``shortlist`` best (E, γ) by the serving closed form at ``batch``."""
        if not self.eesd_fits:
            return []
        curve = shift_curve(self.curve, shift)
        ctx = self.setup.context()
        scored = []
        for e in self.exit_list:
            a = curve.alpha(e)
            for g in range(1, self.max_gamma + 1):
                s = SchemeConfig.eesd(e, g)
                scored.append((eesd_tokens_per_s(self.profile, s, a, batch, ctx), e, g, a))
        scored.sort(key=lambda t: (-t[0], t[1], t[2]))
        return [
            _Cand(SchemeConfig.eesd(e, g), a, alpha_status(curve, e))
            for _, e, g, a in scored[: self.setup.shortlist]
        ]

    def _kv_budget(self, scheme: SchemeConfig, load: Load) -> tuple[int | None, bool]:
        """(the KV budget to run under — None where it cannot bind —, whether one request
        fits at all)."""
        if self.kv is None:
            return None, True
        cap = self.kv.capacity_tokens(scheme)
        up_p, up_o = self.setup.prompt.upper, self.setup.output.upper
        if up_p is None or up_o is None:
            return cap, cap >= 1
        need = up_p + up_o + draft_slots(scheme)
        if cap < need:
            return cap, False
        concurrent = self.setup.settings(load, BASE_POLICY, None).max_batch
        return (None if cap >= concurrent * need else cap), True

    def _run(self, load: Load, groups: dict[tuple, list[_Cand]], notes: list[str]) -> list[LoadRow]:
        rows = []
        for (alpha, policy, kv), cands in groups.items():
            recs = compare_serving(
                self.profile,
                [c.scheme for c in cands],
                self.setup.workload(load, alpha),
                self.setup.settings(load, policy, kv),
                seed=self.setup.seed,
                keep_profile=False,
            )
            for c, rec in zip(cands, recs, strict=True):
                rows.append(_row(rec, c, policy if c.scheme.kind in PIPELINES else None, kv))
                if kv is not None:
                    notes.append(
                        f"{c.scheme.label()}: KV budget {kv} tokens binds (its twin ran under "
                        "it too; ×AR and ×best≤k compare with each baseline under its own room)"
                    )
        return rows

    def _group(
        self, load: Load, cands: list[_Cand], policies: tuple[str, ...], notes: list[str]
    ) -> dict[tuple, list[_Cand]]:
        groups: dict[tuple, list[_Cand]] = {}
        for c in cands:
            kv, fits = self._kv_budget(c.scheme, load)
            if not fits:
                notes.append(
                    f"{c.scheme.label()}: its devices' KV room ({kv} tokens) cannot hold one request"
                )
                continue
            pols = policies if c.scheme.kind in PIPELINES else (BASE_POLICY,)
            for pol in pols:
                groups.setdefault((c.alpha, pol, kv), []).append(c)
        return groups

    def _base_rows(self, load: Load) -> tuple[list[LoadRow], list[str]]:
        """AR, TP-AR and PP-AR at ``load``: no α, so once per load whatever the shift."""
        if load.value not in self._base:
            notes: list[str] = []
            cands = [_Cand(s, None, "n/a") for s in self.base]
            rows = self._run(load, self._group(load, cands, (BASE_POLICY,), notes), notes)
            self._base[load.value] = (rows, notes)
        return self._base[load.value]

    def _family_rows(
        self, load: Load, shift: float, family: str, ar: LoadRow | None
    ) -> tuple[list[LoadRow], list[str]]:
        key = (load.value, shift, family)
        if key not in self._fam:
            notes: list[str] = []
            if family == "eesd":
                batch = max(1, round(ar.mean_batch)) if ar is not None else self._concurrency(load)
                cands = self.eesd_shortlist(shift, batch)
            else:
                cands = self.ppsd_shortlist(shift)
            rows = self._run(load, self._group(load, cands, self.setup.policies, notes), notes)
            self._fam[key] = (rows, notes)
        return self._fam[key]

    def point(self, load: Load, shift: float, families: tuple[str, ...] = SPECULATIVE) -> LoadPoint:
        """The non-speculative rows at ``load`` and the shortlisted configurations of
        ``families`` (α(E) moved by ``shift``), best first; every row is simulated once per
        (load, α shift) however often the bisections ask."""
        base_rows, base_notes = self._base_rows(load)
        rows, notes = list(base_rows), list(base_notes)
        ar = next((r for r in rows if r.kind == "ar"), None)
        for fam in families:
            more, why = self._family_rows(load, shift, fam, ar)
            rows += more
            notes += why
        metric = self.setup.metric_for(load.kind)
        rows.sort(key=lambda r: (-r.score(metric), r.devices, r.scheme.label(), r.policy or ""))
        return LoadPoint(load, tuple(rows), metric, tuple(dict.fromkeys(notes)))

    def _concurrency(self, load: Load) -> int:
        if load.kind == "batch":
            return int(load.value)
        return self.setup.max_batch


def _row(rec: ServingRecord, c: _Cand, policy: str | None, kv: int | None) -> LoadRow:
    notes = tuple(v for k, v in rec.notes.items() if k == "extrapolated")
    return LoadRow(
        scheme=rec.scheme,
        policy=policy,
        alpha=c.alpha,
        alpha_status=c.status,
        throughput_tok_s=rec.throughput_tok_s,
        requests_per_s=rec.requests_per_s,
        ttft_p50=rec.ttft.p50 if rec.ttft else None,
        tpot_p50=rec.tpot.p50 if rec.tpot else None,
        tpot_p99=rec.tpot.p99 if rec.tpot else None,
        e2e_p50=rec.e2e.p50 if rec.e2e else None,
        mean_batch=rec.mean_batch,
        goodput_rps=rec.goodput_rps,
        speedups={b: dict(m) for b, m in rec.speedups.items()},
        baselines=dict(rec.baselines),
        kv_budget=kv,
        notes=notes,
    )


def _bisect(
    search: _Search, family: str, baseline: str, shift: float, lo: float, hi: float
) -> tuple[float, float, list[float]]:
    """Narrow (lo wins, hi loses) to adjacent integers (batch, users) or to hi / lo ≤ 1 +
    RATE_TOLERANCE (rates); returns (last win, first loss, loads simulated)."""
    kind = search.kind
    seen = []
    while True:
        if kind == "rate":
            if hi / lo <= 1 + RATE_TOLERANCE:
                break
            mid = math.sqrt(lo * hi)
        else:
            if hi - lo <= 1:
                break
            mid = (lo + hi) // 2
        seen.append(mid)
        if search.point(Load(kind, mid), shift, (family,)).wins(family, baseline):
            lo = mid
        else:
            hi = mid
    return lo, hi, seen


def find_switch_off(
    search: _Search, family: str, shift: float, points: list[LoadPoint], baseline: str = "twin"
) -> SwitchOff | None:
    """The switch-off of ``family`` against ``baseline`` from the listed ``points``
    (ascending), refined by bisection; None when no configuration of the family could be
    simulated."""
    if not any(p.has((family,)) for p in points):
        return None
    metric = points[0].metric
    wins = [p.wins(family, baseline) for p in points]
    loads = [p.load.value for p in points]
    kind = points[0].load.kind

    def off(status: str, last: float | None, first: float | None, seen=()) -> SwitchOff:
        ev = tuple(sorted({*loads, *seen}))
        return SwitchOff(family, metric, shift, status, last, first, kind, ev, baseline)

    if wins[-1]:
        return off("always_wins", loads[-1], None)
    if not any(wins):
        return off("never_wins", None, None)
    i = max(j for j, w in enumerate(wins) if w)
    lo, hi, seen = _bisect(search, family, baseline, shift, loads[i], loads[i + 1])
    return off("switches_off", lo, hi, seen)


def parse_loads(kind: str, values: list[float]) -> list[Load]:
    """Loads of one kind, ascending and without repeats."""
    validate.choice("load", kind, LOAD_KINDS)
    vals = validate.sequence(f"--{kind}", values, min_len=1)
    loads = []
    for v in vals:
        try:
            loads.append(Load(kind, v))
        except ConfigError as err:
            raise ConfigError(f"--{kind}", err.message) from None
    return sorted(set(loads), key=lambda ld: ld.value)


def plan_load(
    profile: HardwareProfile,
    curve: AcceptanceCurve,
    devices: int,
    loads: list[Load],
    setup: LoadSetup | None = None,
    *,
    memory: WeightBudget | None = None,
    kv: KVRoom | None = None,
    max_gamma: int = 12,
    exits: list[int] | None = None,
    sensitivity: bool = True,
    require_batched: bool = True,
    profile_label: str = "",
) -> LoadPlan:
    """Answer a load question (module docstring). ``require_batched``: refuse a profile
    without measured or synthesised batched step costs (the serving model's verify-factor
    fallback is no basis for a load plan); the tests turn it off to compare with the batch-1
    planner on the same batch-1 costs."""
    if not isinstance(profile, HardwareProfile):
        raise ConfigError("profile", "must be a HardwareProfile")
    setup = setup or LoadSetup()
    if not isinstance(setup, LoadSetup):
        raise ConfigError("setup", "must be a LoadSetup")
    devices = validate.integer("devices", devices, lo=1, hi=4096)
    max_gamma = validate.integer("max_gamma", max_gamma, lo=1, hi=64)
    loads = validate.sequence("loads", loads, min_len=1)
    for i, ld in enumerate(loads):
        if not isinstance(ld, Load):
            raise ConfigError(f"loads[{i}]", "must be a Load")
    kinds = {ld.kind for ld in loads}
    if len(kinds) > 1:
        raise ConfigError("loads", f"must all be of one kind, got {', '.join(sorted(kinds))}")
    loads = sorted(set(loads), key=lambda ld: ld.value)
    if require_batched and profile.batched is None:
        raise ConfigError(
            "profile",
            "has no batched step costs (it was measured at batch 1): a load plan needs them; "
            "synthesise one (--synth MODEL@DEVICE, e.g. cpu-bench@cpu-2core-epyc for this "
            "CPU) or measure them (the batched profiler of issue 11, not built yet)",
        )
    if memory is not None and memory.n_layers != profile.n_layers:
        raise ConfigError(
            "memory", f"describes {memory.n_layers} layers, the profile {profile.n_layers}"
        )
    if kv is not None and memory is None:
        memory = kv.weights
    # validates exits and the curve against the profile before any simulation
    enumerate_candidates(profile, curve, 1, max_gamma=1, exits=exits, memory=memory)
    search = _Search(profile, curve, devices, setup, loads[0].kind, memory, kv, max_gamma, exits)
    points = [search.point(ld, 0.0) for ld in loads]
    shifts = (0.0, -SENSITIVITY, SENSITIVITY) if sensitivity else (0.0,)
    offs = []
    for shift in shifts:
        pts = points if shift == 0 else [search.point(ld, shift) for ld in loads]
        for fam in SPECULATIVE:
            for baseline in FAMILY_BASELINES[fam]:
                s = find_switch_off(search, fam, shift, pts, baseline)
                if s is not None:
                    offs.append(s)
    notes = []
    if not any(t.degree <= devices for t in profile.tp) and devices > 1:
        notes.append("no TP-AR: the profile prices no tensor-parallel degree ≤ the devices")
    if profile.batched is None:
        notes.append(
            "no batched costs in the profile: a step of n tokens costs factor(n) × the "
            "one-token latency, independent of the KV read"
        )
    return LoadPlan(
        devices=devices,
        metric=setup.metric_for(search.kind),
        load_kind=search.kind,
        workload=setup.label(search.kind),
        profile_source=profile.provenance.source,
        profile_label=profile_label,
        curve=curve,
        points=tuple(points),
        switch_offs=tuple(offs),
        memory=kv.describe() if kv else ("" if memory is None else memory.describe()),
        seed=setup.seed,
        notes=tuple(notes),
    )
