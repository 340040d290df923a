"""``ppsd sim``: simulate schemes from flags or a config file and print them side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ppsd_sim import examples
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import decoding, validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.io import atomic_write_text, dumps, load_document
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.simulate import ENGINES, Simulation, simulate
from ppsd_sim.trace_export import chrome_trace

CONFIG_KEYS = ("profile", "schemes", "scheme", "acceptance", "tokens", "seed", "engine")


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "With no arguments: the embedded example (32 layers, exit after 8, 4 stages, iid α=0.8, "
        "illustrative latencies), AR/EESD/PPSD side by side. Times are in seconds."
    )
    g = p.add_argument_group("inputs")
    g.add_argument("--config", help="YAML/JSON file with keys: " + ", ".join(CONFIG_KEYS))
    g.add_argument("--profile", help="HardwareProfile JSON/YAML file")
    g.add_argument("--layers", type=int, help="uniform profile: number of layers L")
    g.add_argument("--t-layer", type=float, help="uniform profile: one layer's decode latency (s)")
    g.add_argument(
        "--head-fraction",
        type=float,
        default=1.0,
        help="uniform profile: head latency / layer latency",
    )
    g.add_argument("--hop", type=float, help="inter-stage hop latency (s)")
    g.add_argument("--tick", type=float, help="per-step control cost (s)")
    g.add_argument("--flush", type=float, help="flush / KV-crop cost (s)")
    s = p.add_argument_group("scheme")
    s.add_argument("--scheme", choices=("ar", "eesd", "ppsd", "all"), help="default: all three")
    s.add_argument("--exit", type=int, dest="exit_layer", help="EESD exit layer E (default L/4)")
    s.add_argument("--gamma", type=int, help="EESD drafts per round (default 4)")
    s.add_argument(
        "--no-cache-reuse",
        action="store_true",
        help="EESD verification recomputes the early layers",
    )
    s.add_argument("--stages", type=int, help="PPSD: k equal stages (default 4)")
    s.add_argument(
        "--boundaries", help="PPSD: comma-separated end layer of each stage, e.g. 8,16,24,32"
    )
    s.add_argument(
        "--exit-stage", type=int, default=1, help="PPSD: stage (1-based) whose output drafts"
    )
    s.add_argument(
        "--devices", help="PPSD: comma-separated device per stage; shared devices contend"
    )
    a = p.add_argument_group("acceptance")
    a.add_argument("--alpha", type=float, help="i.i.d. acceptance (default 0.8)")
    a.add_argument(
        "--burstiness",
        type=float,
        help="two-state Markov model with mean --alpha and this lag-1 correlation",
    )
    a.add_argument("--alphas", help="per-position α, comma-separated")
    a.add_argument(
        "--histogram", help="counts of rounds with 0..γ accepted drafts, comma-separated"
    )
    a.add_argument(
        "--acceptance-trace",
        help="file of recorded 0/1 outcomes (JSON list or whitespace-separated)",
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


def _ints(field: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(field, f"must be comma-separated integers, got {text!r}") from None


def _floats(field: str, text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(field, f"must be comma-separated numbers, got {text!r}") from None


def _read_trace(path: str) -> list[int]:
    p = Path(path)
    if p.suffix.lower() in (".json", ".yaml", ".yml"):
        data = load_document(p, "--acceptance-trace")
        if isinstance(data, dict) and "trace" in data:
            data = data["trace"]
        return validate.sequence("--acceptance-trace", data)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError("--acceptance-trace", f"cannot read {p}: {err}") from None
    tokens = text.replace(",", " ").split()
    bad = [t for t in tokens if t not in ("0", "1")]
    if bad:
        raise ConfigError("--acceptance-trace", f"must hold only 0 and 1, found {bad[0]!r}")
    return [int(t) for t in tokens]


def _profile_from(value: Any, field: str) -> HardwareProfile:
    if isinstance(value, str):
        return HardwareProfile.from_dict(load_document(value, field))
    if isinstance(value, dict) and "uniform" in value:
        validate.mapping(field, value, ("uniform",))
        u = validate.mapping(
            f"{field}.uniform",
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
            raise err.within(f"{field}.uniform") from None
    return HardwareProfile.from_dict(value, field)


def resolve(
    args: argparse.Namespace,
) -> tuple[HardwareProfile, list[SchemeConfig], AcceptanceSpec, dict[str, Any]]:
    """Flags override the config file, which overrides the embedded example."""
    cfg: dict[str, Any] = {}
    if args.config:
        doc = load_document(args.config, "--config")
        cfg = validate.mapping("config", doc if doc is not None else {}, CONFIG_KEYS)
        if "scheme" in cfg and "schemes" in cfg:
            raise ConfigError("config.scheme", "give either scheme or schemes, not both")

    # profile
    if args.profile:
        profile = _profile_from(args.profile, "--profile")
    elif args.layers is not None or args.t_layer is not None:
        if args.layers is None or args.t_layer is None:
            raise ConfigError(
                "--layers" if args.layers is None else "--t-layer",
                "a uniform profile needs both --layers and --t-layer",
            )
        profile = HardwareProfile.uniform(args.layers, args.t_layer, args.head_fraction)
    elif "profile" in cfg:
        profile = _profile_from(cfg["profile"], "config.profile")
    else:
        profile = examples.example_profile()
    overrides = {
        k: getattr(args, k) for k in ("hop", "tick", "flush") if getattr(args, k) is not None
    }
    for k, v in overrides.items():
        validate.number(f"--{k}", v, lo=0.0)
    if overrides:
        profile = profile.with_costs(**overrides)
    n_layers = profile.n_layers

    # schemes
    if (
        args.scheme is not None
        or args.exit_layer is not None
        or args.boundaries
        or args.stages
        or args.gamma
    ):
        kinds = ["ar", "eesd", "ppsd"] if args.scheme in (None, "all") else [args.scheme]
        schemes = [_scheme_from_flags(kind, args, n_layers) for kind in kinds]
    elif "schemes" in cfg or "scheme" in cfg:
        items = cfg.get("schemes", [cfg.get("scheme")])
        items = validate.sequence("config.schemes", items, min_len=1)
        schemes = [SchemeConfig.from_dict(x, f"config.schemes[{i}]") for i, x in enumerate(items)]
    else:
        schemes = [_scheme_from_flags(kind, args, n_layers) for kind in ("ar", "eesd", "ppsd")]
    for sch in schemes:
        sch.check_layers(n_layers)

    # acceptance
    flags = [n for n in ("alphas", "histogram", "acceptance_trace") if getattr(args, n)]
    if len(flags) > 1:
        raise ConfigError(
            "--" + flags[1].replace("_", "-"), f"conflicts with --{flags[0].replace('_', '-')}"
        )
    if args.alphas:
        acc = AcceptanceSpec.per_position(_floats("--alphas", args.alphas))
    elif args.histogram:
        acc = AcceptanceSpec.histogram(_ints("--histogram", args.histogram))
    elif args.acceptance_trace:
        acc = AcceptanceSpec.from_trace(_read_trace(args.acceptance_trace)).with_decoding(
            decoding.of_trace_file(args.acceptance_trace)
        )
    elif args.alpha is not None or args.burstiness is not None:
        alpha = examples.EXAMPLE_ALPHA if args.alpha is None else args.alpha
        acc = (
            AcceptanceSpec.markov(alpha, args.burstiness)
            if args.burstiness is not None
            else AcceptanceSpec.iid(alpha)
        )
    elif "acceptance" in cfg:
        acc = AcceptanceSpec.from_dict(cfg["acceptance"], "config.acceptance")
    else:
        acc = examples.example_acceptance()

    run = {
        "tokens": args.tokens
        if args.tokens is not None
        else cfg.get("tokens", examples.EXAMPLE_TOKENS),
        "seed": args.seed if args.seed is not None else cfg.get("seed", 0),
        "engine": args.engine if args.engine is not None else cfg.get("engine", "simpy"),
    }
    validate.integer("--tokens", run["tokens"], lo=1)
    validate.integer("--seed", run["seed"], lo=0)
    validate.choice("--engine", run["engine"], ENGINES)
    return profile, schemes, acc, run


def _scheme_from_flags(kind: str, args: argparse.Namespace, n_layers: int) -> SchemeConfig:
    if kind == "ar":
        return SchemeConfig.ar()
    if kind == "eesd":
        exit_layer = args.exit_layer if args.exit_layer is not None else max(1, n_layers // 4)
        return SchemeConfig.eesd(
            exit_layer,
            args.gamma if args.gamma is not None else examples.EXAMPLE_GAMMA,
            cache_reuse=not args.no_cache_reuse,
        )
    devices = _ints("--devices", args.devices) if args.devices else None
    if args.boundaries:
        return SchemeConfig.ppsd(_ints("--boundaries", args.boundaries), args.exit_stage, devices)
    k = args.stages if args.stages is not None else min(examples.EXAMPLE_STAGES, n_layers)
    validate.integer("--stages", k, lo=2, hi=n_layers)
    base = SchemeConfig.ppsd_even(n_layers, k, args.exit_stage)
    return SchemeConfig.ppsd(base.stage_boundaries, args.exit_stage, devices)


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


def run(args: argparse.Namespace) -> int:
    profile, schemes, acc, opts = resolve(args)
    target = decoding.from_args(args)
    sims = [
        simulate(profile, sch, acc, tokens=opts["tokens"], seed=opts["seed"], engine=opts["engine"])
        for sch in schemes
    ]
    warn = decoding.flag([s.record for s in sims], acc.decoding, target)
    if warn is not None:
        print(f"warning: {warn}", file=sys.stderr)
    # Serialise everything before touching disk: a bad record never leaves a partial file.
    out_text = None
    if args.out:
        recs = [s.record.to_dict() for s in sims]
        out_text = dumps(recs[0] if len(recs) == 1 else recs)
    trace_text = None
    if args.chrome_trace:
        sch = schemes[-1]
        tl = simulate(
            profile,
            sch,
            acc,
            tokens=min(200, opts["tokens"]),
            seed=opts["seed"],
            engine="simpy",
            timeline=True,
        )
        trace_text = json.dumps(chrome_trace(tl.spans or [], sch))
    if args.json:
        print(dumps([s.record.to_dict() for s in sims]), end="")
    else:
        prov = profile.provenance
        src = f"{prov.source}" + (f", {prov.notes}" if prov.notes else "")
        print(
            f"profile: {profile.n_layers} layers, AR token {profile.ar_token_time() * 1e3:.3f} ms ({src})"
        )
        print(
            f"acceptance: {acc.label()} | {opts['tokens']} tokens | seed {opts['seed']} | engine {sims[0].record.engine}"
        )
        print(
            "speedup = tokens/s over AR on the same profile (simulated); closed form = i.i.d. renewal formula"
        )
        print(_table(sims))
    if out_text is not None:
        atomic_write_text(args.out, out_text)
        print(f"wrote {args.out}") if not args.json else None
    if trace_text is not None:
        atomic_write_text(args.chrome_trace, trace_text)
        print(f"wrote {args.chrome_trace}") if not args.json else None
    return 0
