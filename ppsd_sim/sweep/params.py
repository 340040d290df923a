"""The parameters a sweep point may set: their types, defaults and which scheme uses them.

One table, so the spec checker, the point builder and the Parquet schema agree on every
name. Values are checked one at a time here (with the records' validators); combinations
(exit layer beyond the model, boundaries that miss the last layer …) are the records' job and
surface per point, at build time, as failure rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import HISTOGRAM_TAILS, MARKOV_CHAINS
from ppsd_sim.records.serving_record import POLICIES
from ppsd_sim.records.workload import MAX_REQUESTS, LengthDist
from ppsd_sim.serving.simulate import SPECULATIVE
from ppsd_sim.simulate import MAX_TOKENS

#: ``single``: one sequence, the batch-1 simulator (``ppsd sim``); ``serving``: many requests
#: at once, the serving simulator (``ppsd serving``), with speedups at the same load
MODES = ("single", "serving")
SCHEME_KINDS = ("ar", "pp_ar", "tp_ar", "eesd", "ppsd")
SERVING_ONLY_SCHEMES = ("pp_ar", "tp_ar")
ACCEPTANCE_KINDS = ("iid", "markov", "per_position", "histogram", "file")
#: ``closed_form`` = long-run closed form (i.i.d. acceptance only); ``auto`` = closed form
#: where it is exact (AR), else the simulator's own ``auto`` (fast path or SimPy).
ENGINES = ("auto", "fast", "simpy", "closed_form")


def _num(
    lo: float | None = None, hi: float | None = None, hi_open: bool = False, lo_open: bool = False
):
    def check(field: str, v: Any) -> float:
        if isinstance(v, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            with contextlib.suppress(ValueError):
                v = float(v)
        return validate.number(field, v, lo=lo, hi=hi, hi_open=hi_open, lo_open=lo_open)

    return check


def _int(lo: int | None = None, hi: int | None = None):
    return lambda field, v: validate.integer(field, v, lo=lo, hi=hi)


def _choice(allowed: tuple[str, ...]):
    return lambda field, v: validate.choice(field, v, allowed)


def _list(item: Callable[[str, Any], Any], min_len: int = 1):
    def check(field: str, v: Any) -> list[Any]:
        items = validate.sequence(field, v, min_len=min_len)
        return [item(f"{field}[{i}]", x) for i, x in enumerate(items)]

    return check


def _length(field: str, v: Any) -> str:
    """A request length in ``LengthDist.parse``'s text form, kept as that text (an integer
    becomes its digits, so 128 and "128" are one point)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise ConfigError(
            field, f"must be N, uniform:LO:HI or lognormal:MEDIAN:SIGMA[:MAX], got {v!r}"
        )
    LengthDist.parse(v, field)
    return v.strip()


