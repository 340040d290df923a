"""``python -m ppsd_real.batched.cli --batch N``: batched EESD (and, with ``--stages k``,
batched PP-AR and batched PPSD on k processes) against batched AR on a real model.

Prints throughput (tokens/s), TPOT and TTFT p50 and the speedups over batched AR at the same
batch (``batched.run``). ``configure(parser)`` / ``run(args)`` follow the
project's subcommand shape; ``run_loaded`` is the part after a model is loaded, for
``ppsd run --batch N``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ppsd_real import prompts as user_prompts
from ppsd_real import runner
from ppsd_real.batched.run import default_prompts, measure_batched
from ppsd_real.bench import NotLossless
from ppsd_real.cli_run import ORACLE_ALPHA
from ppsd_real.device import add_device_args, resolve
from ppsd_real.drafters import DRAFTERS, DrafterSpec, head_from_flags
from ppsd_real.model_loading import SHIPPED_MODEL, ModelSpec
from ppsd_real.presets import DEFAULT_CPU_PRESET, PRESETS
from ppsd_real.prompts import add_prompt_args
from ppsd_real.threads import torch_threads
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve several requests at once on a real model: batched AR (the baseline) and "
        "batched EESD, continuous batching at --batch, interleaved repeat after repeat (one "
        "warm-up excluded); every request's tokens checked against its batch-1 AR tokens."
    )
    a = parser.add_argument
    a("--batch", type=int, default=4, help="sequences decoded at once, >= 1 (default: 4)")
    a(
        "--requests",
        type=int,
        default=None,
        help="requests served (default: --batch; more than --batch: continuous batching, a "
        "finished sequence's place taken by the next); refused with explicit prompts, whose "
        "count it is",
    )
    a(
        "--closed-loop",
        action="store_true",
        help="--batch users, each sending its next request when its last one finishes "
        "(arrival = that moment) (default: all requests waiting at t = 0)",
    )
    a(
        "--preset",
        default=None,
        help=f"random-weight model shape, one of {', '.join(PRESETS)} (default: the shipped "
        f"trained model {SHIPPED_MODEL.name} if present, else {DEFAULT_CPU_PRESET})",
    )
    a("--model-dir", default=None, help="a local Hugging Face model directory (default: none)")
    a("--exit", type=int, default=None, help="exit layer E (default: L/2)")
    a("--gamma", type=int, default=4, help="EESD drafts per round (default: 4)")
    a("--no-reuse", action="store_true", help="verify through all layers (default: reuse)")
    a(
        "--drafter",
        default=None,
        choices=DRAFTERS,
        help="early-exit: the EE head's argmax; oracle: each request's AR token with "
        "probability --alpha (default: early-exit for a model directory, oracle for a preset)",
    )
    a("--alpha", type=float, default=None, help=f"oracle only (default: {ORACLE_ALPHA})")
    a("--shared-head", action="store_true", help="draft with the LM head, not a shipped EE head")
    a("--heads", default=None, help="a heads folder from `ppsd heads train` (default: none)")
    a(
        "--stages",
        type=int,
        default=None,
        help="also measure batched PP-AR (layers split evenly; k micro-batches: what k devices "
        "give without speculation) and batched PPSD (drafting at --exit, the same drafter as "
        "EESD) on k stage processes (default: not measured)",
    )
    a("--tokens", type=int, default=32, help="new tokens per request, >= 1 (default: 32)")
    a("--seed", type=int, default=0, help="preset weights, default prompts, oracle draws")
    a("--repeats", type=int, default=3, help="timed repeats after one warm-up (default: 3)")
    a("--threads", type=int, default=1, help="torch threads (default: 1)")
    add_prompt_args(parser)
    add_device_args(parser)


def check_flags(args: argparse.Namespace) -> None:
    """What can be refused before a model loads (one line naming the flag, exit 2)."""
    validate.integer("--batch", args.batch, lo=1, hi=100_000)
    if args.requests is not None:
        validate.integer("--requests", args.requests, lo=1, hi=1_000_000)
    validate.integer("--tokens", args.tokens, lo=1, hi=1_000_000)
    validate.integer("--repeats", args.repeats, lo=1, hi=1000)
    validate.integer("--gamma", args.gamma, lo=1, hi=4096)
    if args.stages is not None:
        validate.integer("--stages", args.stages, lo=2, hi=64)
    from ppsd_real.threads import check_threads

    check_threads(args.threads, "--threads")
    if args.preset and args.model_dir:
        raise ConfigError("model", "give --preset or --model-dir, not both")
    if args.heads is not None and args.shared_head:
        raise ConfigError("--heads", "drafts with trained heads; --shared-head with the LM head")
    if args.show_text:
        raise ConfigError("--show-text", "is not shown for batched runs")


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    model_dir = args.model_dir
    if model_dir is None and args.preset is None and SHIPPED_MODEL.is_dir():
        model_dir = str(SHIPPED_MODEL)
    given = user_prompts.from_args(args, model_dir, args.tokens)
    if given is not None:
        flag = "--prompt-file" if args.prompt_file is not None else "--prompt"
        if args.requests is not None:
            raise ConfigError(
                "--requests", f"the requests are the {len(given)} prompt(s) of {flag}"
            )
        if args.batch > len(given):
            raise ConfigError(
                "--batch", f"{args.batch} exceeds the {len(given)} prompt(s) given by {flag}"
            )
    device, dtype = resolve(args.device, args.dtype)
    spec = ModelSpec(
        preset=None if model_dir else (args.preset or DEFAULT_CPU_PRESET),
        path=model_dir,
        seed=args.seed,
        dtype=dtype,
        device=device,
    )
    with torch_threads(args.threads):
        m = runner.load(spec)
        if given is not None:
            prompts = [list(p.ids) for p in given]
        else:
            prompts = default_prompts(m, model_dir, args.requests or args.batch, args.seed)
        try:
            return run_loaded(args, m, model_dir, prompts)
        except NotLossless as err:
            print(f"ppsd: error: {err}", file=sys.stderr)
            return 1


def drafter_for(args: argparse.Namespace, m: runner.Loaded, model_dir: str | None, e: int):
    """The drafter the flags name (as ``ppsd run`` chooses it)."""
    kind = args.drafter or ("early-exit" if model_dir else "oracle")
    if kind != "oracle" and args.alpha is not None:
        raise ConfigError("--alpha", "only the oracle drafter takes a set acceptance")
    if kind == "oracle" and args.heads is not None:
        raise ConfigError("--heads", "the oracle drafter uses no head")
    alpha = (ORACLE_ALPHA if args.alpha is None else args.alpha) if kind == "oracle" else None
    head = head_from_flags(args, kind, e, model_dir, m.spec)
    return DrafterSpec(kind, alpha, args.seed, head)


def run_loaded(
    args: argparse.Namespace, m: runner.Loaded, model_dir: str | None, prompts: list[list[int]]
) -> int:
    """Measure and print, the model loaded and the prompts chosen (``ppsd run --batch``)."""
    e = args.exit if args.exit is not None else m.n_layers // 2
    if not 1 <= e < m.n_layers:
        raise ConfigError("--exit", f"must satisfy 1 <= E < L = {m.n_layers}, got {e}")
    if args.stages is not None and args.stages > m.n_layers:
        raise ConfigError(
            "--stages", f"PP-AR and PPSD need at most one stage per layer (L = {m.n_layers})"
        )
    drafter = drafter_for(args, m, model_dir, e)
    limit = user_prompts.context_limit(m.model.config)
    longest = max(len(p) for p in prompts)
    if limit is not None and longest + args.tokens + args.gamma > limit:
        raise ConfigError(
            "--tokens",
            f"the longest prompt ({longest}) + --tokens {args.tokens} + --gamma {args.gamma} "
            f"exceeds the model's {limit} positions",
        )
    report = measure_batched(
        m,
        prompts,
        args.tokens,
        args.batch,
        e,
        args.gamma,
        drafter,
        args.repeats,
        "closed" if args.closed_loop else "batch",
        not args.no_reuse,
        pp_stages=args.stages,
    )
    print(
        f"model {m.spec.name}, L={m.n_layers}, E={e}, drafter {drafter.label()}, "
        f"{torch.get_num_threads()} thread(s), {m.spec.device}"
    )
    for line in report.lines():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ppsd_real.batched.cli")
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConfigError as err:
        print(f"ppsd: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
