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
from ppsd_sim.simulate import MAX_TOKENS

SCHEME_KINDS = ("ar", "eesd", "ppsd")
ACCEPTANCE_KINDS = ("iid", "markov", "per_position", "histogram", "file")
#: ``closed_form`` = long-run closed form (i.i.d. acceptance only); ``auto`` = closed form
#: where it is exact (AR), else the simulator's own ``auto`` (fast path or SimPy).
ENGINES = ("auto", "fast", "simpy", "closed_form")


def _num(lo: float | None = None, hi: float | None = None, hi_open: bool = False):
    def check(field: str, v: Any) -> float:
        if isinstance(v, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            with contextlib.suppress(ValueError):
                v = float(v)
        return validate.number(field, v, lo=lo, hi=hi, hi_open=hi_open)

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

    @property
    def col(self) -> str:
        return self.column or self.name


PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("scheme", _choice(SCHEME_KINDS), "str", "ar | eesd | ppsd"),
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
    )
}

DEFAULTS: dict[str, Any] = {"tokens": 10_000, "engine": "auto"}

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
)


def check_value(field: str, name: str, value: Any) -> Any:
    """Validate one parameter value on its own; returns it normalised (floats as float)."""
    return PARAMS[name].check(field, value)


def resolve(values: dict[str, Any], where: str) -> dict[str, Any]:
    """One point's values → its full config: defaults filled in, values its scheme and
    acceptance model do not use dropped (so a mixed grid does not multiply AR points by γ),
    required values checked. ``where`` names the point in errors."""
    cfg = {**DEFAULTS, **values}
    if "scheme" not in cfg:
        raise ConfigError(f"{where}.scheme", "is required (ar, eesd or ppsd)")
    scheme = cfg["scheme"]
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
    if scheme != "ar":
        cfg.setdefault("acceptance", "iid")
        used |= {"acceptance", *_ACCEPTANCE_USES[cfg["acceptance"]]}
    for name in (*_SCHEME_ALL, *_ACCEPTANCE_ALL):
        if name not in used:
            cfg.pop(name, None)
    if scheme == "eesd":
        cfg.setdefault("cache_reuse", True)
    if scheme == "ppsd":
        cfg.setdefault("exit_stage", 1)
        if ("k" in cfg) == ("boundaries" in cfg):
            raise ConfigError(f"{where}.k", "a PPSD point takes exactly one of k or boundaries")
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
