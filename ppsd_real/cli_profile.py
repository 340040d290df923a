"""``ppsd profile``: measure a HardwareProfile of a model on this machine and write it."""

from __future__ import annotations

import argparse

import torch

from ppsd_real import runner
from ppsd_real.device import add_device_args, resolve
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_real.presets import DEFAULT_CPU_PRESET, PRESETS
from ppsd_real.profiler import profile
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig
from ppsd_sim.records.io import write_record


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--preset",
        default=None,
        help=f"model shape ({', '.join(PRESETS)}); default {DEFAULT_CPU_PRESET}",
    )
    a("--model-dir", default=None)
    a("--seed", type=int, default=0)
    a("--threads", type=int, default=1)
    a("--repeats", type=int, default=30)
    a(
        "--no-hop",
        "--no-stages",
        dest="no_stages",
        action="store_true",
        help="skip the stage processes: full-model latencies only, no hop, tick or contention",
    )
    a("--transport", default="pipe", choices=("pipe", "gloo"), help="between stage processes")
    a("--stages", type=int, default=2, help="stage processes (even split, exit after stage 1)")
    a("--output", default="profile.json")
    add_device_args(parser)


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise ConfigError("threads", f"must be >= 1, got {args.threads}")
    if args.repeats < 5:
        raise ConfigError("repeats", f"must be >= 5, got {args.repeats}")
    torch.set_num_threads(args.threads)
    device, dtype = resolve(args.device, args.dtype)
    spec = ModelSpec(
        preset=None if args.model_dir else (args.preset or DEFAULT_CPU_PRESET),
        path=args.model_dir,
        seed=args.seed,
        dtype=dtype,
        device=device,
    )
    m = runner.load(spec)
    if args.no_stages:
        prof = profile(m, args.repeats, threads=args.threads)
    else:
        e = m.n_layers // 2
        scheme = SchemeConfig.ppsd_split(m.n_layers, args.stages, e, stages_field="--stages")
        with runner.open_distributed(
            spec, scheme, m.n_layers, DrafterSpec(), transport=args.transport
        ) as be:
            prof = profile(m, args.repeats, backend=be, threads=args.threads)
    write_record(args.output, prof)
    print(
        f"wrote {args.output} ({prof.provenance.latency_context}): {m.n_layers} layers, layer "
        f"median {prof.layer_decode[0].median * 1e3:.3f} ms, head "
        f"{prof.final_head.median * 1e3:.3f} ms, hop {prof.hop.median * 1e6:.0f} µs, tick "
        f"{prof.tick.median * 1e6:.0f} µs, concurrency slowdown {prof.concurrency_slowdown:.3f}"
    )
    return 0
