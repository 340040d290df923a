"""Sweep points: a stable ID and seed from each point's full config, and the simulator inputs
built from it.

The ID is a hash of the point's canonical JSON (sorted keys, no whitespace), so it does not
depend on where the point sits in the spec: resuming after the spec's order changed neither
recomputes nor misses a point.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.sweep.params import PROFILE_UNIFORM

SEED_MODES = ("point", "common")
_COST_FIELDS = ("hop", "tick", "flush", "embed", "concurrency_slowdown")
_PROFILE_FIELDS = ("profile_sha256", *PROFILE_UNIFORM, *_COST_FIELDS)


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


def build(cfg: dict[str, Any], ctx: Context, cache: dict[str, Any] | None = None) -> SimInputs:
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
    return SimInputs(
        profile,
        _scheme(cfg, profile.n_layers),
        _acceptance(cfg, ctx, cache),
        cfg["tokens"],
        cfg["seed"],
        cfg["engine"],
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
    if kind == "eesd":
        return SchemeConfig.eesd(cfg["exit"], cfg["gamma"], cfg["cache_reuse"])
    inflight = cfg.get("max_inflight")
    if "boundaries" in cfg:
        return SchemeConfig.ppsd(cfg["boundaries"], cfg["exit_stage"], cfg.get("devices"), inflight)
    # the one boundary rule (as `ppsd sim` and `ppsd run` cut): stage 1 = [0, exit), the rest
    # split evenly; without an exit, k equal stages
    split = SchemeConfig.ppsd_split(
        n_layers, cfg["k"], cfg.get("exit"), stages_field="k", exit_field="exit"
    )
    return SchemeConfig.ppsd(
        split.stage_boundaries, cfg["exit_stage"], cfg.get("devices"), inflight
    )


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
