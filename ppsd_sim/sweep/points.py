"""Sweep points: a stable ID and seed from each point's full config, and the simulator inputs
built from it.

The ID is a hash of the point's canonical JSON (sorted keys, no whitespace), so it does not
depend on where the point sits in the spec: resuming after the spec's order changed neither
recomputes nor misses a point.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Workload
from ppsd_sim.sweep.params import PROFILE_UNIFORM

SEED_MODES = ("point", "common")
_COST_FIELDS = ("hop", "tick", "flush", "embed", "concurrency_slowdown")
_PROFILE_FIELDS = ("profile_sha256", *PROFILE_UNIFORM, *_COST_FIELDS)


#: sweep parameter → ServingSettings field
_SETTINGS = {
    "max_batch": "max_batch",
    "kv_budget": "kv_budget",
    "policy": "policy",
    "microbatch": "microbatch",
    "ttft_slo": "ttft_slo_s",
    "tpot_slo": "tpot_slo_s",
}


def canonical_json(data: Any) -> str:
    """The one text form a config hashes to: sorted keys, compact, NaN refused."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def point_seed(config: dict[str, Any], spec_seed: int, mode: str) -> int:
    """Deterministic per point: ``point`` hashes the spec seed with the config (independent
    streams), ``common`` gives every config the spec seed (+ replica), so configs are compared
    on the same acceptance draws."""
    if mode == "common":
        return spec_seed + int(config.get("replica", 0))
    return int(digest(f"{spec_seed}|{canonical_json(config)}")[:15], 16)


@dataclass(frozen=True)
class Point:
    """One configuration to simulate. ``config`` includes its seed; ``id`` hashes it."""

    id: str
    config: dict[str, Any]
    canonical: str


def make_point(config: dict[str, Any], spec_seed: int, mode: str) -> Point:
    full = {**config, "seed": point_seed(config, spec_seed, mode)}
    text = canonical_json(full)
    return Point(digest(text)[:16], full, text)


@dataclass(frozen=True)
class Context:
    """Files the spec names, loaded once and shipped to workers by content hash."""

    profiles: dict[str, dict[str, Any]]
    acceptances: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class SimInputs:
    profile: HardwareProfile
    scheme: SchemeConfig
    acceptance: AcceptanceSpec | None
    tokens: int
    seed: int
    engine: str


@dataclass(frozen=True)
class ServingInputs:
    """A serving point's inputs: ``compare_serving``'s arguments. ``load_key`` names the
    profile, workload, settings and seed, which the point's baselines depend on."""

    profile: HardwareProfile
    scheme: SchemeConfig
    workload: Workload
    settings: ServingSettings
    seed: int
    load_key: str

    @property
    def acceptance(self) -> AcceptanceSpec | None:
        return self.workload.acceptance


def build(
    cfg: dict[str, Any], ctx: Context, cache: dict[str, Any] | None = None
) -> SimInputs | ServingInputs:
    """The simulator's inputs for one point. Raises ConfigError for combinations the records
    refuse (the caller records it as a failed point)."""
    cache = {} if cache is None else cache
    key = "P:" + canonical_json({n: cfg.get(n) for n in _PROFILE_FIELDS})
    profile = cache.get(key)
    if profile is None:  # most points of a batch share a profile: build it once
        profile = _profile(cfg, ctx, cache)
        costs = {n: cfg[n] for n in _COST_FIELDS if n in cfg}
        if costs:
            profile = profile.with_costs(**costs)
        cache[key] = profile
    if cfg.get("mode") == "serving":
        return _serving(cfg, ctx, cache, profile, key)
    return SimInputs(
        profile,
        _scheme(cfg, profile.n_layers),
        _acceptance(cfg, ctx, cache),
        cfg["tokens"],
        cfg["seed"],
        cfg["engine"],
    )