def _path(field: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(field, f"must be a file path, got {v!r}")
    return v


@dataclass(frozen=True)
class Param:
    """One sweepable parameter. ``column`` is its name in the results table."""

    name: str
    check: Callable[[str, Any], Any]
    kind: str  # float | int | bool | str | list  (the Parquet column type)
    help: str
    column: str = ""
    serving: bool = False  # used by serving points only (mode: serving)

    @property
    def col(self) -> str:
        return self.column or self.name


PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param(
            "mode",
            _choice(MODES),
            "str",
            "single (one sequence, default) | serving (many requests at once)",
        ),
        Param(
            "scheme",
            _choice(SCHEME_KINDS),
            "str",
            "ar | eesd | ppsd; serving also pp_ar | tp_ar",
        ),
        Param("profile", _path, "str", "HardwareProfile JSON/YAML file (relative to the spec)"),
        Param("layers", _int(lo=1), "int", "uniform profile: number of layers L"),
        Param("t_layer", _num(lo=0.0), "float", "uniform profile: one layer's latency (s)"),
        Param("head_fraction", _num(lo=0.0), "float", "uniform profile: head / layer latency"),
        Param("ee_head", _num(lo=0.0), "float", "uniform profile: EE-head latency (s)"),
        Param("verify_tokens", _list(_int(lo=1)), "list", "uniform profile: verify sizes"),
        Param("verify_factor", _list(_num(lo=0.0)), "list", "uniform profile: verify factors"),
        Param("hop", _num(lo=0.0), "float", "inter-stage hop latency (s), overrides the profile"),
        Param("tick", _num(lo=0.0), "float", "per-step control cost (s), overrides the profile"),
        Param("flush", _num(lo=0.0), "float", "flush / KV-crop cost (s), overrides the profile"),
        Param("embed", _num(lo=0.0), "float", "embedding latency (s), overrides the profile"),
        Param("concurrency_slowdown", _num(lo=1.0), "float", "stage slowdown when concurrent"),
        Param("acceptance", _choice(ACCEPTANCE_KINDS), "str", "acceptance model (default iid)"),
        Param("alpha", _num(lo=0.0, hi=1.0), "float", "iid / markov acceptance rate α"),
        Param(
            "burstiness",
            _num(lo=-1.0, hi=1.0, hi_open=True),
            "float",
            "markov lag-1 ρ (its lower bound depends on α: checked per point)",
        ),
        Param(
            "chain",
            _choice(MARKOV_CHAINS),
            "str",
            "markov: the 0/1 sequence ρ is measured over, judged drafts (default) or output "
            "positions (the model card's)",
        ),
        Param("alphas", _list(_num(lo=0.0, hi=1.0)), "list", "per-position α_i"),
        Param("counts", _list(_int(lo=0), min_len=2), "list", "histogram of accepted drafts"),
        Param(
            "tail",
            _choice(HISTOGRAM_TAILS),
            "str",
            "histogram: the rule past its γ (needed by PPSD and by EESD with a larger γ)",
            "histogram_tail",
        ),
        Param("acceptance_file", _path, "str", "AcceptanceSpec JSON/YAML file (e.g. a trace)"),
        Param("exit", _int(lo=1), "int", "exit layer E (EESD; PPSD with k: end of stage 1)"),
        Param("gamma", _int(lo=1, hi=4096), "int", "EESD drafts per round γ"),
        Param("cache_reuse", validate.boolean, "bool", "EESD verification reuses early layers"),
        Param("k", _int(lo=2), "int", "PPSD stages (even split, or L−E split after exit)"),
        Param("boundaries", _list(_int(lo=1), min_len=2), "list", "PPSD stage end layers"),
        Param("exit_stage", _int(lo=1), "int", "PPSD stage (1-based) whose output drafts"),
        Param("devices", _list(_int(lo=0)), "list", "PPSD device per stage (shared contend)"),
        Param(
            "max_inflight",
            _int(lo=1, hi=10**6),
            "int",
            "PPSD: most tokens in flight (default k + 1, what `ppsd run` allows)",
        ),
        Param("tokens", _int(lo=1, hi=MAX_TOKENS), "int", "tokens to commit (default 10000)"),
        Param(
            "engine",
            _choice(ENGINES),
            "str",
            "auto | fast | simpy | closed_form",
            "engine_requested",
        ),
        Param("replica", _int(lo=0), "int", "repeat index: a new seed for the same config"),
        # serving mode: the load and the scheduler (ppsd serving's flags of the same names)
        Param(
            "tp",
            _int(lo=2),
            "int",
            "serving TP-AR: degree (the profile needs its TP costs)",
            serving=True,
        ),
        Param(
            "requests",
            _int(lo=1, hi=MAX_REQUESTS),
            "int",
            "serving: requests (default 200)",
            serving=True,
        ),
        Param(
            "prompt_len",
            _length,
            "str",
            "serving: prompt tokens, N | uniform:LO:HI | "
            "lognormal:MEDIAN:SIGMA[:MAX] (default 128)",
            serving=True,
        ),
        Param(
            "output_len",
            _length,
            "str",
            "serving: output tokens, same forms (default 128)",
            serving=True,
        ),
        Param(
            "rate",
            _num(lo=0.0, lo_open=True),
            "float",
            "serving: Poisson arrivals, req/s",
            serving=True,
        ),
        Param("users", _int(lo=1), "int", "serving: closed loop of N users", serving=True),
        Param("think", _num(lo=0.0), "float", "serving closed loop: think time (s)", serving=True),
        Param(
            "at_once",
            validate.boolean,
            "bool",
            "serving: every request arrives at t = 0",
            serving=True,
        ),
        Param(
            "max_batch",
            _int(lo=1, hi=10**6),
            "int",
            "serving: sequences at once (default 32)",
            serving=True,
        ),
        Param(
            "kv_budget", _int(lo=1, hi=10**12), "int", "serving: KV cache in tokens", serving=True
        ),
        Param(
            "policy",
            _choice(POLICIES),
            "str",
            "serving pipelines: stage-1 slot policy",
            serving=True,
        ),
        Param(
            "microbatch",
            _int(lo=1, hi=10**6),
            "int",
            "serving pipelines: stage-1 step cap",
            serving=True,
        ),
        Param(
            "ttft_slo",
            _num(lo=0.0, lo_open=True),
            "float",
            "serving goodput: TTFT target (s)",
            serving=True,
        ),
        Param(
            "tpot_slo",
            _num(lo=0.0, lo_open=True),
            "float",
            "serving goodput: TPOT target (s)",
            serving=True,
        ),
    )
}

