"""``ppsd sim``: simulate schemes from flags or a config file and print them side by side.

Nothing is chosen silently: flags that contradict each other are refused by name (one line,
exit 2), every error names the flag the user typed, and acceptance given in another tool's
vocabulary is converted with the line saying which α it became.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ppsd_sim import examples
from ppsd_sim.acceptance.vocabulary import (
    LIST_MEASURES,
    SCALAR_MEASURES,
    conditional_from_unconditional,
    derive_alpha,
)
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import acceptance_pick, decoding, validate
from ppsd_sim.records.acceptance_spec import HISTOGRAM_TAILS, MARKOV_CHAINS, AcceptanceSpec
from ppsd_sim.records.io import check_writable, dumps, load_document, write_all
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.simulate import ENGINES, MAX_TOKENS, Simulation, check_inputs, simulate
from ppsd_sim.trace_export import chrome_trace

CONFIG_KEYS = ("profile", "schemes", "scheme", "acceptance", "tokens", "seed", "engine")
_MEASURED_KEYS = ("measured_as", "value", "gamma", "stages")


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "With no arguments: the embedded example (32 layers, exit after 8, 4 stages, iid α=0.8, "
        "illustrative latencies), AR/EESD/PPSD side by side. Times are in seconds. Flags "
        "override the config file; flags that contradict each other are refused. Acceptance "
        "measured by another tool: --acceptance-rate R --measured-as "
        + "|".join(SCALAR_MEASURES)
        + " with --measured-gamma G (or --measured-stages K): the α it converts to is printed "
        "(definitions in GLOSSARY.md)."
    )
    g = p.add_argument_group("inputs")
    g.add_argument("--config", help="YAML/JSON file with keys: " + ", ".join(CONFIG_KEYS))
    g.add_argument("--profile", help="HardwareProfile JSON/YAML file")
    g.add_argument("--layers", type=int, help="uniform profile: number of layers L")
    g.add_argument("--t-layer", type=float, help="uniform profile: one layer's decode latency (s)")
    g.add_argument(
        "--head-fraction",
        type=float,
        help="uniform profile: head latency / layer latency (default 1.0)",
    )
    g.add_argument("--hop", type=float, help="inter-stage hop latency (s)")
    g.add_argument("--tick", type=float, help="per-step control cost (s)")
    g.add_argument("--flush", type=float, help="flush / KV-crop cost (s)")
    s = p.add_argument_group("scheme")
    s.add_argument("--scheme", choices=("ar", "eesd", "ppsd", "all"), help="default: all three")
    s.add_argument(
        "--exit",
        type=int,
        dest="exit_layer",
        help="exit layer E: EESD drafts with the first E layers (default L/4); PPSD with "
        "--stages: stage 1 = layers [0, E), the rest split evenly, as `ppsd run` cuts them "
        "(default: k equal stages)",
    )
    s.add_argument("--gamma", type=int, help="EESD drafts per round (default 4)")
    s.add_argument(
        "--no-cache-reuse",
        action="store_true",
        help="EESD verification recomputes the early layers",
    )
    s.add_argument("--stages", type=int, help="PPSD: k stages (default 4; see --exit)")
    s.add_argument(
        "--boundaries", help="PPSD: comma-separated end layer of each stage, e.g. 8,16,24,32"
    )
    s.add_argument(
        "--exit-stage", type=int, help="PPSD: stage (1-based) whose output drafts (default 1)"
    )
    s.add_argument(
        "--devices", help="PPSD: comma-separated device per stage; shared devices contend"
    )
    s.add_argument(
        "--max-inflight",
        type=int,
        help="PPSD: most tokens in flight at once (entered into stage 1, verdict not yet back "
        "there); default k + 1, what `ppsd run`'s controller allows",
    )
    a = p.add_argument_group("acceptance (one source; default iid α=0.8)")
    a.add_argument("--alpha", type=float, help="i.i.d. conditional acceptance per judged draft")
    a.add_argument(
        "--burstiness",
        type=float,
        help="with --alpha: two-state Markov model with that mean and this lag-1 correlation",
    )
    a.add_argument(
        "--burstiness-over",
        choices=MARKOV_CHAINS,
        help="the 0/1 sequence the Markov chain runs over: judged drafts (default) or output "
        "positions (the model card's ρ; EESD's bonus positions are then not drafted)",
    )
    a.add_argument(
        "--alphas",
        help="per-position α, comma-separated (conditional unless --measured-as unconditional; "
        "the last repeats past the list)",
    )
    a.add_argument(
        "--histogram", help="counts of rounds with 0..γ accepted drafts, comma-separated"
    )
    a.add_argument(
        "--histogram-tail",
        choices=HISTOGRAM_TAILS,
        help="what a histogram means past its γ (needed for PPSD, or EESD with a larger γ): "
        "zero (no draft accepted), repeat-last (the last position's α repeats), marginal "
        "(the histogram's accepted/judged rate)",
    )
    a.add_argument(
        "--acceptance-trace",
        metavar="FILE|RECORD@EXIT[:HEAD]",
        help="recorded 0/1 outcomes per judged draft: a file (JSON list or whitespace-separated), "
        "or one exit's traces of an AcceptanceRecord (`ppsd accept --out`), HEAD shared or "
        "trained (default: the only one measured there, else shared)",
    )
    a.add_argument(
        "--acceptance-rate",
        type=float,
        help="a rate measured by another tool; --measured-as says what it is",
    )
    a.add_argument(
        "--measured-as",
        choices=(*SCALAR_MEASURES, *LIST_MEASURES),
        help="with --acceptance-rate: "
        + ", ".join(SCALAR_MEASURES)
        + "; with --alphas: conditional (default) or unconditional (vLLM's per-position "
        "rates: accepted at position i ÷ rounds)",
    )
    a.add_argument(
        "--measured-gamma", type=int, help="the γ (drafts per round) the rate was measured at"
    )
    a.add_argument(
        "--measured-stages",
        type=int,
        help="the pipeline stages k a theoretical speedup was measured at",
    )
    decoding.add_args(a)
    r = p.add_argument_group("run")
    r.add_argument(
        "--tokens", type=int, help=f"tokens to commit (default {examples.EXAMPLE_TOKENS})"
    )
    r.add_argument("--seed", type=int, help="random seed (default 0)")
    r.add_argument(
        "--engine",
        choices=ENGINES,
        help="simpy (reference, default), fast (exact vectorised), auto",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--out", help="write the RunRecord(s) as JSON here (a list when several schemes)"
    )
    o.add_argument(
        "--chrome-trace",
        help="write a Chrome/Perfetto trace of the first 200 tokens of the last scheme",
    )
    o.add_argument(
        "--json", action="store_true", help="print the records as JSON instead of a table"
    )


@dataclass
class Inputs:
    """Everything a ``ppsd sim`` run needs, resolved from flags, config and the example."""

    profile: HardwareProfile
    schemes: list[SchemeConfig]
    acceptance: AcceptanceSpec
    run: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what was derived (printed)
    warnings: list[str] = field(default_factory=list)  # printed on stderr


def _ints(flag: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(flag, f"must be comma-separated integers, got {text!r}") from None


def _floats(flag: str, text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(flag, f"must be comma-separated numbers, got {text!r}") from None


def _as_flag(err: ConfigError, names: dict[str, str]) -> ConfigError:
    """A record's error (``acceptance.alpha``) renamed to the flag the user typed."""
    for prefix, flag in names.items():
        if err.field == prefix or err.field.startswith((prefix + "[", prefix + ".")):
            return ConfigError(flag + err.field[len(prefix) :], err.message)
    return err


