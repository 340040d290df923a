"""``ppsd plan --batch/--users/--rate``: the load-aware plan (``analysis.load_plan``) from the
command line — its flags, their checks and the terminal table."""

from __future__ import annotations

import argparse

from analysis.curves import AcceptanceCurve
from analysis.kv_memory import KVRoom, kv_room_of
from analysis.load_plan import LoadSetup, parse_loads, plan_load
from analysis.load_plan_record import (
    FAMILY_BASELINES,
    LOAD_KINDS,
    METRIC_LABEL,
    METRICS,
    SPECULATIVE,
    LoadPlan,
    LoadPoint,
    baseline_label,
)
from analysis.memory import WeightBudget
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.io import check_writable, dumps, write_all
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.serving_record import POLICIES
from ppsd_sim.records.workload import LengthDist
from ppsd_sim.serving import tp_profile

#: flags that only mean something with a load (``dest`` → the flag as typed)
LOAD_ONLY = {
    "prompt": "--prompt",
    "output": "--output",
    "requests": "--requests",
    "max_batch": "--max-batch",
    "think": "--think",
    "policies": "--policies",
    "shortlist": "--shortlist",
    "metric": "--metric",
    "tpot_slo": "--tpot-slo",
    "ttft_slo": "--ttft-slo",
    "no_sensitivity": "--no-sensitivity",
    "tp_profile": "--tp-profile",
    "ignore_kv": "--ignore-kv",
}
#: batch-1 flags a load plan does not use (``dest`` → (flag, its default))
BATCH1_ONLY = {
    "target": ("--target", "max-speed"),
    "min_tokens_per_s": ("--min-tokens-per-s", None),
    "top": ("--top", 8),
    "sim_tokens": ("--sim-tokens", 20_000),
}


def configure_load(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "load (any one of these makes a load-aware plan from serving simulations)"
    )
    x = g.add_mutually_exclusive_group()
    x.add_argument("--batch", help="batch sizes, e.g. 1,4,16,64: B sequences always in flight")
    x.add_argument("--users", help="closed-loop users, e.g. 1,8,32 (with --think, --max-batch)")
    x.add_argument("--rate", help="Poisson request rates in requests/s, e.g. 0.5,2,8")
    g.add_argument("--prompt", help="prompt tokens: N, uniform:LO:HI, lognormal:MED:SIGMA[:MAX]")
    g.add_argument("--output", help="output tokens, same forms as --prompt (default 128)")
    g.add_argument(
        "--requests",
        type=int,
        help="requests per load (default 4 per sequence in flight, ≥ 16; 200 at a rate)",
    )
    g.add_argument("--max-batch", type=int, help="--users/--rate: sequences at once (64)")
    g.add_argument("--think", type=float, help="--users: think time between requests (s)")
    g.add_argument(
        "--policies",
        help=f"pipelines' slot policies searched, comma-separated from {', '.join(POLICIES)} "
        "(default all)",
    )
    g.add_argument("--shortlist", type=int, help="EESD (E, γ) and PPSD exits per k simulated (2)")
    g.add_argument(
        "--metric",
        choices=METRICS,
        help="rank by (default: throughput for --batch/--users, e2e_p50 for --rate)",
    )
    g.add_argument("--tpot-slo", type=float, help="goodput: time per output token target (s)")
    g.add_argument("--ttft-slo", type=float, help="goodput: time to first token target (s)")
    g.add_argument(
        "--no-sensitivity", action="store_true", help="skip the switch-off at α(E) ± 0.05"
    )
    g.add_argument(tp_profile.FLAG, help=tp_profile.HELP + " (k: its provenance.threads)")
    g.add_argument(
        "--ignore-kv",
        action="store_true",
        help="do not limit the KV cache by the memory the weights leave",
    )


