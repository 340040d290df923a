"""``ppsd profile``: measure a HardwareProfile of a model on this machine and write it."""

from __future__ import annotations

import argparse

import torch

from ppsd_real import runner
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
    a("--no-hop", action="store_true", help="skip the inter-process hop measurement")
    a("--output", default="profile.json")


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise ConfigError("threads", f"must be >= 1, got {args.threads}")
    if args.repeats < 5:
        raise ConfigError("repeats", f"must be >= 5, got {args.repeats}")
    torch.set_num_threads(args.threads)
    spec = ModelSpec(
        preset=None if args.model_dir else (args.preset or DEFAULT_CPU_PRESET),
        path=args.model_dir,
        seed=args.seed,
    )
    m = runner.load(spec)
    hop = None
    if not args.no_hop:
        scheme = SchemeConfig.ppsd((m.n_layers // 2, m.n_layers))
        with runner.open_distributed(spec, scheme, m.n_layers, DrafterSpec()) as be:
            hop = be.hop_latency(200)[20:]
    prof = profile(m, args.repeats, hop=hop, threads=args.threads)
    write_record(args.output, prof)
    print(
        f"wrote {args.output}: {m.n_layers} layers, layer median "
        f"{prof.layer_decode[0].median * 1e3:.3f} ms, head {prof.final_head.median * 1e3:.3f} ms, "
        f"hop {prof.hop.median * 1e6:.0f} µs"
    )
    return 0