TRACE_FLAG = "--acceptance-trace"


@dataclass(frozen=True)
class RecordTrace:
    """Where a trace read from an AcceptanceRecord came from: what it says, its exit and the
    depth of the model measured (schemes default to that exit and are checked against it)."""

    what: str
    exit_layer: int
    n_layers: int


def _read_trace(
    text: str, target: decoding.DecodingSettings
) -> tuple[AcceptanceSpec, RecordTrace | None]:
    """``--acceptance-trace``: ``RECORD@EXIT[:HEAD]`` (one row of ``ppsd accept --out``), a
    JSON/YAML list or ``{"trace": [...], "decoding": ...}`` (``--trace-out``), or a text file
    of 0/1. The spec carries the decoding the trace was measured under; a record's row also
    says where it came from (None for plain traces)."""
    path, sel = acceptance_pick.split_ref(text)
    p = Path(path)
    if p.suffix.lower() in (".json", ".yaml", ".yml"):
        data = load_document(p, TRACE_FLAG)
        if acceptance_pick.is_record(data):
            rec = acceptance_pick.as_record(data, path, TRACE_FLAG)
            row, what = acceptance_pick.trace_of(rec, sel, target, TRACE_FLAG, path)
            origin = RecordTrace(f"replaying {what}", row.exit, rec.model["n_layers"])
            spec = AcceptanceSpec.from_trace(row.flat_trace()).with_decoding(row.decoding)
            return spec, origin
        _no_selector(path, sel)
        kind = acceptance_pick.other_record(data)
        if kind is not None or (isinstance(data, dict) and "trace" not in data):
            raise ConfigError(
                TRACE_FLAG,
                f"{path} is {'a ' + kind if kind else 'an object without trace'}: give a list "
                'of 0/1, {"trace": [...]} (`ppsd accept --trace-out`) or an AcceptanceRecord '
                "as RECORD@EXIT[:HEAD]",
            )
        dec = decoding.of_trace_file(path, TRACE_FLAG)
        if isinstance(data, dict) and "trace" in data:
            data = data["trace"]
        return AcceptanceSpec.from_trace(validate.sequence(TRACE_FLAG, data)).with_decoding(
            dec
        ), None
    _no_selector(path, sel)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            TRACE_FLAG, f"{p} is not UTF-8 text (a list of 0 and 1 is expected)"
        ) from None
    except OSError as err:
        raise ConfigError(TRACE_FLAG, f"cannot read {p}: {err.strerror}") from None
    tokens = text.replace(",", " ").split()
    bad = [t for t in tokens if t not in ("0", "1")]
    if bad:
        raise ConfigError(TRACE_FLAG, f"must hold only 0 and 1, found {bad[0]!r}")
    return AcceptanceSpec.from_trace([int(t) for t in tokens]), None


