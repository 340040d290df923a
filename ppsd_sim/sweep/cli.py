"""``ppsd sweep``: validate a spec, print its size, run it resumably, summarise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppsd_sim.records import validate
from ppsd_sim.records.io import check_writable_dir
from ppsd_sim.sweep.backends import BACKENDS, make_backend
from ppsd_sim.sweep.params import PARAMS
from ppsd_sim.sweep.runner import run_sweep
from ppsd_sim.sweep.spec import load_spec
from ppsd_sim.sweep.summary import RANK_BY, summarise


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "The spec (YAML/JSON) has 'fixed' values, 'axes' (a grid) and/or 'points' (a list), "
        "'seed' and 'seed_mode' (point|common). Parameters: "
        + ", ".join(PARAMS)
        + ". Rerunning the same command resumes: finished points are skipped; a spec may "
        "grow (points added) and resume, a spec that changed or dropped points is refused "
        "into a folder holding them (give it another --out). "
        "Read the table with ppsd_sim.sweep.load_results(OUT)."
    )
    p.add_argument("spec", help="sweep spec file (YAML or JSON)")
    p.add_argument("--out", help="results folder (default: <spec name>.sweep next to the spec)")
    p.add_argument("--backend", choices=BACKENDS, default="local", help="default: local")
    p.add_argument("--workers", type=int, help="worker processes / Ray CPUs (default: all cores)")
    p.add_argument("--address", help="ray: address of a running cluster (default: start one)")
    p.add_argument("--dry-run", action="store_true", help="validate and count, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--top", type=int, default=5, help="best points to show, >= 1 (default 5)")
    p.add_argument("--rank-by", choices=RANK_BY, default="speedup", help="default: speedup")


def run(args: argparse.Namespace) -> int:
    validate.integer("--top", args.top, lo=1)
    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path(args.spec).with_suffix(".sweep")
    check_writable_dir(out, "--out")
    backend = make_backend(args.backend, args.workers, args.address)
    print(
        f"spec {args.spec}: {len(spec.points):,} points"
        + (
            f" ({spec.duplicates:,} more combinations repeat a point: they set values its "
            "scheme does not use)"
            if spec.duplicates
            else ""
        )
        + (f"; varying: {', '.join(spec.varying)}" if spec.varying else ""),
        flush=True,
    )
    if spec.unused:
        print(f"note: not used by any point: {', '.join(spec.unused)}", flush=True)
    if args.dry_run:
        return 0
    counts = run_sweep(
        spec, out, backend, progress=not args.no_progress, echo=lambda s: print(s, flush=True)
    )
    print(summarise(spec, out, counts, top=args.top, rank_by=args.rank_by), flush=True)
    sys.stdout.flush()
    return 0
