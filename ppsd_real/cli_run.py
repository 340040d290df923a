"""``ppsd run``: AR, EESD and PPSD on a real model, side by side, with named baselines."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from ppsd_real import prompts, runner
from ppsd_real.backends import BACKENDS
from ppsd_real.backends.distributed import StageFailure
from ppsd_real.backends.transport import TRANSPORTS
from ppsd_real.bench import Bench, Measurement, NotLossless, Variant, measure, timed
from ppsd_real.decoders import ARDecoder, DecodeResult
from ppsd_real.device import add_device_args, resolve
from ppsd_real.drafters import DRAFTERS, DrafterSpec, head_from_flags
from ppsd_real.measure import observed, to_record
from ppsd_real.model_loading import SHIPPED_MODEL, ModelSpec
from ppsd_real.presets import DEFAULT_CPU_PRESET, PRESETS
from ppsd_real.prompts import add_prompt_args
from ppsd_real.sampling import SamplingSpec
from ppsd_real.threads import all_cores, torch_threads
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import RunRecord, SchemeConfig, validate
from ppsd_sim.records.io import check_writable, check_writable_dir, dumps, write_all

#: The project's own trained model (ppsd_real/lm), the default when it is shipped.
ORACLE_ALPHA = 0.8  # --alpha's default for the oracle drafter
MAX_TOKENS = 1_000_000  # no model here has positions past this; the model's own limit is checked
MAX_REPEATS = 1000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Measure AR, EESD and PPSD on a real model, interleaved repeat after repeat (one "
        "warm-up repeat excluded) beside AR with one thread, AR with all cores and "
        "model.generate; every output is checked token for token against AR. Prints a table "
        "of medians; writes RunRecords only where --output / --records say."
    )
    a = parser.add_argument
    a(
        "--preset",
        default=None,
        help=f"random-weight model shape, one of {', '.join(PRESETS)} (default: the shipped "
        f"trained model {SHIPPED_MODEL.name} if present, else {DEFAULT_CPU_PRESET})",
    )
    a(
        "--model-dir",
        default=None,
        help="a local Hugging Face model directory (loaded with local_files_only) instead of "
        "a preset (default: none)",
    )
    a(
        "--scheme",
        default="all",
        choices=("all", "ar", "eesd", "ppsd"),
        help="what to measure beside the AR baselines (default: all = EESD and PPSD)",
    )
    a("--exit", type=int, default=None, help="exit layer E: layers [0, E) draft (default: L/2)")
    a("--gamma", type=int, default=4, help="EESD: tokens drafted per round (default: 4)")
    a(
        "--stages",
        type=int,
        default=None,
        help="PPSD stages k: stage 1 is layers [0, E), the rest split evenly (default: 2); "
        "with --batch: also measure batched PP-AR on k stage processes (layers split evenly), "
        "the baseline on k devices (default: not measured)",
    )
    a(
        "--alpha",
        type=float,
        default=None,
        help=f"oracle drafter only: probability a draft is right (default: {ORACLE_ALPHA}); "
        "refused with the early-exit drafter, whose acceptance is the model's own",
    )
    a(
        "--drafter",
        default=None,
        choices=DRAFTERS,
        help="early-exit: the EE head's argmax; oracle: AR's token with probability --alpha "
        "(same compute) (default: early-exit for a model directory, oracle for a preset)",
    )
    a(
        "--shared-head",
        action="store_true",
        help="early-exit: draft with the model's own LM head even when a trained EE head "
        "(ee_head_exit<E>.safetensors) is shipped beside the model (default: the trained one)",
    )
    a(
        "--heads",
        default=None,
        help="early-exit: a heads folder from `ppsd heads train` (its manifest must name this "
        "model and hold the exit's head) (default: a head shipped beside the model, if any)",
    )
    a(
        "--backend",
        default="distributed",
        choices=BACKENDS,
        help="PPSD: distributed = one process per stage (the real pipeline); sequential = all "
        "stages stepped in this process, no overlap (the correctness reference) "
        "(default: distributed)",
    )
    a(
        "--transport",
        default="pipe",
        choices=tuple(TRANSPORTS),
        help="distributed backend: OS pipes (lighter on CPU) or torch.distributed gloo "
        "(default: pipe)",
    )
    a(
        "--tokens",
        type=int,
        default=128,
        help=f"new tokens per run, 1..{MAX_TOKENS}; prompt + tokens must fit the model's "
        "max_position_embeddings (default: 128)",
    )
    a(
        "--seed",
        type=int,
        default=0,
        help="random preset weights, oracle draws and sampling draws (an integer in "
        "[0, 2**63 - 1]; the same seed gives the same tokens on every backend) (default: 0)",
    )
    a(
        "--temperature",
        type=float,
        default=0.0,
        help="0 = greedy (every output checked token for token against AR); > 0 samples "
        "every scheme, AR included, from softmax(logits / T), EESD and PPSD with exact "
        "speculative sampling (output distributed as AR sampling's) (default: 0)",
    )
    a(
        "--top-k",
        type=int,
        default=None,
        help="sampling: keep the k most likely tokens (an integer >= 1; refused at "
        "--temperature 0, where it would have no effect) (default: off)",
    )
    a(
        "--top-p",
        type=float,
        default=1.0,
        help="sampling: keep the smallest set of most likely tokens whose mass reaches p, in "
        "(0, 1] (refused below 1 at --temperature 0) (default: 1 = off)",
    )
    a(
        "--repeats",
        type=int,
        default=3,
        help=f"timed repeats per scheme, 1..{MAX_REPEATS}, after one warm-up repeat; the table "
        "shows medians (default: 3)",
    )
    a(
        "--output",
        default=None,
        help="write one RunRecord JSON here: PPSD's, or the single --scheme's (AR's for "
        "--scheme ar) (default: none)",
    )
    a(
        "--records",
        default=None,
        help="a folder: write every measured scheme's RunRecord there (ar.json, eesd.json, "
        "ppsd.json) (default: none)",
    )
    load = parser.add_argument_group(
        "load (batch > 1)",
        "--batch N serves N sequences at once on the real layers: batched AR (the baseline) and "
        "batched EESD with continuous batching, each request's tokens checked against its "
        "batch-1 AR tokens (ppsd_real.batched), and with --stages k batched PP-AR and batched "
        "PPSD on k stage processes; greedy",
    )
    load.add_argument(
        "--batch",
        type=int,
        default=None,
        help="sequences decoded at once, >= 1 (default: none = the batch-1 run)",
    )
    load.add_argument(
        "--requests",
        type=int,
        default=None,
        help="--batch: requests served (default: --batch; more: a finished sequence's place is "
        "taken by the next) (default: --batch)",
    )
    load.add_argument(
        "--closed-loop",
        action="store_true",
        help="--batch: N users, each sending its next request when its last one finishes "
        "(default: all requests waiting at t = 0)",
    )
    add_prompt_args(parser)
    add_device_args(parser)


#: flags of the batch-1 run that a batched run (--batch) does not take, with their defaults
_BATCH_1_ONLY = {
    "scheme": ("--scheme", "all"),
    "backend": ("--backend", "distributed"),
    "transport": ("--transport", "pipe"),
    "temperature": ("--temperature", 0.0),
    "output": ("--output", None),
    "records": ("--records", None),
}


def _run_batched(args: argparse.Namespace) -> int:
    """``--batch N``: the batched runner, after refusing what it does not take."""
    from ppsd_real.batched import cli as batched

    for dest, (flag, default) in _BATCH_1_ONLY.items():
        if getattr(args, dest) != default:
            raise ConfigError(
                flag, "is not taken with --batch (batched AR, EESD and PP-AR, greedy)"
            )
    args.no_reuse, args.threads = False, 1
    return batched.run(args)


def _check_flags(args: argparse.Namespace) -> SamplingSpec:
    """Everything that can be refused before a model is loaded (one line each, exit 2);
    returns the decoding settings."""
    spec = SamplingSpec(args.temperature, args.top_k, args.top_p, args.seed)
    if not spec.greedy and args.drafter == "oracle":
        raise ConfigError(
            "--drafter",
            "oracle is greedy only (it replays AR's argmax at a set rate); at --temperature "
            "> 0 the early-exit head drafts",
        )
    validate.integer("--tokens", args.tokens, lo=1, hi=MAX_TOKENS)
    validate.integer("--repeats", args.repeats, lo=1, hi=MAX_REPEATS)
    validate.integer("--gamma", args.gamma, lo=1, hi=4096)
    if args.preset and args.model_dir:
        raise ConfigError("model", "give --preset or --model-dir, not both")
    if args.output is not None:
        check_writable(args.output, "--output")
    if args.records is not None:
        check_writable_dir(args.records, "--records")
    if args.heads is not None and args.shared_head:
        raise ConfigError("--heads", "drafts with trained heads; --shared-head with the LM head")
    return spec


def _check_length(model: torch.nn.Module, prompt: list[int], tokens: int) -> None:
    """Refused, not warned: past its position limit a model's output is not the one it was
    built for (trained RoPE range), so a speed measured there describes nothing real."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and len(prompt) + tokens > limit:
        raise ConfigError(
            "--tokens",
            f"prompt ({len(prompt)} tokens) + --tokens {tokens} exceeds the model's "
            f"max_position_embeddings = {limit}: at most {max(0, limit - len(prompt))}",
        )


