"""``ppsd profile``: measure a HardwareProfile of a model on this machine and write it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppsd_real import prompts, runner
from ppsd_real.backends.distributed import StageFailure
from ppsd_real.backends.transport import TRANSPORTS
from ppsd_real.batched.profile import (
    BATCH_SIZES,
    CONTEXTS,
    FITS,
    STEP_TOKENS,
    Grid,
    profile_batched,
    with_batched,
)
from ppsd_real.device import add_device_args, resolve
from ppsd_real.drafters import DrafterSpec, heads_dir_head, load_ee_head
from ppsd_real.model_loading import ModelSpec, model_fingerprint
from ppsd_real.presets import DEFAULT_CPU_PRESET, PRESETS
from ppsd_real.profiler import profile
from ppsd_real.prompts import add_prompt_args
from ppsd_real.threads import check_threads, torch_threads
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig, decoding, validate
from ppsd_sim.records.io import check_writable, write_record
from ppsd_sim.records.sampling import SamplingSpec

DEFAULT_OUTPUT = "profile.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Measure a HardwareProfile (per-layer decode latency, verify factor, heads, embed, KV "
        "crop; with stage processes also hop, per-token tick and concurrency slowdown, all "
        "timed inside the stages) and write it as JSON."
    )
    a = parser.add_argument
    a(
        "--preset",
        default=None,
        help=f"random-weight model shape, one of {', '.join(PRESETS)} "
        f"(default: {DEFAULT_CPU_PRESET})",
    )
    a(
        "--model-dir",
        default=None,
        help="a local Hugging Face model directory (loaded with local_files_only) instead of "
        "a preset (default: none)",
    )
    a("--seed", type=int, default=0, help="random preset weights (default: 0)")
    a(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the full-model timings, at most this machine's cores "
        "(default: 1; stage processes always use one each)",
    )
    a(
        "--repeats",
        type=int,
        default=30,
        help="timed samples per latency, at least 5, after 3 warm-up calls (default: 30)",
    )
    a(
        "--temperature",
        type=float,
        default=None,
        help="also measure what choosing a token costs when sampling at this temperature "
        "(warp, draw, judge: what sampled what-ifs add; default: greedy, not measured)",
    )
    a("--top-k", type=int, default=None, help="with --temperature: top-k (default off)")
    a("--top-p", type=float, default=None, help="with --temperature: top-p (default 1.0)")
    a(
        "--no-hop",
        "--no-stages",
        dest="no_stages",
        action="store_true",
        help="skip the stage processes: full-model latencies only, no hop, tick or contention "
        "(default: measure them)",
    )
    a(
        "--transport",
        default="pipe",
        choices=tuple(TRANSPORTS),
        help="between stage processes: OS pipes or torch.distributed gloo (default: pipe)",
    )
    a(
        "--stages",
        type=int,
        default=2,
        help="stage processes k: stage 1 is layers [0, L/2), the rest split evenly (default: 2)",
    )
    a(
        "--output",
        default=None,
        help=f"where to write the profile JSON (default: ./{DEFAULT_OUTPUT}, which is never "
        "replaced: an existing one needs --output named explicitly)",
    )
    a(
        "--context",
        type=int,
        default=None,
        help="cached tokens the latencies are measured at (default: the --prompt's length, "
        "else 64)",
    )
    a(
        "--heads",
        default=None,
        help="a heads folder from `ppsd heads train` for this model: checked, and its head at "
        "L/2 timed as the early-exit head (default: the LM head's timing)",
    )
    a(
        "--batched",
        action="store_true",
        help="also measure the step costs under load (the profile's `batched` field, for "
        "`ppsd serving` and `ppsd plan --batch`): full-model and early-exit steps of B "
        "sequences at each --batch-sizes x --batch-contexts x --batch-step-tokens, fitted "
        "per layer and head (--batch-fit); the batch-1 fields are measured first and "
        "unchanged (default: off)",
    )
    a(
        "--batch-fit",
        default=None,
        choices=FITS,
        help="--batched: grid (a row per step size, linear in KV tokens, interpolated between "
        "sizes) or linear (one a + b*tokens + c*kv) (default: grid)",
    )
    a(
        "--batch-sizes",
        default=None,
        help="--batched: batch sizes, comma-separated, increasing (default: "
        f"{','.join(map(str, BATCH_SIZES))})",
    )
    a(
        "--batch-contexts",
        default=None,
        help="--batched: cached tokens per sequence, comma-separated, increasing (default: "
        f"{','.join(map(str, CONTEXTS))})",
    )
    a(
        "--batch-step-tokens",
        default=None,
        help="--batched: new tokens per sequence per step, comma-separated, increasing: 1 is "
        "a decode step, gamma+1 an EESD verification (default: "
        f"{','.join(map(str, STEP_TOKENS))})",
    )
    add_prompt_args(parser)
    add_device_args(parser)


def batched_grid(args: argparse.Namespace) -> Grid | None:
    """The --batched grid, checked before any measurement (None without --batched)."""
    flags = {
        "--batch-sizes": args.batch_sizes,
        "--batch-contexts": args.batch_contexts,
        "--batch-step-tokens": args.batch_step_tokens,
        "--batch-fit": args.batch_fit,
    }
    if not args.batched:
        for flag, given in flags.items():
            if given is not None:
                raise ConfigError(flag, "needs --batched")
        return None
    defaults = Grid()
    return Grid(
        defaults.batch_sizes if args.batch_sizes is None else args.batch_sizes,
        defaults.contexts if args.batch_contexts is None else args.batch_contexts,
        defaults.step_tokens if args.batch_step_tokens is None else args.batch_step_tokens,
    )


def output_path(given: str | None) -> Path:
    """The profile's path, refused before any measurement if it cannot be written; the
    default never silently replaces an earlier profile."""
    if given is not None:
        return check_writable(given, "--output")
    p = check_writable(DEFAULT_OUTPUT, "--output")
    if p.exists():
        raise ConfigError(
            "--output",
            f"not given, and the default ./{DEFAULT_OUTPUT} already exists; name the output "
            f"(--output {DEFAULT_OUTPUT} replaces it)",
        )
    return p


def run(args: argparse.Namespace) -> int:
    check_threads(args.threads, "--threads")
    validate.integer("--repeats", args.repeats, lo=5, hi=100_000)
    if args.preset and args.model_dir:
        raise ConfigError("model", "give --preset or --model-dir, not both")
    if args.show_text:
        raise ConfigError("--show-text", "ppsd profile decodes no continuation to show")
    if args.context is not None:
        validate.integer("--context", args.context, lo=1, hi=1_000_000)
    given = prompts.from_args(args, args.model_dir, 1)
    if given is not None and args.context is not None:
        raise ConfigError("--context", "give --context or --prompt/--prompt-file, not both")
    if given is not None and len(given) != 1:
        raise ConfigError(
            "--prompt-file", f"holds {len(given)} prompts; ppsd profile measures at one context"
        )
    context = len(given[0].ids) if given is not None else (args.context or 64)
    d = decoding.from_args(args)
    sampling = SamplingSpec(d.temperature, d.top_k, d.top_p)
    grid = batched_grid(args)
    out = output_path(args.output)
    device, dtype = resolve(args.device, args.dtype)
    spec = ModelSpec(
        preset=None if args.model_dir else (args.preset or DEFAULT_CPU_PRESET),
        path=args.model_dir,
        seed=args.seed,
        dtype=dtype,
        device=device,
    )
    with torch_threads(args.threads):
        m = runner.load(spec)
        e = m.n_layers // 2
        ee, path = None, None
        if args.heads is not None:
            path = heads_dir_head(args.heads, e, model_fingerprint(spec), "--heads")
            ee = load_ee_head(DrafterSpec(head_path=path), m.driver.parts.lm_head)
        if args.no_stages:
            prof = profile(
                m, args.repeats, context, threads=args.threads, ee_head=ee, sampling=sampling
            )
        else:
            scheme = SchemeConfig.ppsd_split(m.n_layers, args.stages, e, stages_field="--stages")
            try:
                drafter = DrafterSpec(head_path=path) if args.heads is not None else DrafterSpec()
                with runner.open_distributed(
                    spec, scheme, m.n_layers, drafter, transport=args.transport
                ) as be:
                    prof = profile(
                        m,
                        args.repeats,
                        context,
                        backend=be,
                        threads=args.threads,
                        ee_head=ee,
                        sampling=sampling,
                    )
            except StageFailure as err:
                print(f"ppsd: error: {err}", file=sys.stderr)
                return 1
        if grid is not None:  # after the batch-1 profile, which it leaves as measured
            costs = profile_batched(
                m, grid, args.repeats, exit_layer=e, ee_head=ee, form=args.batch_fit or "grid"
            )
            prof = with_batched(prof, costs)
    write_record(out, prof)
    print(
        f"wrote {out} ({prof.provenance.latency_context}): {m.n_layers} layers, layer "
        f"median {prof.layer_decode[0].median * 1e3:.3f} ms, head "
        f"{prof.final_head.median * 1e3:.3f} ms, hop {prof.hop.median * 1e6:.0f} µs, tick "
        f"{prof.tick.median * 1e6:.0f} µs, concurrency slowdown {prof.concurrency_slowdown:.3f}"
    )
    if prof.batched is not None:
        print(batched_summary(prof))
    if prof.sampling is not None:
        s = prof.sampling
        print(
            f"sampling at {s.settings.label()}: warp {s.warp.median * 1e6:.0f} µs, draw "
            f"{s.draw.median * 1e6:.0f} µs, judge {s.judge.median * 1e6:.0f} µs per vector"
        )
    return 0


def batched_summary(prof) -> str:
    """One line on the batched costs: the grid and how well the fit reproduces its steps."""
    import json

    notes = json.loads(prof.batched.notes or "{}")
    cells = notes.get("cells", [])
    full = notes.get("fit_rel_error_full_step", {})
    ee = notes.get("fit_rel_error_ee_step", {})
    return (
        f"batched costs: {len(cells)} cells (batch x context x step tokens), fitted as a "
        + ("grid" if prof.batched.layers[0].is_grid else "linear a + b*tokens + c*kv")
        + f"; fit vs measured full step: median |error| "
        f"{full.get('median_abs', 0):.1%}, max {full.get('max_abs', 0):.1%}; early-exit step: "
        f"median {ee.get('median_abs', 0):.1%}, max {ee.get('max_abs', 0):.1%}"
    )