DEFAULTS: dict[str, Any] = {"tokens": 10_000, "engine": "auto"}
#: a serving point's defaults: ppsd serving's (requests) and the records' (lengths, batch)
SERVING_DEFAULTS: dict[str, Any] = {
    "requests": 200,
    "prompt_len": "128",
    "output_len": "128",
    "max_batch": 32,
}
SERVING_PARAMS = tuple(p.name for p in PARAMS.values() if p.serving)
#: a serving point's arrival process: exactly one of these
ARRIVAL_PARAMS = ("rate", "users", "at_once")
#: the single-sequence simulator's own knobs (a serving point runs the SimPy serving model)
_SINGLE_ONLY = ("tokens", "engine")
_PIPELINE_SETTINGS = ("policy", "microbatch")

#: the parameters that build a uniform profile (one place: points.py keys profiles by them too)
PROFILE_UNIFORM = (
    "layers",
    "t_layer",
    "head_fraction",
    "ee_head",
    "verify_tokens",
    "verify_factor",
)
_ACCEPTANCE_USES = {
    "iid": ("alpha",),
    "markov": ("alpha", "burstiness", "chain"),
    "per_position": ("alphas",),
    "histogram": ("counts", "tail"),
    "file": ("acceptance_file",),
}
_ACCEPTANCE_ALL = (
    "acceptance",
    "alpha",
    "burstiness",
    "chain",
    "alphas",
    "counts",
    "tail",
    "acceptance_file",
)
#: used by their scheme or acceptance model, but never required
_OPTIONAL = ("exit", "k", "boundaries", "devices", "max_inflight", "chain", "tail")
_SCHEME_USES = {
    "ar": (),
    "pp_ar": ("exit", "k", "boundaries"),
    "tp_ar": ("tp",),
    "eesd": ("exit", "gamma", "cache_reuse"),
    "ppsd": ("exit", "k", "boundaries", "exit_stage", "devices", "max_inflight"),
}
_SCHEME_ALL = (
    "exit",
    "gamma",
    "cache_reuse",
    "k",
    "boundaries",
    "exit_stage",
    "devices",
    "max_inflight",
    "tp",
)
_STAGED = ("pp_ar", "ppsd")


def check_value(field: str, name: str, value: Any) -> Any:
    """Validate one parameter value on its own; returns it normalised (floats as float)."""
    return PARAMS[name].check(field, value)


