"""The serving model's front door: (profile, scheme, workload, settings) → ServingRecord.

``simulate_serving`` runs one scheme; ``compare_serving`` runs several on the same workload
(same seed → the same requests, lengths, arrival times and acceptance streams) and fills each
record's speedups over AR on one device and over PP-AR on the same k devices at that load.
"""

from __future__ import annotations

import math
from dataclasses import replace

import simpy

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.serving_record import ServingRecord, ServingSettings
from ppsd_sim.records.workload import Workload
from ppsd_sim.serving.iteration import run_iteration
from ppsd_sim.serving.metrics import summarise
from ppsd_sim.serving.pipeline import PipelineModel
from ppsd_sim.serving.requests import Realised, realise
from ppsd_sim.serving.scheduler import Scheduler, check_budget
from ppsd_sim.serving.step_costs import DeviceSteps, StageSteps, device_steps, stage_steps

ENGINE = "simpy"
SPECULATIVE = ("eesd", "ppsd")
BASE_AR = "ar_same_load"
BASE_PP = "pp_ar_same_load"
BASELINE_POLICY = "real_first"  # PP-AR's standard schedule: k waves


def draft_slots(scheme: SchemeConfig) -> int:
    """KV tokens a request reserves beyond prompt + output for tokens not yet verified."""
    if scheme.kind == "eesd":
        assert scheme.gamma is not None  # required for EESD by SchemeConfig
        return int(scheme.gamma)
    if scheme.kind == "ppsd":
        return scheme.inflight_limit
    return 0


def _check_types(profile: object, workload: object, settings: object) -> None:
    for name, value, cls in (
        ("profile", profile, HardwareProfile),
        ("workload", workload, Workload),
        ("settings", settings, ServingSettings),
    ):
        if not isinstance(value, cls):
            raise ConfigError(name, f"must be a {cls.__name__}")


def prepare(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    workload: Workload,
    settings: ServingSettings,
    seed: int,
    reqs: Realised | None = None,
) -> tuple[int, Realised, DeviceSteps | StageSteps]:
    """Every check a run makes before it starts (types, layers, the step costs the scheme
    needs, acceptance, KV budget), so a bad input is refused before any simulation; returns
    the seed, the realised requests and the scheme's step costs."""
    _check_types(profile, workload, settings)
    if not isinstance(scheme, SchemeConfig):
        raise ConfigError("scheme", "must be a SchemeConfig")
    seed = validate.integer("seed", seed, lo=0)
    scheme.check_layers(profile.n_layers)
    if scheme.kind in ("ar", "tp_ar", "eesd"):
        steps: DeviceSteps | StageSteps = device_steps(profile, scheme)
    else:
        steps = stage_steps(profile, scheme)
    reqs = realise(workload, seed) if reqs is None else reqs
    if scheme.kind in SPECULATIVE:
        missing = [i for i, a in enumerate(reqs.acceptance) if a is None]
        if missing:
            raise ConfigError(
                "workload.acceptance",
                f"is required for {scheme.kind.upper()} (request {missing[0]} has none)",
            )
    check_budget(reqs, settings, draft_slots(scheme))
    return seed, reqs, steps


def simulate_serving(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    workload: Workload,
    settings: ServingSettings | None = None,
    *,
    seed: int = 0,
    keep_requests: bool = False,
    keep_profile: bool = True,
) -> ServingRecord:
    """Serve ``workload`` with ``scheme`` on ``profile``. Same inputs and seed → the same
    record. ``keep_requests`` stores every request's timestamps (``per_request``)."""
    settings = settings or ServingSettings()
    seed, reqs, steps = prepare(profile, scheme, workload, settings, seed)
    speculative = scheme.kind in SPECULATIVE
    env = simpy.Environment()
    sched = Scheduler(env, reqs, settings, draft_slots(scheme), workload.arrivals.think_s)
    if workload.arrivals.kind == "closed":
        assert workload.arrivals.users is not None  # required for a closed loop by Arrivals
        sched.start_closed(int(workload.arrivals.users))
    else:
        sched.start()
    notes: dict[str, str] = {}
    if isinstance(steps, DeviceSteps):
        res = run_iteration(env, sched, steps, reqs, speculative)
        devices = scheme.n_devices
        busy = [res.busy_s[0]] * devices
        wasted = [res.wasted_s[0]] * devices
    else:
        limit = scheme.inflight_limit if scheme.kind == "ppsd" else 1
        res = PipelineModel(env, sched, steps, reqs, settings, speculative, limit).run()
        busy, wasted = res.busy_s, res.wasted_s
    if steps.profiled_tokens is not None and res.max_step_tokens > steps.profiled_tokens:
        notes["extrapolated"] = (
            f"steps of up to {res.max_step_tokens} tokens; the profile's step costs stop at "
            f"{steps.profiled_tokens} tokens (extended linearly)"
        )
    if profile.batched is None:
        notes["step_costs"] = (
            "no batched costs in the profile: a step of n tokens costs factor(n) × the "
            "one-token latency, independent of the KV read"
        )
    fields = summarise(
        sched.arrival,
        sched.admitted,
        sched.first,
        sched.finish,
        reqs.prompt,
        reqs.output,
        settings,
        keep_requests,
    )
    span = fields["duration_s"]
    if res.max_inflight:
        notes["max_inflight"] = str(res.max_inflight)
    return ServingRecord(
        origin="simulated",
        engine=ENGINE,
        scheme=scheme,
        workload=workload,
        settings=settings,
        seed=seed,
        profile=profile if keep_profile else None,
        stage_busy_fraction=tuple(b / span if span > 0 else 0.0 for b in busy),
        stage_wasted_fraction=tuple(w / span if span > 0 else 0.0 for w in wasted),
        flushes=res.flushes,
        steps=res.steps,
        acceptance_observed=res.observed,
        notes=notes,
        **fields,
    )


