"""``ppsd serving``: simulate many requests at once — AR, PP-AR, TP-AR, EESD and PPSD side by
side at the same load, with throughput, latency percentiles, goodput and speedups."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.io import atomic_write_text, check_writable, dumps, load_document
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.serving_record import POLICIES, POLICY_HELP, ServingRecord, ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Workload
from ppsd_sim.serving import tp_profile
from ppsd_sim.serving.example import example_serving_profile, example_workload
from ppsd_sim.serving.requests import load_arrival_times, load_requests
from ppsd_sim.serving.simulate import compare_serving

KINDS = ("ar", "pp_ar", "tp_ar", "eesd", "ppsd")
CONFIG_KEYS = ("profile", "schemes", "workload", "settings", "seed")


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "With no arguments: the embedded example (the `ppsd sim` example profile with "
        "illustrative load costs; 200 requests, prompts 64–512, 128 output tokens, Poisson "
        "6 req/s, α = 0.8; batch ≤ 32), every scheme on 4 devices. Times are in seconds."
    )
    g = p.add_argument_group("inputs")
    g.add_argument("--config", help="YAML/JSON file with keys: " + ", ".join(CONFIG_KEYS))
    g.add_argument(
        "--profile", help="HardwareProfile JSON/YAML (with batched costs if it has them)"
    )
    g.add_argument(
        tp_profile.FLAG, help=tp_profile.HELP + "; k is --tp if given, else its provenance.threads"
    )
    s = p.add_argument_group("schemes")
    s.add_argument(
        "--schemes",
        help=f"comma-separated, from {', '.join(KINDS)} (default: all the profile can price)",
    )
    s.add_argument(
        "--exit", type=int, dest="exit_layer", help="EESD/PPSD exit layer E (default L/4)"
    )
    s.add_argument("--gamma", type=int, help="EESD drafts per round (default 4)")
    s.add_argument("--stages", type=int, help="PP-AR/PPSD stages k (default 4); TP-AR's default k")
    s.add_argument("--tp", type=int, help="TP-AR degree (default: --stages)")
    s.add_argument(
        "--max-inflight", type=int, help="PPSD: tokens of a sequence in flight (default k + 1)"
    )
    w = p.add_argument_group("workload")
    w.add_argument("--workload", help="a Workload JSON/YAML file")
    w.add_argument(
        "--requests-file",
        help="list of requests: CSV with a header (prompt_tokens,output_tokens[,arrival_s]"
        "[,alpha|acceptance_trace]) or JSON Lines",
    )
    w.add_argument("--requests", type=int, help="number of requests (default 200)")
    w.add_argument(
        "--prompt", help="prompt tokens: N, uniform:LO:HI or lognormal:MEDIAN:SIGMA[:MAX]"
    )
    w.add_argument("--output", help="output tokens, same forms as --prompt")
    w.add_argument("--rate", type=float, help="Poisson arrivals, requests/s")
    w.add_argument("--arrivals", help="file of arrival times in seconds, one per line")
    w.add_argument("--users", type=int, help="closed loop: N users, each waits for its answer")
    w.add_argument("--think", type=float, help="closed loop: think time between requests (s)")
    w.add_argument("--at-once", action="store_true", help="every request arrives at t = 0")
    a = p.add_argument_group("acceptance")
    a.add_argument("--alpha", type=float, help="i.i.d. acceptance (default 0.8)")
    a.add_argument("--burstiness", type=float, help="two-state Markov model, mean --alpha")
    a.add_argument("--alphas", help="per-position α, comma-separated")
    c = p.add_argument_group("scheduler")
    c.add_argument("--max-batch", type=int, help="sequences admitted at once (default 32)")
    c.add_argument("--kv-budget", type=int, help="KV cache in tokens (default: unlimited)")
    c.add_argument(
        "--policy",
        choices=POLICIES,
        help="pipelines' stage-1 slots (the ×PP-AR baseline always runs real_first): "
        + "; ".join(f"{k}: {v}" for k, v in POLICY_HELP.items()),
    )
    c.add_argument("--microbatch", type=int, help="pipelines: stage-1 step cap (real_first)")
    c.add_argument("--ttft-slo", type=float, help="goodput: time to first token target (s)")
    c.add_argument("--tpot-slo", type=float, help="goodput: time per output token target (s)")
    r = p.add_argument_group("run and output")
    r.add_argument("--seed", type=int, help="random seed (default 0)")
    r.add_argument("--out", help="write the ServingRecords here (a JSON list)")
    r.add_argument("--per-request", action="store_true", help="with --out: every request's times")
    r.add_argument("--json", action="store_true", help="print the records as JSON")


# ---- parsing ------------------------------------------------------------------------------------
def _profile(args: argparse.Namespace, cfg: dict[str, Any]) -> HardwareProfile:
    if args.profile:
        prof = HardwareProfile.from_dict(load_document(args.profile, "--profile"), "--profile")
    elif "profile" in cfg:
        v = cfg["profile"]
        doc = load_document(v, "config.profile") if isinstance(v, str) else v
        prof = HardwareProfile.from_dict(doc, "config.profile")
    else:
        prof = example_serving_profile()
    if args.tp_profile:
        prof = tp_profile.with_tp_profile(prof, args.tp_profile, degree=args.tp, degree_flag="--tp")
    return prof


def _schemes(
    args: argparse.Namespace, cfg: dict[str, Any], prof: HardwareProfile
) -> list[SchemeConfig]:
    L = prof.n_layers
    if args.schemes is None and "schemes" in cfg:
        items = validate.sequence("config.schemes", cfg["schemes"], min_len=1)
        return [SchemeConfig.from_dict(x, f"config.schemes[{i}]") for i, x in enumerate(items)]
    k = args.stages if args.stages is not None else min(4, L)
    tp = args.tp if args.tp is not None else k
    if args.schemes is None:
        kinds = [x for x in KINDS if x != "tp_ar" or any(t.degree == tp for t in prof.tp)]
    else:
        kinds = [x.strip() for x in args.schemes.split(",") if x.strip()]
        for x in kinds:
            validate.choice("--schemes", x, KINDS)
    e = args.exit_layer
    if args.max_inflight is not None:
        validate.integer("--max-inflight", args.max_inflight, lo=1)
    out = []
    for kind in kinds:
        if kind == "ar":
            out.append(SchemeConfig.ar())
        elif kind == "eesd":
            gamma = validate.integer("--gamma", 4 if args.gamma is None else args.gamma, lo=1)
            out.append(SchemeConfig.eesd(e if e is not None else max(1, L // 4), gamma))
        elif kind == "tp_ar":
            validate.integer("--tp", tp, lo=2)
            prof.tensor_parallel(tp, "--tp")
            out.append(SchemeConfig.tp_ar(tp))
        else:
            split = SchemeConfig.ppsd_split(L, k, e, stages_field="--stages", exit_field="--exit")
            if kind == "pp_ar":
                out.append(SchemeConfig.pp_ar(split.stage_boundaries))
            else:
                out.append(replace(split, max_inflight=args.max_inflight))
    for s in out:
        s.check_layers(L)
    return out


def _acceptance(args: argparse.Namespace) -> AcceptanceSpec | None:
    try:
        return _acceptance_spec(args)
    except ConfigError as err:  # name the flag the user typed
        field = err.field.replace("acceptance.", "--", 1)
        raise ConfigError(field, err.message) from None


def _acceptance_spec(args: argparse.Namespace) -> AcceptanceSpec | None:
    if args.alphas:
        if args.alpha is not None or args.burstiness is not None:
            raise ConfigError("--alphas", "conflicts with --alpha/--burstiness")
        try:
            vals = [float(x) for x in args.alphas.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                "--alphas", f"must be comma-separated numbers, got {args.alphas!r}"
            ) from None
        return AcceptanceSpec.per_position(vals)
    if args.burstiness is not None:
        return AcceptanceSpec.markov(0.8 if args.alpha is None else args.alpha, args.burstiness)
    if args.alpha is not None:
        return AcceptanceSpec.iid(args.alpha)
    return None


def _workload(args: argparse.Namespace, cfg: dict[str, Any]) -> Workload:
    if args.workload:
        base = Workload.from_dict(load_document(args.workload, "--workload"), "--workload")
    elif "workload" in cfg:
        base = Workload.from_dict(cfg["workload"], "config.workload")
    else:
        base = example_workload()
    arrival_flags = [
        f
        for f, on in (
            ("--rate", args.rate is not None),
            ("--arrivals", bool(args.arrivals)),
            ("--users", args.users is not None),
            ("--at-once", args.at_once),
        )
        if on
    ]
    if len(arrival_flags) > 1:
        raise ConfigError(arrival_flags[1], f"conflicts with {arrival_flags[0]}")
    if args.think is not None and args.users is None:
        raise ConfigError("--think", "needs --users (a closed loop)")
    kw: dict[str, Any] = {}
    if args.requests_file:
        if args.prompt or args.output or args.requests is not None:
            raise ConfigError(
                "--requests-file", "lists the lengths: drop --prompt/--output/--requests"
            )
        reqs = load_requests(args.requests_file)
        kw.update(requests=reqs, count=None)
        timed = reqs[0].arrival_s is not None
        if timed and not arrival_flags:
            kw["arrivals"] = Arrivals.trace()
        elif timed:
            raise ConfigError(arrival_flags[0], "the requests file carries arrival times")
    if args.prompt:
        kw["prompt"] = LengthDist.parse(args.prompt, "--prompt")
    if args.output:
        kw["output"] = LengthDist.parse(args.output, "--output")
    if args.requests is not None:
        kw["count"] = validate.integer("--requests", args.requests, lo=1)
    if args.rate is not None:
        kw["arrivals"] = Arrivals.poisson(
            validate.number("--rate", args.rate, lo=0.0, lo_open=True)
        )
    if args.users is not None:
        validate.integer("--users", args.users, lo=1)
        think = 0.0 if args.think is None else validate.number("--think", args.think, lo=0.0)
        kw["arrivals"] = Arrivals.closed(args.users, think)
    if args.at_once:
        kw["arrivals"] = Arrivals.at_once()
    if args.arrivals:
        times = load_arrival_times(args.arrivals)
        kw["arrivals"] = Arrivals.trace(times)
        kw.setdefault("count", len(times))
    if base.requests and not args.requests_file:
        for flag, name in (("--prompt", "prompt"), ("--output", "output"), ("--requests", "count")):
            if name in kw:
                raise ConfigError(flag, "the workload lists its requests and their lengths")
    acc = _acceptance(args)
    if acc is not None:
        kw["acceptance"] = acc
    fields: dict[str, Any] = {
        "count": None if base.requests else base.count,
        "prompt": base.prompt,
        "output": base.output,
        "arrivals": base.arrivals,
        "acceptance": base.acceptance,
        "requests": base.requests,
    }
    fields.update(kw)
    return Workload(**fields)


def _settings(args: argparse.Namespace, cfg: dict[str, Any]) -> ServingSettings:
    base = ServingSettings.from_dict(cfg.get("settings", {}), "config.settings")
    kw = {}
    for flag, name in (
        ("max_batch", "max_batch"),
        ("kv_budget", "kv_budget"),
        ("policy", "policy"),
        ("microbatch", "microbatch"),
        ("ttft_slo", "ttft_slo_s"),
        ("tpot_slo", "tpot_slo_s"),
    ):
        v = getattr(args, flag)
        if v is not None:
            kw[name] = v
    try:
        return replace(base, **kw)
    except ConfigError as err:
        flag = {"ttft_slo_s": "ttft-slo", "tpot_slo_s": "tpot-slo"}.get(err.field, err.field)
        raise ConfigError("--" + flag.replace("_", "-"), err.message) from None


def resolve(args: argparse.Namespace):
    cfg: dict[str, Any] = {}
    if args.config:
        doc = load_document(args.config, "--config")
        cfg = validate.mapping("config", doc if doc is not None else {}, CONFIG_KEYS)
    prof = _profile(args, cfg)
    schemes = _schemes(args, cfg, prof)
    workload = _workload(args, cfg)
    settings = _settings(args, cfg)
    seed = args.seed if args.seed is not None else cfg.get("seed", 0)
    validate.integer("--seed", seed, lo=0)
    return prof, schemes, workload, settings, seed


# ---- output -------------------------------------------------------------------------------------
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def table(recs: list[ServingRecord]) -> str:
    head = (
        f"{'scheme':<22}{'tok/s':>9}{'req/s':>7}{'TTFT p50':>10}{'p99':>8}{'TPOT p50':>10}"
        f"{'p99':>7}{'e2e p50':>9}{'queue':>8}{'batch':>7}{'goodput':>9}"
        f"{'×AR tok/s':>11}{'TPOT':>6}{'×PP-AR tok/s':>14}{'TPOT':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in recs:
        cells = ""
        for base, width in (("ar_same_load", 11), ("pp_ar_same_load", 14)):
            m = r.speedups.get(base, {})
            for key, w in (("throughput", width), ("tpot_p50", 6)):
                v = m.get(key)
                cells += f"{('-' if v is None else f'{v:.2f}'):>{w}}"
        lines.append(
            f"{r.label:<22}{r.throughput_tok_s:>9.1f}{r.requests_per_s:>7.2f}"
            f"{_ms(r.ttft.p50 if r.ttft else None):>10}{_ms(r.ttft.p99 if r.ttft else None):>8}"
            f"{_ms(r.tpot.p50 if r.tpot else None):>10}{_ms(r.tpot.p99 if r.tpot else None):>7}"
            f"{_ms(r.e2e.p50 if r.e2e else None):>9}{_ms(r.queue.p50 if r.queue else None):>8}"
            f"{r.mean_batch:>7.1f}"
            f"{('-' if r.goodput_rps is None else f'{r.goodput_rps:.2f}'):>9}" + cells
        )
    return "\n".join(lines)


def _as_flag(err: ConfigError, args: argparse.Namespace) -> ConfigError:
    """A library error about a field the user set through a flag or the config, renamed to
    what they typed."""
    if err.field == "kv_budget":
        where = "--kv-budget" if args.kv_budget is not None else "config.settings.kv_budget"
        return ConfigError(where, err.message)
    if err.field == "workload.acceptance":
        return ConfigError(
            "--alpha",
            f"an acceptance model {err.message} (give --alpha, --burstiness, --alphas or "
            "acceptance per request)",
        )
    return err


def run(args: argparse.Namespace) -> int:
    if args.per_request and not args.out:
        raise ConfigError("--per-request", "needs --out")
    if args.out:
        check_writable(args.out, "--out")  # before any work
    prof, schemes, workload, settings, seed = resolve(args)
    try:
        recs = compare_serving(
            prof, schemes, workload, settings, seed=seed, keep_requests=args.per_request
        )
    except ConfigError as err:
        raise _as_flag(err, args) from None
    out_text = dumps([r.to_dict() for r in recs]) if args.out else None
    if args.json:
        print(dumps([replace(r, profile=None).to_dict() for r in recs]), end="")
    else:
        prov = prof.provenance
        costs = "batched costs" if prof.batched is not None else "no batched costs (verify factor)"
        print(f"profile: {prof.n_layers} layers ({prov.source}; {costs})")
        print(
            f"workload: {workload.label()}; acceptance: {workload.acceptance.label() if workload.acceptance else '-'}"
        )
        kv = "unlimited" if settings.kv_budget is None else f"{settings.kv_budget} tokens"
        print(
            f"scheduler: batch ≤ {settings.max_batch}, KV {kv}, policy {settings.policy} | seed {seed}"
        )
        print(
            "times in ms; ×AR, ×PP-AR: tokens/s and p50 TPOT against AR on one device and PP-AR "
            "on the same devices at the same load (simulated)"
        )
        print(table(recs))
        notes = {n for r in recs for k, n in r.notes.items() if k == "extrapolated"}
        for n in sorted(notes):
            print(f"note: {n}")
    if out_text is not None:
        try:
            atomic_write_text(args.out, out_text)
        except OSError as err:  # the old file, if any, is untouched
            raise ConfigError("--out", f"cannot write {args.out}: {err.strerror}") from None
        if not args.json:
            print(f"wrote {args.out}")
    return 0