def load_kind(args: argparse.Namespace) -> str | None:
    """The load flag given (batch, users, rate), or None for a batch-1 plan; refuses load-only
    flags without a load and batch-1-only flags with one."""
    kind = next((k for k in LOAD_KINDS if getattr(args, k) is not None), None)
    if kind is None:
        for dest, flag in LOAD_ONLY.items():
            if getattr(args, dest) not in (None, False):
                raise ConfigError(flag, "needs a load: --batch, --users or --rate")
        return None
    for dest, (flag, default) in BATCH1_ONLY.items():
        if getattr(args, dest) != default:
            raise ConfigError(flag, f"is for the batch-1 plan, not with --{kind}")
    if args.think is not None and kind != "users":
        raise ConfigError("--think", "needs --users (a closed loop)")
    if args.max_batch is not None and kind == "batch":
        raise ConfigError("--max-batch", "is the load itself with --batch; use --users or --rate")
    return kind


def _numbers(flag: str, text: str, kind: str) -> list[float]:
    out: list[float] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            out.append(int(part) if kind != "rate" else float(part))
        except ValueError:
            what = "integers" if kind != "rate" else "numbers"
            raise ConfigError(flag, f"must be comma-separated {what}, got {text!r}") from None
    if not out:
        raise ConfigError(flag, "lists no load")
    return out


def _setup(args: argparse.Namespace) -> LoadSetup:
    kw: dict = {}
    if args.prompt:
        kw["prompt"] = LengthDist.parse(args.prompt, "--prompt")
    if args.output:
        kw["output"] = LengthDist.parse(args.output, "--output")
    if args.policies:
        pols = [x.strip() for x in args.policies.split(",") if x.strip()]
        for x in pols:
            validate.choice("--policies", x, POLICIES)
        kw["policies"] = tuple(pols)
    for dest, flag, name in (
        ("requests", "--requests", "requests"),
        ("max_batch", "--max-batch", "max_batch"),
        ("shortlist", "--shortlist", "shortlist"),
    ):
        v = getattr(args, dest)
        if v is not None:
            kw[name] = validate.integer(flag, v, lo=1, hi=10**6)
    if args.think is not None:
        kw["think_s"] = validate.number("--think", args.think, lo=0.0)
    for dest, flag in (("tpot_slo", "--tpot-slo"), ("ttft_slo", "--ttft-slo")):
        v = getattr(args, dest)
        if v is not None:
            kw[f"{dest}_s"] = validate.number(flag, v, lo=0.0, lo_open=True)
    kw["metric"] = args.metric
    kw["seed"] = validate.integer("--seed", args.seed, lo=0)
    return LoadSetup(**kw)


def _with_tp(args: argparse.Namespace, profile: HardwareProfile) -> HardwareProfile:
    """Add TP-AR(k) costs from a profile measured with k threads (``--tp-profile``)."""
    return tp_profile.with_tp_profile(profile, args.tp_profile) if args.tp_profile else profile


def _kv(args: argparse.Namespace, memory: WeightBudget | None) -> KVRoom | None:
    """The KV room within ``memory`` from the --memory / --synth model shape, unless
    --ignore-kv or no weight budget."""
    if memory is None or args.ignore_kv:
        return None
    from analysis.synth import parse_synth

    spec, field = (args.memory, "--memory") if args.memory else (args.synth, "--synth")
    model, _device, dtype = parse_synth(spec, field)
    return kv_room_of(model, memory, dtype)


