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
from ppsd_sim.serving.requests import realise
from ppsd_sim.serving.scheduler import Scheduler
from ppsd_sim.serving.step_costs import device_steps, stage_steps

ENGINE = "simpy"
SPECULATIVE = ("eesd", "ppsd")
BASE_AR = "ar_same_load"
BASE_PP = "pp_ar_same_load"


def draft_slots(scheme: SchemeConfig) -> int:
    """KV tokens a request reserves beyond prompt + output for tokens not yet verified."""
    if scheme.kind == "eesd":
        return int(scheme.gamma)
    if scheme.kind == "ppsd":
        return scheme.inflight_limit
    return 0


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
    for name, value, cls in (
        ("profile", profile, HardwareProfile),
        ("scheme", scheme, SchemeConfig),
        ("workload", workload, Workload),
        ("settings", settings, ServingSettings),
    ):
        if not isinstance(value, cls):
            raise ConfigError(name, f"must be a {cls.__name__}")
    seed = validate.integer("seed", seed, lo=0)
    scheme.check_layers(profile.n_layers)
    reqs = realise(workload, seed)
    speculative = scheme.kind in SPECULATIVE
    if speculative:
        missing = [i for i, a in enumerate(reqs.acceptance) if a is None]
        if missing:
            raise ConfigError(
                "workload.acceptance",
                f"is required for {scheme.kind.upper()} (request {missing[0]} has none)",
            )
    env = simpy.Environment()
    sched = Scheduler(env, reqs, settings, draft_slots(scheme), workload.arrivals.think_s)
    if workload.arrivals.kind == "closed":
        sched.start_closed(int(workload.arrivals.users))
    else:
        sched.start()
    notes: dict[str, str] = {}
    if scheme.kind in ("ar", "tp_ar", "eesd"):
        steps = device_steps(profile, scheme)
        res = run_iteration(env, sched, steps, reqs, speculative)
        devices = scheme.n_devices
        busy = [res.busy_s[0]] * devices
    else:
        steps = stage_steps(profile, scheme)
        limit = scheme.inflight_limit if scheme.kind == "ppsd" else 1
        res = PipelineModel(env, sched, steps, reqs, settings, speculative, limit).run()
        busy = res.busy_s
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
    fields = summarise(sched, reqs, settings, keep_requests)
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
) -> list[ServingRecord]:
    """Each scheme on the same workload, with ``speedups`` over AR (``ar_same_load``) and over
    PP-AR on the same stages/devices (``pp_ar_same_load``, where the scheme uses k devices).
    Baselines not in ``schemes`` are run too (not returned); each runs once."""
    schemes = validate.sequence("schemes", schemes, min_len=1)
    cache: dict[SchemeConfig, ServingRecord] = {}

    def run(s: SchemeConfig) -> ServingRecord:
        if s not in cache:
            cache[s] = simulate_serving(
                profile,
                s,
                workload,
                settings,
                seed=seed,
                keep_requests=keep_requests,
                keep_profile=keep_profile,
            )
        return cache[s]

    out = []
    for s in schemes:
        rec = run(s)
        speedups, names = {}, {}
        ar = run(SchemeConfig.ar())
        speedups[BASE_AR], names[BASE_AR] = _ratios(rec, ar), ar.scheme.label()
        pp = pp_ar_baseline(s, profile.n_layers)
        if pp is not None:
            base = run(pp)
            speedups[BASE_PP], names[BASE_PP] = _ratios(rec, base), base.scheme.label()
        out.append(replace(rec, speedups=speedups, baselines=names))
    return out