def _no_selector(path: str, sel: str | None) -> None:
    if sel is not None:
        raise ConfigError(
            TRACE_FLAG,
            f"{path} is not an AcceptanceRecord: @{sel} names an exit of one (`ppsd accept "
            "--out`); a plain 0/1 trace file takes no @",
        )


def _profile_from(value: Any, where: str) -> HardwareProfile:
    if isinstance(value, str):
        return HardwareProfile.from_dict(load_document(value, where))
    if isinstance(value, dict) and "uniform" in value:
        validate.mapping(where, value, ("uniform",))
        u = validate.mapping(
            f"{where}.uniform",
            value["uniform"],
            ("layers", "t_layer", "head_fraction", "hop", "tick", "flush"),
            ("layers", "t_layer"),
        )
        try:
            return HardwareProfile.uniform(
                u["layers"],
                u["t_layer"],
                u.get("head_fraction", 1.0),
                hop=u.get("hop", 0.0),
                tick=u.get("tick", 0.0),
                flush=u.get("flush", 0.0),
            )
        except ConfigError as err:
            raise err.within(f"{where}.uniform") from None
    return HardwareProfile.from_dict(value, where)


def _uniform_from_flags(args: argparse.Namespace) -> HardwareProfile:
    if args.layers is None or args.t_layer is None:
        raise ConfigError(
            "--layers" if args.layers is None else "--t-layer",
            "a uniform profile needs both --layers and --t-layer",
        )
    validate.integer("--layers", args.layers, lo=1)
    validate.number("--t-layer", args.t_layer, lo=0.0, lo_open=True)
    hf = 1.0 if args.head_fraction is None else args.head_fraction
    validate.number("--head-fraction", hf, lo=0.0)
    return HardwareProfile.uniform(args.layers, args.t_layer, hf)