def run_load(
    args: argparse.Namespace,
    kind: str,
    profile: HardwareProfile,
    curve: AcceptanceCurve,
    exits: list[int] | None,
    memory: WeightBudget | None,
) -> int:
    """Answer a load question and print (or write) the LoadPlan; exit code 0."""
    flag = f"--{kind}"
    loads = parse_loads(kind, _numbers(flag, getattr(args, kind), kind))
    setup = _setup(args)
    profile = _with_tp(args, profile)
    kv = _kv(args, memory)
    for out_flag in ("out", "write_profile"):
        if getattr(args, out_flag):
            check_writable(getattr(args, out_flag), "--" + out_flag.replace("_", "-"))
    label = args.synth or args.profile or "embedded example"
    lp = plan_load(
        profile,
        curve,
        args.devices,
        loads,
        setup,
        memory=memory,
        kv=kv,
        max_gamma=args.max_gamma,
        exits=exits,
        sensitivity=not args.no_sensitivity,
        profile_label=label,
    )
    # the plan and the profile are written together or not at all
    files: dict[str, str] = {}
    if args.out:
        files[args.out] = dumps(lp.to_dict())
    if args.write_profile:
        files[args.write_profile] = dumps(profile)
    write_all(files)
    print(dumps(lp.to_dict()) if args.json else format_load_plan(lp), end="" if args.json else "\n")
    if args.out and not args.json:
        print(f"plan written to {args.out}")
    return 0


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _point_lines(p: LoadPoint, devices: int) -> list[str]:
    m = p.metric
    unit = "tok/s" if m == "throughput" else "s"
    best = p.rows[0]
    lines = [
        f"{p.load.label()}: best {best.scheme.label()}"
        + ("" if best.layout() == "-" else f" ({best.layout()})")
        + f" on {best.devices} device(s), {_f(best.value(m), '.4g')} {unit}"
    ]
    head = (
        f"   {'configuration':<24} {'layout':<34} {'dev':>3} {'α':>5} {'tok/s':>9} "
        f"{'TPOT p50':>9} {'batch':>6} {'×AR':>6} {'×PP-AR':>7} {'×best≤k':>8}"
    )
    lines += [head]
    for shown, r in enumerate(p.rows):
        if shown >= 8:
            lines.append(f"   … {len(p.rows) - shown} more in the JSON")
            break
        pp = r.speedups.get("pp_ar_same_load", {}).get(m)
        lines.append(
            f"   {r.scheme.label():<24} {r.layout():<34} {r.devices:>3} {_f(r.alpha, '.2f'):>5} "
            f"{r.throughput_tok_s:>9.1f} {_f(r.tpot_p50, '.4f'):>9} {r.mean_batch:>6.1f} "
            f"{_f(p.speedup(r, 'ar'), '.2f'):>6} {_f(pp, '.2f'):>7} "
            f"{_f(p.speedup(r, 'best_base'), '.2f'):>8}"
        )
    lines += [f"   note: {n}" for n in p.notes]
    return lines


def format_load_plan(lp: LoadPlan) -> str:
    """The load plan as a terminal table: one block per load, then the switch-off points."""
    lines = [
        f"profile: {lp.profile_label} ({lp.profile_source}); α(E): {lp.curve.label()}; "
        f"≤ {lp.devices} device(s)",
        f"requests: {lp.workload}",
        f"ranked by {METRIC_LABEL[lp.metric]}; speedups on that metric, each against a named "
        "baseline at the same load: ×AR = AR on one device, ×PP-AR = PP-AR on the same stages "
        "(wave schedule), ×best≤k = the best AR/TP-AR/PP-AR on ≤ the same devices",
    ]
    if lp.memory:
        lines.append(f"memory: {lp.memory}")
    if lp.curve.source == "illustrative":
        lines.append("note: α(E) is illustrative, not measured; pass --curve or --curve-file")
    lines += [f"note: {n}" for n in lp.notes]
    for p in lp.points:
        lines += ["", *_point_lines(p, lp.devices)]
    lines += [
        "",
        "switch-off point (smallest load above which no configuration beats the baseline):",
    ]
    for fam in SPECULATIVE:
        for base in FAMILY_BASELINES[fam]:
            s0 = lp.switch_off(fam, 0.0, base)
            if s0 is None:
                continue
            sens = [lp.switch_off(fam, d, base) for d in (-0.05, 0.05)]
            sens_txt = ", ".join(
                f"α{'−' if d < 0 else '+'}0.05: {s.short()}"
                for d, s in zip((-0.05, 0.05), sens, strict=True)
                if s is not None
            )
            lines.append(
                f"  {fam.upper()} vs {baseline_label(fam, base)}: {s0.label()}"
                + (f"  [{sens_txt}]" if sens_txt else "")
            )
    return "\n".join(lines)
