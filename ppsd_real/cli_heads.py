"""``ppsd heads train``: early-exit heads for a local model, by self-distillation on its frozen
weights (see ``ppsd_real.lm.heads``), written to a folder of their own."""

from __future__ import annotations

import argparse
from pathlib import Path

from ppsd_sim.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="heads_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "train",
        help="train heads at chosen exits on a text or JSONL corpus",
        description=__doc__,
    )
    a = p.add_argument
    a("--model-dir", required=True, help="the local model folder (read only)")
    a(
        "--corpus",
        nargs="+",
        required=True,
        help="text files (one document each) or .jsonl ({'text': ...} a line); 'stdlib' is "
        "the project's example corpus (the standard library's training split)",
    )
    a("--out", required=True, help="the heads folder to write (resumed if it holds a run)")
    a("--exits", default=None, help="exit layers, e.g. 2,4 or 1-5 (default: all 1..L-1)")
    a("--steps", type=int, default=300)
    a("--batch", type=int, default=8)
    a("--seq-len", type=int, default=256, help="tokens per training window")
    a("--lr", type=float, default=1e-3)
    a("--seed", type=int, default=0)
    a("--checkpoint-every", type=int, default=25, help="steps between resumable checkpoints")
    a("--restart", action="store_true", help="ignore a run found in --out and start again")
    a(
        "--into-model-dir",
        action="store_true",
        help="allow --out to be the model folder itself (never done otherwise)",
    )
    a("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    a("--no-progress", action="store_true")
    from ppsd_real.device import add_device_args

    add_device_args(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from ppsd_real.accept import parse_exits
    from ppsd_real.arch.support import check_config, text_config
    from ppsd_real.device import resolve
    from ppsd_real.lm import heads
    from ppsd_real.model_loading import ModelSpec, read_config
    from ppsd_sim.records.io import check_writable_dir

    for flag, v, lo in (
        ("--steps", args.steps, 1),
        ("--batch", args.batch, 1),
        ("--seq-len", args.seq_len, 2),
        ("--checkpoint-every", args.checkpoint_every, 1),
    ):
        if v < lo:
            raise ConfigError(flag, f"must be >= {lo}, got {v}")
    if not args.lr > 0:
        raise ConfigError("--lr", f"must be > 0, got {args.lr}")
    config = read_config(args.model_dir, "--model-dir")
    check_config(config, "--model-dir")
    exits = parse_exits(args.exits, int(text_config(config).num_hidden_layers))
    out = Path(args.out)
    inside = (
        out.resolve() == Path(args.model_dir).resolve()
        or Path(args.model_dir).resolve() in out.resolve().parents
    )
    if inside and not args.into_model_dir:
        raise ConfigError(
            "--out",
            "is inside the model folder; heads go to a folder of their own "
            "(pass --into-model-dir to write there anyway)",
        )
    check_writable_dir(out, "--out")
    texts = heads.read_corpus(args.corpus)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads", f"must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device, dtype = resolve(args.device, args.dtype)
    spec = ModelSpec(preset=None, path=args.model_dir, dtype=dtype, device=device)
    man = heads.train(
        spec,
        texts,
        out,
        exits=exits,
        steps=args.steps,
        batch=args.batch,
        seq_len=args.seq_len,
        lr=args.lr,
        seed=args.seed,
        corpus_name=" ".join(args.corpus),
        restart=args.restart,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
    )
    last = man.loss[-1] if man.loss else {}
    print(
        f"heads for exits {list(man.exits)} of {man.base_model['name']}: {man.steps_done} steps "
        f"of {man.batch} × {man.seq_len} tokens, mean KL per exit and token "
        f"{last.get('kl_mean', float('nan')):.4f}, {man.elapsed_s:.0f} s → {out}"
    )
    return 0