def _serving(
    cfg: dict[str, Any], ctx: Context, cache: dict[str, Any], profile: HardwareProfile, pkey: str
) -> ServingInputs:
    if "rate" in cfg:
        arrivals = Arrivals.poisson(cfg["rate"])
    elif "users" in cfg:
        arrivals = Arrivals.closed(cfg["users"], cfg.get("think", 0.0))
    else:
        arrivals = Arrivals.at_once()
    workload = Workload(
        count=cfg["requests"],
        prompt=LengthDist.parse(cfg["prompt_len"], "prompt_len"),
        output=LengthDist.parse(cfg["output_len"], "output_len"),
        arrivals=arrivals,
        acceptance=_acceptance(cfg, ctx, cache),
    )
    # the scheduler's own defaults for what the point leaves out
    settings = ServingSettings(**{f: cfg[n] for n, f in _SETTINGS.items() if n in cfg})
    # the baselines (AR, PP-AR) see the workload without the acceptance, which they never use
    load = {"profile": pkey, "workload": replace(workload, acceptance=None).to_dict()}
    load_key = canonical_json({**load, "settings": settings.to_dict(), "seed": cfg["seed"]})
    return ServingInputs(
        profile, _scheme(cfg, profile.n_layers), workload, settings, cfg["seed"], load_key
    )


def _profile(cfg: dict[str, Any], ctx: Context, cache: dict[str, Any]) -> HardwareProfile:
    if "profile_sha256" in cfg:
        key = "p:" + cfg["profile_sha256"]
        if key not in cache:
            cache[key] = HardwareProfile.from_dict(ctx.profiles[cfg["profile_sha256"]])
        return cache[key]
    return HardwareProfile.uniform(
        cfg["layers"],
        cfg["t_layer"],
        cfg["head_fraction"],
        ee_head=cfg.get("ee_head"),
        verify_tokens=_tuple(cfg.get("verify_tokens")),
        verify_factor=_tuple(cfg.get("verify_factor")),
    )


def _tuple(v: list[Any] | None) -> tuple[Any, ...] | None:
    return None if v is None else tuple(v)


def _scheme(cfg: dict[str, Any], n_layers: int) -> SchemeConfig:
    kind = cfg["scheme"]
    if kind == "ar":
        return SchemeConfig.ar()
    if kind == "tp_ar":
        return SchemeConfig.tp_ar(cfg["tp"])
    if kind == "eesd":
        return SchemeConfig.eesd(cfg["exit"], cfg["gamma"], cfg["cache_reuse"])
    if "boundaries" in cfg:
        bounds = cfg["boundaries"]
    else:
        # the one boundary rule (as `ppsd sim`, `ppsd serving` and `ppsd run` cut): stage 1 =
        # [0, exit), the rest split evenly; without an exit, k equal stages
        split = SchemeConfig.ppsd_split(
            n_layers, cfg["k"], cfg.get("exit"), stages_field="k", exit_field="exit"
        )
        bounds = split.stage_boundaries
    if kind == "pp_ar":
        return SchemeConfig.pp_ar(bounds)
    return SchemeConfig.ppsd(bounds, cfg["exit_stage"], cfg.get("devices"), cfg.get("max_inflight"))


def _acceptance(cfg: dict[str, Any], ctx: Context, cache: dict[str, Any]) -> AcceptanceSpec | None:
    kind = cfg.get("acceptance")
    if kind is None:
        return None
    if kind == "iid":
        return AcceptanceSpec.iid(cfg["alpha"])
    if kind == "markov":
        return AcceptanceSpec.markov(cfg["alpha"], cfg["burstiness"], cfg.get("chain", "judged"))
    if kind == "per_position":
        return AcceptanceSpec.per_position(cfg["alphas"])
    if kind == "histogram":
        return AcceptanceSpec.histogram(cfg["counts"], cfg.get("tail"))
    key = "a:" + cfg["acceptance_sha256"]
    if key not in cache:
        cache[key] = AcceptanceSpec.from_dict(ctx.acceptances[cfg["acceptance_sha256"]])
    return cache[key]