def twin(scheme: SchemeConfig) -> SchemeConfig | None:
    """The non-speculative twin a speculative scheme must beat: EESD → AR, PPSD → PP-AR on the
    same stages; None for the non-speculative schemes."""
    if scheme.kind == "eesd":
        return SchemeConfig.ar()
    if scheme.kind == "ppsd":
        return SchemeConfig.pp_ar(scheme.stage_boundaries)
    return None


def pp_ar_baseline(scheme: SchemeConfig, n_layers: int) -> SchemeConfig | None:
    """PP-AR on the same devices: PPSD's stages, or k even stages for TP-AR(k); None for the
    one-device schemes."""
    if scheme.kind in ("ppsd", "pp_ar"):
        return SchemeConfig.pp_ar(scheme.stage_boundaries)
    if scheme.kind == "tp_ar":
        assert scheme.tp_degree is not None  # required for TP-AR by SchemeConfig
        if scheme.tp_degree > n_layers:
            return None
        return SchemeConfig.pp_ar_even(n_layers, int(scheme.tp_degree))
    return None


def _ratios(rec: ServingRecord, base: ServingRecord) -> dict[str, float]:
    out = {}
    if rec.throughput_tok_s > 0:
        out["throughput"] = rec.throughput_tok_s / base.throughput_tok_s
    for name in ("tpot", "e2e"):
        mine, theirs = getattr(rec, name), getattr(base, name)
        if mine is not None and theirs is not None and mine.p50 > 0:
            out[f"{name}_p50"] = theirs.p50 / mine.p50
    return {k: v for k, v in out.items() if math.isfinite(v)}


def compare_serving(
    profile: HardwareProfile,
    schemes: list[SchemeConfig],
    workload: Workload,
    settings: ServingSettings | None = None,
    *,
    seed: int = 0,
    keep_requests: bool = False,
    keep_profile: bool = True,
    shared: dict[tuple[SchemeConfig, ServingSettings], ServingRecord] | None = None,
) -> list[ServingRecord]:
    """Each scheme on the same workload, with ``speedups`` over AR (``ar_same_load``) and over
    PP-AR on the same stages/devices (``pp_ar_same_load``, where the scheme uses k devices;
    always under the ``real_first`` wave schedule). Every scheme's inputs are checked before
    any runs. Baselines not in ``schemes`` are run too (not returned); each runs once.
    ``shared`` keeps the non-speculative runs (the baselines among them) between calls on the
    same profile, lengths, arrivals, seed and keep flags, whatever their acceptance (which a
    non-speculative scheme never reads): a sweep's points at one load share their baselines."""
    schemes = validate.sequence("schemes", schemes, min_len=1)
    settings = settings or ServingSettings()
    _check_types(profile, workload, settings)
    reqs = realise(workload, validate.integer("seed", seed, lo=0))
    for i, s in enumerate(schemes):
        if not isinstance(s, SchemeConfig):
            raise ConfigError(f"schemes[{i}]", "must be a SchemeConfig")
    # refuse a bad scheme or budget before any work; the most draft slots first, so that a
    # budget refused names the size every scheme fits in
    for s in sorted(schemes, key=draft_slots, reverse=True):
        prepare(profile, s, workload, settings, seed, reqs)
    own: dict[tuple[SchemeConfig, ServingSettings], ServingRecord] = {}
    plain = {} if shared is None else shared

    def run(s: SchemeConfig, st: ServingSettings) -> ServingRecord:
        cache = own if s.kind in SPECULATIVE else plain
        if (s, st) not in cache:
            cache[(s, st)] = simulate_serving(
                profile,
                s,
                workload,
                st,
                seed=seed,
                keep_requests=keep_requests,
                keep_profile=keep_profile,
            )
        return cache[(s, st)]

    # the PP-AR baseline runs the usual pipeline-parallel schedule (k waves) whatever the
    # policy the compared schemes use: a speedup over PP-AR is over its standard form
    wave = replace(settings, policy=BASELINE_POLICY)
    out = []
    for s in schemes:
        rec = run(s, settings)
        speedups, names = {}, {}
        ar = run(SchemeConfig.ar(), settings)
        speedups[BASE_AR], names[BASE_AR] = _ratios(rec, ar), ar.scheme.label()
        pp = pp_ar_baseline(s, profile.n_layers)
        if pp is not None:
            base = run(pp, wave)
            label = base.scheme.label()
            if settings.policy != BASELINE_POLICY:
                label += f" ({BASELINE_POLICY})"
            speedups[BASE_PP], names[BASE_PP] = _ratios(rec, base), label
        out.append(replace(rec, speedups=speedups, baselines=names))
    return out
