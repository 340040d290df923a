"""The simulator's front door: (profile, scheme, acceptance) → RunRecord.

Engines: ``simpy`` (the discrete-event reference), ``fast`` (exact vectorised recurrences;
PPSD needs one device per stage) and ``auto`` (fast where it is exact, SimPy otherwise).
Every record names its engine and its baseline (AR on the same profile).
"""

from __future__ import annotations

from dataclasses import dataclass

from ppsd_sim import analytic
from ppsd_sim.acceptance.sampler import AcceptanceSampler
from ppsd_sim.costs import ar_costs, eesd_costs, ppsd_costs
from ppsd_sim.engines import fast, simpy_ppsd, simpy_sequential
from ppsd_sim.engines.result import EngineResult
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import HISTOGRAM_TAILS, AcceptanceSpec
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.run_record import RunRecord
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.span import Span
from ppsd_sim.schedule import bound_binds

ENGINES = ("simpy", "fast", "auto")
BASELINE = "ar_same_profile"
MAX_TOKENS = 10**9


@dataclass(frozen=True)
class Simulation:
    """A simulated run: the record, and the stage timeline when one was asked for."""

    record: RunRecord
    spans: list[Span] | None = None


def choose_engine(scheme: SchemeConfig, profile: HardwareProfile, engine: str) -> str:
    """Resolve ``auto``; refuse ``fast`` where it would not be exact."""
    engine = validate.choice("engine", engine, ENGINES)
    exact = scheme.kind != "ppsd" or ppsd_costs(profile, scheme).dedicated
    if engine == "fast" and not exact:
        raise ConfigError(
            "engine", "'fast' needs one device per PPSD stage; use 'simpy' (or 'auto')"
        )
    if engine == "auto":
        return "fast" if exact else "simpy"
    return engine


def check_inputs(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    acceptance: AcceptanceSpec | None,
    engine: str = "simpy",
    *,
    timeline: bool = False,
) -> str:
    """Refuse, before any work, what cannot be simulated; returns the engine that will run.
    A histogram used past its γ (PPSD runs, EESD with a larger γ) needs its tail rule."""
    if not isinstance(profile, HardwareProfile):
        raise ConfigError("profile", "must be a HardwareProfile")
    if not isinstance(scheme, SchemeConfig):
        raise ConfigError("scheme", "must be a SchemeConfig")
    scheme.check_layers(profile.n_layers)
    if scheme.kind in ("pp_ar", "tp_ar"):
        raise ConfigError(
            "scheme.kind",
            f"{scheme.label()} is modelled under load only: use ppsd_sim.serving.simulate_serving "
            "(`ppsd serving`)",
        )
    if ar_costs(profile).token <= 0:
        raise ConfigError(
            "profile", "its AR token time is 0 (no latency at all): no speedup can be measured"
        )
    if scheme.kind != "ar" and acceptance is None:
        raise ConfigError("acceptance", f"is required for {scheme.kind.upper()}")
    if acceptance is not None and not isinstance(acceptance, AcceptanceSpec):
        raise ConfigError("acceptance", "must be an AcceptanceSpec")
    if acceptance is not None and scheme.kind != "ar":
        drafts = scheme.gamma if scheme.kind == "eesd" else None
        if acceptance.needs_tail(drafts) and acceptance.tail is None:
            g = acceptance.gamma
            past = "judges runs of any length" if drafts is None else f"drafts γ={drafts}"
            raise ConfigError(
                "acceptance.tail",
                f"the histogram counts rounds of γ={g} and says nothing past position {g}, "
                f"while {scheme.label()} {past}; choose a tail rule: " + ", ".join(HISTOGRAM_TAILS),
            )
    used = choose_engine(scheme, profile, engine)
    if timeline and used != "simpy":
        raise ConfigError("engine", "a timeline needs the SimPy engine")
    return used


def simulate(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    acceptance: AcceptanceSpec | None = None,
    *,
    tokens: int = 10_000,
    seed: int = 0,
    engine: str = "simpy",
    timeline: bool = False,
) -> Simulation:
    """Simulate ``tokens`` committed tokens. Same inputs and seed → identical record. The
    acceptance's decoding settings decide whether the profile's sampling costs apply (to the
    scheme and to its AR baseline alike)."""
    tokens = validate.integer("tokens", tokens, lo=1, hi=MAX_TOKENS)
    seed = validate.integer("seed", seed, lo=0)
    used = check_inputs(profile, scheme, acceptance, engine, timeline=timeline)
    decoding = acceptance.decoding if acceptance is not None else GREEDY
    res = _run(profile, scheme, acceptance, decoding, tokens, seed, used, timeline)
    ar_time = tokens * ar_costs(profile, decoding).token
    speed = ar_time / res.time_s if res.time_s > 0 else float("inf")
    notes = dict(res.notes)
    iid_alpha = acceptance.alpha if acceptance is not None and acceptance.kind == "iid" else None
    if iid_alpha is not None and (
        scheme.kind == "eesd" or (scheme.kind == "ppsd" and ppsd_costs(profile, scheme).dedicated)
    ):
        notes["closed_form_speedup"] = analytic.speedup(profile, scheme, iid_alpha, decoding)
    if scheme.kind == "eesd" and eesd_costs(profile, scheme).verify_extrapolated:
        notes["extrapolated"] = (
            f"verify latency for {eesd_costs(profile, scheme).gamma + 1} tokens lies beyond "
            "the profiled sizes"
        )
    record = RunRecord(
        origin="simulated",
        engine=used,
        scheme=scheme,
        tokens=tokens,
        time_s=res.time_s,
        acceptance=acceptance if scheme.kind != "ar" else None,
        profile=profile,
        seed=seed,
        speedups={BASELINE: speed},
        baseline=BASELINE,
        acceptance_observed=res.observed if scheme.kind != "ar" else None,
        stage_busy_s=tuple(float(b) for b in res.busy_s),
        stage_wasted_s=tuple(float(w) for w in res.wasted_s),
        flushes=res.flushes,
        rounds=res.rounds,
        notes=notes,
    )
    return Simulation(record, res.spans)


def _run(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    acceptance: AcceptanceSpec | None,
    decoding: DecodingSettings,
    tokens: int,
    seed: int,
    engine: str,
    timeline: bool,
) -> EngineResult:
    if scheme.kind == "ar":
        ar = ar_costs(profile, decoding)
        return (
            simpy_sequential.run_ar(ar, tokens, timeline=timeline)
            if engine == "simpy"
            else fast.run_ar(ar, tokens)
        )
    assert acceptance is not None  # checked by check_inputs
    sampler = AcceptanceSampler(acceptance, seed)
    if scheme.kind == "eesd":
        eesd = eesd_costs(profile, scheme, decoding)
        if engine == "simpy":
            return simpy_sequential.run_eesd(eesd, sampler, tokens, timeline=timeline)
        return fast.run_eesd(eesd, sampler, tokens)
    costs = ppsd_costs(profile, scheme, decoding)
    bound = scheme.inflight_limit
    limit: int | None = bound
    if costs.dedicated and not bound_binds(costs, bound, tokens + bound + 1):
        limit = None  # provably slack for every token of this run: skip its bookkeeping
    if engine == "simpy":
        return simpy_ppsd.run_ppsd(costs, sampler, tokens, timeline=timeline, limit=limit)
    return fast.run_ppsd(costs, sampler, tokens, limit)
