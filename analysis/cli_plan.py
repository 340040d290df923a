"""``ppsd plan``: the best exit layer, scheme, stage split and γ for a profile, an acceptance
curve and a number of devices (see ``analysis.planner``)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from analysis.cli_plan_load import configure_load, load_kind, run_load
from analysis.curves import (
    AcceptanceCurve,
    Measured,
    illustrative_curve,
    parse_curve,
    read_curve,
)
from analysis.memory import WeightBudget
from analysis.planner import Plan, plan
from ppsd_sim.acceptance.vocabulary import SCALAR_MEASURES
from ppsd_sim.errors import ConfigError
from ppsd_sim.examples import example_profile
from ppsd_sim.records import decoding, validate
from ppsd_sim.records.acceptance_record import HEADS
from ppsd_sim.records.io import check_writable, dumps, load_document, write_all
from ppsd_sim.records.profile import HardwareProfile


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "With no arguments: the embedded example profile (32 layers, illustrative latencies), "
        "an illustrative α(E) curve and 4 devices. Predictions use the closed forms (i.i.d. "
        "acceptance, one device per PPSD stage) and the top configurations are confirmed by "
        "simulation. Exit code 1 when no configuration meets --min-tokens-per-s. A curve "
        "measured by another tool: --measured-as "
        + "|".join(SCALAR_MEASURES)
        + " with --measured-gamma G (or --measured-stages K) converts every point to α and "
        "prints what it derived (definitions in GLOSSARY.md). With --batch, --users or --rate: a "
        "load-aware plan (every configuration simulated serving that load, AR, TP-AR, PP-AR, "
        "EESD, PPSD) and the switch-off point of speculation."
    )
    g = p.add_argument_group("inputs")
    g.add_argument("--profile", help="HardwareProfile JSON/YAML (default: embedded example)")
    g.add_argument(
        "--synth",
        metavar="MODEL@DEVICE",
        help="synthesise the profile from shipped data, e.g. llama-2-70b@h100-sxm "
        "(see `ppsd plan --list-synth`)",
    )
    g.add_argument("--list-synth", action="store_true", help="list shipped models and devices")
    g.add_argument(
        "--curve",
        help="α at exit layers as exit:alpha pairs, e.g. 4:0.4,8:0.6,16:0.8 (with --measured-as: "
        "exit:value in that measure)",
    )
    g.add_argument(
        "--curve-file",
        metavar="FILE|RECORD[@HEAD]",
        help="JSON/YAML with 'exits' and 'alphas' lists, or 'exits', 'values' and "
        "'measured_as' (+ 'gamma' or 'stages') for another tool's measure, or an "
        "AcceptanceRecord (`ppsd accept --out`): its α per measured exit",
    )
    g.add_argument(
        "--accept",
        metavar="RECORD[@HEAD]",
        help="the AcceptanceRecord of `ppsd accept --out` (read as --curve-file is)",
    )
    g.add_argument(
        "--curve-head",
        choices=HEADS,
        help="the record's head whose α(E) is planned (default: the only one measured, "
        "else shared)",
    )
    g.add_argument(
        "--measured-as",
        choices=SCALAR_MEASURES,
        help="the curve's numbers are this measure, not ppsd's α (accepted/judged is α)",
    )
    g.add_argument(
        "--measured-gamma", type=int, help="the γ (drafts per round) the curve was measured at"
    )
    g.add_argument(
        "--measured-stages",
        type=int,
        help="the pipeline stages k a theoretical-speedup curve was measured at",
    )
    g.add_argument(
        "--exits",
        help="exit layers to consider (comma-separated; default: the curve's given range)",
    )
    s = p.add_argument_group("question")
    s.add_argument("--devices", type=int, default=4, help="devices available (default 4)")
    s.add_argument(
        "--target",
        choices=("max-speed", "min-devices"),
        default="max-speed",
        help="fastest configuration, or fewest devices reaching --min-tokens-per-s",
    )
    s.add_argument("--min-tokens-per-s", type=float, help="speed to reach (min-devices)")
    s.add_argument("--max-gamma", type=int, default=12, help="largest EESD γ searched (12)")
    s.add_argument("--top", type=int, default=8, help="configurations to show (8)")
    s.add_argument(
        "--sim-tokens",
        type=int,
        default=20_000,
        help="tokens simulated to confirm each shown configuration (0: skip; default 20000)",
    )
    s.add_argument("--seed", type=int, default=0, help="simulation seed (0)")
    decoding.add_args(s, "the plan's")
    s.add_argument(
        "--memory",
        metavar="MODEL@DEVICE[:DTYPE]",
        help="check weights against device memory using a shipped model shape and device "
        "(default with --synth: the synthesised pair; e.g. with a measured --profile)",
    )
    s.add_argument(
        "--device-memory-gb",
        type=float,
        help="memory per device in GB, overriding the device description's",
    )
    s.add_argument(
        "--ignore-memory",
        action="store_true",
        help="rank configurations whose weights do not fit a device too",
    )
    configure_load(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", help="write the plan as JSON (a CapacityPlan record) here")
    o.add_argument("--json", action="store_true", help="print the plan as JSON")
    o.add_argument(
        "--write-profile", help="also write the profile used (e.g. a synthesised one) as JSON"
    )


def _ints(field: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(field, f"must be comma-separated integers, got {text!r}") from None


def resolve_profile(args: argparse.Namespace, load: bool = False) -> HardwareProfile:
    """--profile file, --synth MODEL@DEVICE, or the embedded example (for a ``load`` plan
    the serving example: the same latencies with illustrative load and TP costs)."""
    if args.profile and args.synth:
        raise ConfigError("--synth", "give either --profile or --synth, not both")
    if args.profile:
        return HardwareProfile.from_dict(load_document(args.profile, "--profile"), "--profile")
    if args.synth:
        from analysis.synth import synthesise_named

        return synthesise_named(args.synth, "--synth")
    if load:
        from ppsd_sim.serving.example import example_serving_profile

        return example_serving_profile()
    return example_profile()


def resolve_memory(args: argparse.Namespace, n_layers: int) -> WeightBudget | None:
    """The weight budget to plan within: --memory, else the --synth pair; None if neither or
    --ignore-memory."""
    if args.ignore_memory:
        if args.memory or args.device_memory_gb is not None:
            raise ConfigError(
                "--ignore-memory", "cannot be combined with --memory/--device-memory-gb"
            )
        return None
    spec, field = (args.memory, "--memory") if args.memory else (args.synth, "--synth")
    if not spec:
        if args.device_memory_gb is not None:
            raise ConfigError(
                "--device-memory-gb", "needs --memory MODEL@DEVICE or --synth to know the weights"
            )
        return None
    from dataclasses import replace

    from analysis.memory import budget_of
    from analysis.synth import parse_synth

    budget = budget_of(*parse_synth(spec, field))
    if budget.n_layers != n_layers:
        raise ConfigError(field, f"{spec} has {budget.n_layers} layers, the profile {n_layers}")
    if args.device_memory_gb is not None:
        validate.number("--device-memory-gb", args.device_memory_gb, lo=0.0, lo_open=True)
        budget = replace(budget, device_gb=args.device_memory_gb)
    return budget


def curve_source(args: argparse.Namespace) -> tuple[str, str] | None:
    """(flag as typed, its value) of the curve file: --curve-file or --accept (one reader)."""
    given = [(f, v) for f, v in (("--curve-file", args.curve_file), ("--accept", args.accept)) if v]
    if args.curve and given:
        raise ConfigError("--curve", f"give either --curve or {given[0][0]}, not both")
    if len(given) > 1:
        raise ConfigError("--accept", "give either --curve-file or --accept, not both")
    return given[0] if given else None


def resolve_measured(args: argparse.Namespace) -> Measured | None:
    """--measured-as with its γ or k, refused without a curve to apply to."""
    measured_as = getattr(args, "measured_as", None)
    gamma, stages = getattr(args, "measured_gamma", None), getattr(args, "measured_stages", None)
    if measured_as is None:
        for flag, value in (("--measured-gamma", gamma), ("--measured-stages", stages)):
            if value is not None:
                raise ConfigError(flag, "needs --measured-as")
        return None
    if not (args.curve or args.curve_file or args.accept):
        raise ConfigError("--measured-as", "needs --curve or --curve-file to convert")
    return Measured(measured_as, gamma, stages)


def resolve_curve(args: argparse.Namespace, n_layers: int) -> AcceptanceCurve:
    source = curve_source(args)
    measured = resolve_measured(args)
    if args.curve_head is not None and source is None:
        raise ConfigError("--curve-head", "needs an AcceptanceRecord (--accept or --curve-file)")
    if args.curve:
        curve = parse_curve(args.curve, "--curve", measured)
    elif source is not None:
        curve = read_curve(
            source[1],
            source[0],
            measured,
            head=args.curve_head,
            target=decoding.from_args(args),
            n_layers=n_layers,
        )
    else:
        curve = illustrative_curve(n_layers)
    if curve.exits[-1] >= n_layers:
        raise ConfigError(
            "--curve" if args.curve else source[0] if source else "--curve-file",
            f"exit layers must be < L = {n_layers}, got {curve.exits[-1]}",
        )
    return curve


def format_plan(pl: Plan) -> str:
    """A plain-text table of the plan for the terminal."""
    lines = [
        f"profile: {pl.profile_source}; α(E): {pl.curve.label()}",
        f"AR: {pl.ar_tokens_per_s:.1f} tokens/s; {pl.evaluated} configurations searched, "
        f"≤ {pl.devices} device(s), target {pl.target}"
        + (f" ≥ {pl.min_tokens_per_s:g} tokens/s" if pl.min_tokens_per_s else ""),
    ]
    if pl.memory:
        lines.append(f"memory: {pl.memory}; configurations that do not fit are left out")
    if pl.curve.note and pl.curve.source != "illustrative":
        lines.append(f"acceptance: {pl.curve.note}")
    if pl.curve.source == "illustrative":
        lines.append("note: α(E) is illustrative, not measured; pass --curve or --curve-file")
    if pl.message:
        lines.append(pl.message)
    head = (
        f"{'#':>2}  {'configuration':<22} {'layout':<18} {'dev':>3} {'α':>6} {'tok/s':>8} "
        f"{'speedup':>8} {'sim':>6} {'b-even α':>8} {'α−.05':>6} {'α+.05':>6}  status"
    )
    lines += ["", head, "-" * len(head)]
    for i, c in enumerate(pl.candidates, 1):
        s = c.scheme
        layout = (
            ",".join(map(str, s.stage_boundaries))
            if s.kind == "ppsd"
            else (f"γ={s.gamma}" if s.kind == "eesd" else "-")
        )
        f = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        lines.append(
            f"{i:>2}  {s.label():<22} {layout:<18} {c.devices:>3} {f(c.alpha, '.3f'):>6} "
            f"{c.tokens_per_s:>8.1f} {c.speedup:>7.2f}× {f(c.simulated_speedup, '.2f'):>6} "
            f"{f(c.break_even_alpha, '.3f'):>8} {f(c.speedup_alpha_lo, '.2f'):>6} "
            f"{f(c.speedup_alpha_hi, '.2f'):>6}  {c.status}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list_synth:
        from analysis.devices import list_devices, list_models

        print("models: " + ", ".join(list_models()))
        print("devices: " + ", ".join(list_devices()))
        return 0
    validate.integer("--devices", args.devices, lo=1, hi=4096)
    validate.integer("--top", args.top, lo=1, hi=1000)
    validate.integer("--max-gamma", args.max_gamma, lo=1, hi=64)
    validate.integer("--sim-tokens", args.sim_tokens, lo=0, hi=10**7)
    validate.integer("--seed", args.seed, lo=0)
    if args.min_tokens_per_s is not None:
        validate.number("--min-tokens-per-s", args.min_tokens_per_s, lo=0.0, lo_open=True)
    check_outputs(args)
    kind = load_kind(args)
    profile = resolve_profile(args, load=kind is not None)
    curve = resolve_curve(args, profile.n_layers)
    warn = decoding.mismatch(curve.decoding, decoding.from_args(args))
    if warn is not None:  # on stderr for every plan, and in the plan record's message
        print(f"warning: {warn}", file=sys.stderr)
    exits = _ints("--exits", args.exits) if args.exits else None
    memory = resolve_memory(args, profile.n_layers)
    if kind is not None:
        return run_load(args, kind, profile, curve, exits, memory)
    pl = plan(
        profile,
        curve,
        args.devices,
        target=args.target.replace("-", "_"),
        min_tokens_per_s=args.min_tokens_per_s,
        max_gamma=args.max_gamma,
        top=args.top,
        sim_tokens=args.sim_tokens,
        seed=args.seed,
        exits=exits,
        memory=memory,
    )
    if warn is not None:
        pl = dataclasses.replace(
            pl, message=" ".join(x for x in (pl.message, f"warning: {warn}") if x)
        )
    # serialised before anything touches disk; the plan and the profile are written together
    files: dict[str | os.PathLike[str], str | bytes] = {}
    if args.out:
        files[args.out] = dumps(pl.to_dict())
    if args.write_profile:
        files[args.write_profile] = dumps(profile)
    print(dumps(pl.to_dict()) if args.json else format_plan(pl), end="" if args.json else "\n")
    if files:
        write_all(files)
    if args.out and not args.json:
        print(f"plan written to {args.out}")
    if args.write_profile and not args.json:
        print(f"profile written to {args.write_profile}")
    return 0 if pl.met else 1


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse unwritable or clashing output paths before any work."""
    if args.out:
        check_writable(args.out, "--out")
    if args.write_profile:
        check_writable(args.write_profile, "--write-profile")
    same = args.out and args.write_profile
    if same and Path(args.out).resolve() == Path(args.write_profile).resolve():
        raise ConfigError("--write-profile", "is the same file as --out")