def resolve(values: dict[str, Any], where: str) -> dict[str, Any]:
    """One point's values → its full config: defaults filled in, values its mode, scheme and
    acceptance model do not use dropped (so a mixed grid does not multiply AR points by γ),
    required values checked. ``where`` names the point in errors."""
    cfg = {**DEFAULTS, **values}
    if "scheme" not in cfg:
        raise ConfigError(f"{where}.scheme", "is required (ar, eesd or ppsd)")
    scheme = cfg["scheme"]
    _resolve_mode(cfg, values, where)
    if "profile" in cfg:
        both = [n for n in PROFILE_UNIFORM if n in cfg]
        if both:
            raise ConfigError(
                f"{where}.{both[0]}",
                "a point takes either a profile file or uniform-profile values",
            )
    else:
        cfg.setdefault("head_fraction", 1.0)
        for name in ("layers", "t_layer"):
            if name not in cfg:
                raise ConfigError(f"{where}.{name}", "is required (or give a profile file)")
    used = set(_SCHEME_USES[scheme])
    if scheme in SPECULATIVE:
        cfg.setdefault("acceptance", "iid")
        used |= {"acceptance", *_ACCEPTANCE_USES[cfg["acceptance"]]}
    for name in (*_SCHEME_ALL, *_ACCEPTANCE_ALL):
        if name not in used:
            cfg.pop(name, None)
    if scheme == "eesd":
        cfg.setdefault("cache_reuse", True)
    if scheme == "ppsd":
        cfg.setdefault("exit_stage", 1)
    if scheme in _STAGED:
        if ("k" in cfg) == ("boundaries" in cfg):
            raise ConfigError(
                f"{where}.k",
                f"a {scheme.upper().replace('_', '-')} point takes exactly one of k or boundaries",
            )
        if "boundaries" in cfg and "exit" in cfg:
            raise ConfigError(
                f"{where}.exit", "with explicit boundaries the exit is set by exit_stage"
            )
    required = [n for n in used if n not in _OPTIONAL]
    if scheme == "eesd":
        required.append("exit")
    for name in sorted(required):
        if name not in cfg:
            raise ConfigError(f"{where}.{name}", f"is required for scheme {scheme!r}")
    return cfg


def _resolve_mode(cfg: dict[str, Any], values: dict[str, Any], where: str) -> None:
    """Keep the parameters the point's mode uses (in place). A single-sequence point keeps no
    ``mode`` key, so its ID is the one it had before serving points existed."""
    if cfg.pop("mode", "single") == "single":
        if cfg["scheme"] in SERVING_ONLY_SCHEMES:
            raise ConfigError(
                f"{where}.scheme", f"{cfg['scheme']} runs in serving mode only (mode: serving)"
            )
        given = [n for n in SERVING_PARAMS if n in cfg]
        if given and "mode" not in values:
            raise ConfigError(
                f"{where}.{given[0]}",
                "is a serving parameter: add mode: serving (mode: single drops it)",
            )
        for name in SERVING_PARAMS:
            cfg.pop(name, None)
        return
    if "devices" in cfg:
        raise ConfigError(
            f"{where}.devices",
            "serving mode gives each stage its own device (shared devices are modelled by "
            "mode: single only)",
        )
    cfg["mode"] = "serving"
    for name in _SINGLE_ONLY:
        cfg.pop(name, None)
    for name, value in SERVING_DEFAULTS.items():
        cfg.setdefault(name, value)
    if cfg.get("at_once") is False:
        del cfg["at_once"]
    arrivals = [n for n in ARRIVAL_PARAMS if n in cfg]
    if not arrivals:
        raise ConfigError(
            f"{where}.rate",
            "a serving point needs an arrival process: rate (Poisson, req/s), users (a closed "
            "loop) or at_once: true",
        )
    if len(arrivals) > 1:
        raise ConfigError(f"{where}.{arrivals[1]}", f"conflicts with {arrivals[0]}: give one")
    if "think" in cfg and "users" not in cfg:
        raise ConfigError(f"{where}.think", "needs users (a closed loop)")
    if cfg["scheme"] not in _STAGED:
        for name in _PIPELINE_SETTINGS:
            cfg.pop(name, None)