def _resolve_profile(args: argparse.Namespace, cfg: dict[str, Any]) -> HardwareProfile:
    uniform = [
        f for f, v in (("--layers", args.layers), ("--t-layer", args.t_layer)) if v is not None
    ]
    if args.head_fraction is not None:
        uniform.append("--head-fraction")
    if args.profile:
        if uniform:
            raise ConfigError(uniform[0], "describes a uniform profile; --profile gives one")
        profile = _profile_from(args.profile, "--profile")
    elif uniform:
        profile = _uniform_from_flags(args)
    elif "profile" in cfg:
        profile = _profile_from(cfg["profile"], "config.profile")
    else:
        profile = examples.example_profile()
    overrides = {
        k: getattr(args, k) for k in ("hop", "tick", "flush") if getattr(args, k) is not None
    }
    for k, v in overrides.items():
        validate.number(f"--{k}", v, lo=0.0)
    return profile.with_costs(**overrides) if overrides else profile


_PPSD_FLAGS = {
    "stages": "--stages",
    "boundaries": "--boundaries",
    "exit_stage": "--exit-stage",
    "devices": "--devices",
    "max_inflight": "--max-inflight",
}
_EESD_FLAGS = {"gamma": "--gamma", "no_cache_reuse": "--no-cache-reuse"}