def run(args: argparse.Namespace) -> int:
    if args.batch is not None:
        return _run_batched(args)
    for flag, given in (("--requests", args.requests), ("--closed-loop", args.closed_loop or None)):
        if given is not None:
            raise ConfigError(flag, "applies to batched runs: give --batch N")
    sampling = _check_flags(args)
    try:
        with torch_threads(1):
            return _run(args, sampling)
    except StageFailure as err:
        print(f"ppsd: error: {err}", file=sys.stderr)
        return 1
    except NotLossless as err:
        print(f"ppsd: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, sampling: SamplingSpec) -> int:
    model_dir = args.model_dir
    if model_dir is None and args.preset is None and SHIPPED_MODEL.is_dir():
        model_dir = str(SHIPPED_MODEL)
    device, dtype = resolve(args.device, args.dtype)
    kind = args.drafter or ("early-exit" if model_dir or not sampling.greedy else "oracle")
    if kind != "oracle" and args.alpha is not None:
        raise ConfigError(
            "--alpha",
            f"only the oracle drafter takes a set acceptance; this run drafts with the "
            f"{kind} head, whose acceptance is measured (use --drafter oracle to set it)",
        )
    alpha = (ORACLE_ALPHA if args.alpha is None else args.alpha) if kind == "oracle" else None
    if args.heads is not None and kind == "oracle":
        raise ConfigError(
            "--heads",
            "the oracle drafter uses no head (a model directory drafts "
            "with its early-exit head by default)",
        )
    given = prompts.from_args(args, model_dir, args.tokens)
    if given is not None and len(given) != 1:
        raise ConfigError(
            "--prompt-file",
            f"holds {len(given)} prompts; ppsd run times one (ppsd accept measures many)",
        )
    spec = ModelSpec(
        preset=None if model_dir else (args.preset or DEFAULT_CPU_PRESET),
        path=model_dir,
        seed=args.seed,
        dtype=dtype,
        device=device,
    )
    m = runner.load(spec)
    n_layers = m.n_layers
    e = args.exit if args.exit is not None else n_layers // 2
    if not 1 <= e < n_layers:
        raise ConfigError("--exit", f"must satisfy 1 <= E < L = {n_layers}, got {e}")
    head = head_from_flags(args, kind, e, model_dir, spec)
    drafter = DrafterSpec(kind, alpha, args.seed, head)
    schemes = {
        "ar": SchemeConfig.ar(),
        "eesd": SchemeConfig.eesd(e, args.gamma),
        "ppsd": SchemeConfig.ppsd_split(
            n_layers, args.stages or 2, e, stages_field="--stages", exit_field="--exit"
        ),
    }
    wanted = ["eesd", "ppsd"] if args.scheme == "all" else [args.scheme]
    if given is not None:
        prompt = list(given[0].ids)
    else:
        prompt = prompts.default_prompt(model_dir, m.vocab, args.seed)
    _check_length(m.model, prompt, args.tokens)
    n, cores = args.tokens, all_cores()
    # greedy: the AR output every speculative run must equal; sampled: none (each scheme's
    # output is exact in distribution, not token-equal to AR's; tests/test_sampling_exact.py)
    ar_out = ARDecoder(m.driver, sampling).decode(prompt, n).tokens
    ref = ar_out if sampling.greedy else None
    decoding = (
        {"do_sample": False}
        if sampling.greedy
        else {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_k": sampling.top_k or 0,  # 0: off (the model's generation config may set 50)
            "top_p": sampling.top_p,
        }
    )

    def ar_all_cores(rep: int) -> DecodeResult:
        with torch_threads(cores):
            return ARDecoder(m.driver, sampling).decode(prompt, n)

    def generate(rep: int) -> DecodeResult:
        ids = torch.tensor([prompt], device=spec.device)

        def call() -> torch.Tensor:
            out = m.model.generate(ids, max_new_tokens=n, min_new_tokens=n, **decoding)
            m.driver.sync()
            return out

        return timed(call, lambda out: out[0, len(prompt) :].tolist())

    with Bench() as bench:
        variants = []
        for name in wanted:
            if name == "ar":
                continue
            if name == "ppsd":
                be = bench.backend(
                    "ppsd",
                    lambda: runner.open_backend(
                        args.backend, m, schemes["ppsd"], drafter, args.transport
                    ),
                )
                variants.append(
                    Variant("ppsd", lambda rep, be=be: be.run(prompt, n, drafter, ref, sampling))
                )
            else:
                variants.append(
                    Variant(
                        name,
                        lambda rep: runner.run_local(
                            m, schemes["eesd"], drafter, prompt, n, ref, sampling
                        ),
                    )
                )
        variants += [
            Variant("ar_all_cores", ar_all_cores, lossless=False),
            Variant("generate", generate, lossless=False),
        ]
        baseline = Variant("ar", lambda rep: ARDecoder(m.driver, sampling).decode(prompt, n))
        got = measure(variants, baseline, ref, repeats=args.repeats, on_run=_progress(args))
    got.load = bench.load
    labels = {
        "ar": "AR (1 thread)",
        "eesd": schemes["eesd"].label(),
        "ppsd": schemes["ppsd"].label()
        + f" [{args.backend}"
        + (f", {args.transport}]" if args.backend == "distributed" else "]"),
        "ar_all_cores": f"AR ({cores} threads: all cores)",
        "generate": "model.generate (1 thread)",
    }
    rows = ["ar", *[w for w in wanted if w != "ar"], "ar_all_cores", "generate"]
    print(
        f"model {spec.name}, L={n_layers}, E={e}, drafter {drafter.label()}, "
        f"decoding {sampling.label()}, {n} tokens, "
        f"median of {args.repeats} repeats (warm-up excluded), speedups paired by repeat"
    )
    _table(got, rows, labels, n, cores)
    if not sampling.greedy:
        print(
            f"sampled ({sampling.label()}): every scheme, AR included, samples; EESD and PPSD "
            "by exact speculative sampling, so their output is distributed as AR's (not "
            "token-equal to it); expected = mean Σ min(p, q) over the judged drafts"
        )
    if args.show_text:
        tok = prompts.load_tokenizer(model_dir, "--show-text")
        source = given[0].source if given is not None else "the default prompt"
        print(
            f"--- {source}: {len(prompt)} prompt tokens, continuation (AR"
            + (", checked equal):" if sampling.greedy else f", sampled {sampling.label()}):")
        )
        print(prompts.decode(tok, ar_out))
    records = {
        name: _record(got, name, schemes[name], args, spec, alpha, cores, ar_out, sampling)
        for name in ["ar", *wanted]
        if name in got.series
    }
    outputs: dict[str, str] = {}
    if args.records:
        for name, rec in records.items():
            outputs[str(Path(args.records) / f"{name}.json")] = dumps(rec)
    if args.output:
        single = "ppsd" if args.scheme == "all" else args.scheme
        outputs[args.output] = dumps(records[single])
    for path in write_all(outputs):
        print(f"wrote {path}")
    return 0


def _progress(args: argparse.Namespace):
    from tqdm import tqdm

    per_repeat = (0 if args.scheme == "ar" else 2 if args.scheme == "all" else 1) + 2
    bar = tqdm(total=(args.repeats + 1) * per_repeat, desc="ppsd run", leave=False)

    def step() -> None:
        bar.update(1)
        if bar.n >= bar.total:
            bar.close()

    return step


def _table(got: Measurement, rows: list[str], labels: dict[str, str], n: int, cores: int) -> None:
    over = [
        ("ar", "vs AR 1 thread"),
        ("ar_all_cores", f"vs AR {cores} threads"),
        ("generate", "vs generate"),
    ]
    print(
        f"{'scheme':40} {'tok/s':>8} {'accept':>8} {'expected':>8}"
        + "".join(f" {h:>15}" for _, h in over)
    )
    for name in rows:
        r = got.series[name].results[0] if got.series[name].results else None
        obs = observed(r) if r is not None else None
        acc = f"{obs.rate:.2f}" if obs is not None else "-"
        exp = f"{obs.expected:.2f}" if obs is not None and obs.expected is not None else "-"
        cols = "".join(f" {got.speedup(name, o):14.2f}x" for o, _ in over)
        print(f"{labels[name]:40} {n / got.median_s(name):8.1f} {acc:>8} {exp:>8}{cols}")
    for name in rows:
        at = got.series[name].differs_at
        if at is not None:
            print(f"note: {labels[name]} differed from AR (1 thread) from token {at} (float sums)")
    load = got.load
    if load is None:
        print("machine load: unknown (no /proc/stat); speedups vs all cores assume a quiet machine")
    elif load.busy:
        print(
            f"WARNING: the machine was busy while measuring ({load.describe()}): the speedups, "
            f"above all vs AR {cores} threads, are not reliable; measure on a quiet machine"
        )
    else:
        print(f"machine load: quiet ({load.describe()})")


def _record(
    got: Measurement,
    name: str,
    scheme: SchemeConfig,
    args: argparse.Namespace,
    spec: ModelSpec,
    alpha: float | None,
    cores: int,
    ar_out: list[int],
    sampling: SamplingSpec,
) -> RunRecord:
    """A measured RunRecord: the median time, the first timed repeat's observations, the
    speedups over each baseline, how they were taken, and how busy the machine was."""
    s = got.series[name]
    first = s.results[0] if s.results else DecodeResult(tokens=list(ar_out), time_s=0.0)
    res = dataclasses.replace(first, time_s=s.median_s)
    distributed = name == "ppsd" and args.backend == "distributed"
    load = got.load
    return to_record(
        res,
        scheme,
        "real/distributed" if distributed else "real/sequential",
        spec,
        1,
        {
            "ar_1thread": got.speedup(name, "ar"),
            "ar_all_cores": got.speedup(name, "ar_all_cores"),
            "generate": got.speedup(name, "generate"),
        },
        "ar_1thread",
        alpha if name != "ar" else None,
        args.seed,
        {
            "repeats": args.repeats,
            "speedups": "median over timed repeats of the baseline's time / this scheme's "
            "time in the same repeat (AR 1 thread: measured just before and after)",
            "ar_all_cores_threads": cores,
            "machine_load": None
            if load is None
            else {
                "foreign": round(load.foreign, 4),
                "steal": round(load.steal, 4),
                "busy": load.busy,
            },
        },
        sampling,
    )