def _given(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    return [flag for name, flag in flags.items() if getattr(args, name) not in (None, False)]


def _resolve_schemes(
    args: argparse.Namespace, cfg: dict[str, Any], n_layers: int
) -> list[SchemeConfig]:
    from_flags = args.scheme is not None or args.exit_layer is not None
    from_flags = from_flags or bool(_given(args, {**_PPSD_FLAGS, **_EESD_FLAGS}))
    if from_flags:
        kinds = ["ar", "eesd", "ppsd"] if args.scheme in (None, "all") else [args.scheme]
    elif "schemes" in cfg or "scheme" in cfg:
        items = cfg.get("schemes", [cfg.get("scheme")])
        items = validate.sequence("config.schemes", items, min_len=1)
        schemes = [SchemeConfig.from_dict(x, f"config.schemes[{i}]") for i, x in enumerate(items)]
        for sch in schemes:
            sch.check_layers(n_layers)
        return schemes
    else:
        kinds = ["ar", "eesd", "ppsd"]
    if "ppsd" not in kinds and _given(args, _PPSD_FLAGS):
        raise ConfigError(_given(args, _PPSD_FLAGS)[0], f"is a PPSD flag; --scheme is {kinds[0]}")
    if "eesd" not in kinds and _given(args, _EESD_FLAGS):
        raise ConfigError(_given(args, _EESD_FLAGS)[0], f"is an EESD flag; --scheme is {kinds[0]}")
    if kinds == ["ar"] and args.exit_layer is not None:
        raise ConfigError("--exit", "AR has no exit layer")
    if n_layers < 2 and kinds != ["ar"]:
        raise ConfigError(
            "--layers" if args.layers is not None else "profile",
            f"EESD and PPSD need a model of at least 2 layers, this one has {n_layers} "
            "(--scheme ar simulates it)",
        )
    return [_scheme_from_flags(kind, args, n_layers) for kind in kinds]


def _scheme_from_flags(kind: str, args: argparse.Namespace, n_layers: int) -> SchemeConfig:
    if kind == "ar":
        return SchemeConfig.ar()
    names = {
        "scheme.exit_layer": "--exit",
        "scheme.gamma": "--gamma",
        "scheme.stage_boundaries": "--boundaries" if args.boundaries else "--stages",
        "scheme.exit_stage": "--exit-stage",
        "scheme.devices": "--devices",
        "scheme.max_inflight": "--max-inflight",
    }
    try:
        if kind == "eesd":
            default = max(1, n_layers // 4)
            exit_layer = args.exit_layer if args.exit_layer is not None else default
            validate.integer("--exit", exit_layer, lo=1, hi=n_layers - 1)
            sch = SchemeConfig.eesd(
                exit_layer,
                args.gamma if args.gamma is not None else examples.EXAMPLE_GAMMA,
                cache_reuse=not args.no_cache_reuse,
            )
        else:
            sch = _ppsd_from_flags(args, n_layers)
        sch.check_layers(n_layers)
    except ConfigError as err:
        raise _as_flag(err, names) from None
    return sch


def _ppsd_from_flags(args: argparse.Namespace, n_layers: int) -> SchemeConfig:
    devices = _ints("--devices", args.devices) if args.devices else None
    if args.boundaries:
        if args.stages is not None:
            raise ConfigError("--stages", "conflicts with --boundaries (they count the stages)")
        bounds = _ints("--boundaries", args.boundaries)
        exit_stage = 1 if args.exit_stage is None else args.exit_stage
        sch = SchemeConfig.ppsd(bounds, exit_stage, devices, args.max_inflight)
        if args.exit_layer is not None and args.exit_layer != sch.draft_exit_layer:
            raise ConfigError(
                "--exit",
                f"{args.exit_layer} disagrees with --boundaries, whose exit stage "
                f"{exit_stage} ends at layer {sch.draft_exit_layer}",
            )
        return sch
    k = args.stages if args.stages is not None else min(examples.EXAMPLE_STAGES, n_layers)
    if args.exit_layer is not None and args.exit_stage not in (None, 1):
        raise ConfigError(
            "--exit-stage", "with --exit, stage 1 ends at the exit and drafts; use --boundaries"
        )
    if args.exit_layer is None and args.exit_stage not in (None, 1):
        validate.integer("--stages", k, lo=2, hi=n_layers)
        base = SchemeConfig.ppsd_even(n_layers, k, args.exit_stage)
        return SchemeConfig.ppsd(base.stage_boundaries, args.exit_stage, devices, args.max_inflight)
    split = SchemeConfig.ppsd_split(
        n_layers, k, args.exit_layer, devices, stages_field="--stages", exit_field="--exit"
    )
    return SchemeConfig.ppsd(split.stage_boundaries, 1, split.devices, args.max_inflight)


_ACC_FLAGS = {
    "alpha": "--alpha",
    "alphas": "--alphas",
    "histogram": "--histogram",
    "acceptance_trace": "--acceptance-trace",
    "acceptance_rate": "--acceptance-rate",
}


def _resolve_acceptance(
    args: argparse.Namespace,
    cfg: dict[str, Any],
    notes: list[str],
    origin: list[RecordTrace] | None = None,
) -> AcceptanceSpec:
    given = _given(args, _ACC_FLAGS)
    if len(given) > 1:
        raise ConfigError(given[1], f"conflicts with {given[0]}: give one acceptance source")
    src = given[0] if given else None
    _check_acceptance_companions(args, src)
    names = {
        "acceptance.alpha": "--alpha",
        "acceptance.burstiness": "--burstiness",
        "acceptance.alphas": "--alphas",
        "acceptance.counts": "--histogram",
        "acceptance.trace": "--acceptance-trace",
        "acceptance.tail": "--histogram-tail",
    }
    try:
        if src == "--alpha":
            if args.burstiness is not None:
                return AcceptanceSpec.markov(
                    args.alpha, args.burstiness, args.burstiness_over or "judged"
                )
            return AcceptanceSpec.iid(args.alpha)
        if src == "--alphas":
            alphas = _floats("--alphas", args.alphas)
            if args.measured_as == "unconditional":
                cond = conditional_from_unconditional(alphas, "--alphas")
                notes.append(
                    "per-position α_i = "
                    + ",".join(f"{a:.4f}" for a in cond)
                    + " (conditional) derived from unconditional per-position rates "
                    + ",".join(f"{a:g}" for a in alphas)
                )
                alphas = cond
            return AcceptanceSpec.per_position(alphas)
        if src == "--histogram":
            return AcceptanceSpec.histogram(
                _ints("--histogram", args.histogram), args.histogram_tail
            )
        if src == "--acceptance-trace":
            spec, found = _read_trace(args.acceptance_trace, decoding.from_args(args))
            if found is not None:
                notes.append(found.what)
                if origin is not None:
                    origin.append(found)
            return spec
        if src == "--acceptance-rate":
            d = derive_alpha(
                args.acceptance_rate,
                args.measured_as,
                gamma=args.measured_gamma,
                stages=args.measured_stages,
                field="--acceptance-rate",
            )
            notes.append(d.note)
            return AcceptanceSpec.iid(d.alpha)
    except ConfigError as err:
        err = _as_flag(err, names)
        if err.field in ("measured-gamma", "measured-stages", "measured-as"):
            err = ConfigError("--" + err.field, err.message)
        raise err from None
    if "acceptance" in cfg:
        return _acceptance_from_config(cfg["acceptance"], notes)
    return examples.example_acceptance()


def _check_acceptance_companions(args: argparse.Namespace, src: str | None) -> None:
    """Flags that qualify an acceptance source are refused without it (never ignored)."""
    if args.burstiness is not None and src != "--alpha":
        raise ConfigError(
            "--burstiness",
            "needs --alpha (the Markov chain's mean acceptance)"
            + (f"; it does not apply to {src}" if src else ""),
        )
    if args.burstiness_over is not None and args.burstiness is None:
        raise ConfigError("--burstiness-over", "needs --burstiness")
    if args.histogram_tail is not None and src != "--histogram":
        raise ConfigError("--histogram-tail", "needs --histogram")
    if args.measured_as is not None:
        if src == "--acceptance-rate" and args.measured_as not in SCALAR_MEASURES:
            raise ConfigError(
                "--measured-as",
                f"{args.measured_as} describes a per-position list; a single "
                f"--acceptance-rate is one of {', '.join(SCALAR_MEASURES)}",
            )
        if src == "--alphas" and args.measured_as not in LIST_MEASURES:
            raise ConfigError(
                "--measured-as", f"with --alphas it is one of {', '.join(LIST_MEASURES)}"
            )
        if src not in ("--acceptance-rate", "--alphas"):
            raise ConfigError("--measured-as", "needs --acceptance-rate or --alphas")
    if src == "--acceptance-rate" and args.measured_as is None:
        raise ConfigError(
            "--measured-as",
            "is required with --acceptance-rate (one of " + ", ".join(SCALAR_MEASURES) + ")",
        )
    for flag, value in (
        ("--measured-gamma", args.measured_gamma),
        ("--measured-stages", args.measured_stages),
    ):
        if value is not None and src != "--acceptance-rate":
            raise ConfigError(flag, "needs --acceptance-rate")


def _acceptance_from_config(value: Any, notes: list[str]) -> AcceptanceSpec:
    """An AcceptanceSpec, or a measurement in another tool's vocabulary:
    ``{measured_as: accepted/drafted, value: 0.6, gamma: 4}``."""
    if isinstance(value, dict) and "measured_as" in value:
        d = validate.mapping("config.acceptance", value, _MEASURED_KEYS, ("measured_as", "value"))
        try:
            derived = derive_alpha(
                d["value"],
                d["measured_as"],
                gamma=d.get("gamma"),
                stages=d.get("stages"),
                field="value",
            )
        except ConfigError as err:
            name = err.field.replace("measured-", "")
            raise ConfigError(f"config.acceptance.{name}", err.message) from None
        notes.append(derived.note)
        return AcceptanceSpec.iid(derived.alpha)
    return AcceptanceSpec.from_dict(value, "config.acceptance")


def _record_exit_default(
    args: argparse.Namespace, cfg: dict[str, Any], found: list[RecordTrace], n_layers: int
) -> argparse.Namespace:
    """Schemes built from flags draft at the record's exit unless the flags place the exit
    themselves (--exit, --boundaries, --exit-stage) or the config lists the schemes."""
    if not found or args.exit_layer is not None or args.boundaries or args.exit_stage:
        return args
    if "schemes" in cfg or "scheme" in cfg or args.scheme == "ar":
        return args
    if not 1 <= found[0].exit_layer < n_layers:
        return args
    return argparse.Namespace(**{**vars(args), "exit_layer": found[0].exit_layer})


def _record_warnings(
    found: list[RecordTrace], schemes: list[SchemeConfig], n_layers: int
) -> list[str]:
    """A record's trace replayed where it was not measured: another exit, another depth."""
    if not found:
        return []
    rt, out = found[0], []
    if rt.n_layers != n_layers:
        out.append(
            f"{TRACE_FLAG}: the record measured a model of {rt.n_layers} layers, the profile "
            f"has {n_layers}"
        )
    for sch in schemes:
        e = sch.draft_exit_layer
        if e is not None and e != rt.exit_layer:
            out.append(
                f"{TRACE_FLAG}: exit {rt.exit_layer}'s acceptance is replayed in "
                f"{sch.label()}, which drafts after layer {e}"
            )
    return out


def resolve(args: argparse.Namespace) -> Inputs:
    """Flags override the config file, which overrides the embedded example."""
    cfg: dict[str, Any] = {}
    if args.config:
        doc = load_document(args.config, "--config")
        if doc is None or doc == {}:
            raise ConfigError(
                "--config", f"{args.config} is empty (allowed keys: {', '.join(CONFIG_KEYS)})"
            )
        cfg = validate.mapping("config", doc, CONFIG_KEYS)
        if "scheme" in cfg and "schemes" in cfg:
            raise ConfigError("config.scheme", "give either scheme or schemes, not both")
    profile = _resolve_profile(args, cfg)
    notes: list[str] = []
    found: list[RecordTrace] = []
    acc = _resolve_acceptance(args, cfg, notes, found)
    flags = _record_exit_default(args, cfg, found, profile.n_layers)
    try:
        schemes = _resolve_schemes(flags, cfg, profile.n_layers)
    except ConfigError as err:
        if flags is args:
            raise
        raise ConfigError(
            err.field,
            f"{err.message} (the exit {flags.exit_layer} is the {TRACE_FLAG} record's: "
            "give --exit or --stages)",
        ) from None
    warnings = _record_warnings(found, schemes, profile.n_layers)
    given = _given(args, _ACC_FLAGS)
    if given and all(sch.kind == "ar" for sch in schemes):
        raise ConfigError(given[0], "AR drafts nothing: acceptance does not apply to --scheme ar")
    run = {
        "tokens": args.tokens
        if args.tokens is not None
        else cfg.get("tokens", examples.EXAMPLE_TOKENS),
        "seed": args.seed if args.seed is not None else cfg.get("seed", 0),
        "engine": args.engine if args.engine is not None else cfg.get("engine", "simpy"),
    }
    validate.integer("--tokens", run["tokens"], lo=1, hi=MAX_TOKENS)
    validate.integer("--seed", run["seed"], lo=0)
    validate.choice("--engine", run["engine"], ENGINES)
    for sch in schemes:  # every refusal before any work (a histogram's tail, the engine, …)
        try:
            check_inputs(profile, sch, acc if sch.kind != "ar" else None, run["engine"])
        except ConfigError as err:
            if err.field == "acceptance.tail" and args.histogram:
                msg = err.message.replace("choose a tail rule:", "choose one with --histogram-tail")
                raise ConfigError("--histogram", msg) from None
            where = {"engine": "--engine", "acceptance": "config.acceptance"}
            raise _as_flag(err, where) from None
    return Inputs(profile, schemes, acc, run, notes, warnings)


def _table(sims: list[Simulation]) -> str:
    head = f"{'scheme':<34}{'tokens/s':>11}{'speedup':>9}{'closed form':>13}{'obs. α':>8}{'flushes':>9}  busy per stage"
    lines = [head, "-" * len(head)]
    for sim in sims:
        r = sim.record
        cf = r.notes.get("closed_form_speedup")
        obs = r.acceptance_observed
        busy = " ".join(f"{b:.0%}" for b in r.stage_busy_fraction)
        lines.append(
            f"{r.scheme.label():<34}{r.tokens_per_s:>11.1f}{r.speedup:>8.3f}x"
            f"{(f'{cf:.3f}x' if cf is not None else '-'):>13}"
            f"{(f'{obs.rate:.3f}' if obs and obs.judged else '-'):>8}{r.flushes:>9}  {busy}"
        )
    return "\n".join(lines)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unwritable or clashing output paths before any work."""
    if args.out:
        check_writable(args.out, "--out")
    if args.chrome_trace:
        check_writable(args.chrome_trace, "--chrome-trace")
    if (
        args.out
        and args.chrome_trace
        and Path(args.out).resolve() == Path(args.chrome_trace).resolve()
    ):
        raise ConfigError("--chrome-trace", "is the same file as --out")


def run(args: argparse.Namespace) -> int:
    _check_outputs(args)
    inp = resolve(args)
    profile, acc, opts = inp.profile, inp.acceptance, inp.run
    target = decoding.from_args(args)
    sims = [
        simulate(profile, sch, acc, tokens=opts["tokens"], seed=opts["seed"], engine=opts["engine"])
        for sch in inp.schemes
    ]
    extra: dict[str, Any] = {}
    if inp.notes:  # the records say which α a measurement in another vocabulary became
        extra["acceptance_derived"] = "; ".join(inp.notes)
    if inp.warnings:  # ... and where a record's trace is replayed outside what it measured
        extra["acceptance_warnings"] = list(inp.warnings)
    if extra:
        sims = [
            Simulation(replace(s.record, notes={**s.record.notes, **extra}))
            if s.record.acceptance is not None
            else s
            for s in sims
        ]
    warn = decoding.flag([s.record for s in sims], acc.decoding, target)
    for w in [*inp.warnings, *([warn] if warn is not None else [])]:
        print(f"warning: {w}", file=sys.stderr)
    # Serialise everything before touching disk: a bad record never leaves a partial file,
    # and the outputs are written all or none.
    files: dict[str | os.PathLike[str], str | bytes] = {}
    if args.out:
        recs = [s.record.to_dict() for s in sims]
        files[args.out] = dumps(recs[0] if len(recs) == 1 else recs)
    if args.chrome_trace:
        sch = inp.schemes[-1]
        tl = simulate(
            profile,
            sch,
            acc if sch.kind != "ar" else None,
            tokens=min(200, opts["tokens"]),
            seed=opts["seed"],
            engine="simpy",
            timeline=True,
        )
        files[args.chrome_trace] = json.dumps(chrome_trace(tl.spans or [], sch))
    if args.json:
        for note in inp.notes:
            print(f"acceptance: {note}", file=sys.stderr)
        print(dumps([s.record.to_dict() for s in sims]), end="")
    else:
        prov = profile.provenance
        src = f"{prov.source}" + (f", {prov.notes}" if prov.notes else "")
        print(
            f"profile: {profile.n_layers} layers, AR token {profile.ar_token_time() * 1e3:.3f} ms ({src})"
        )
        for note in inp.notes:
            print(f"acceptance: {note}")
        print(
            f"acceptance: {acc.label()} | {opts['tokens']} tokens | seed {opts['seed']} | engine {sims[0].record.engine}"
        )
        print(
            "speedup = tokens/s over AR on the same profile (simulated); closed form = i.i.d. renewal formula"
        )
        print(_table(sims))
    if files:
        write_all(files)
        if not args.json:
            for path in files:
                print(f"wrote {path}")
    return 0
