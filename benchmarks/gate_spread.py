"""Benchmark (not a test): record the model-relative gate's tolerance and measure its figures.

python benchmarks/gate_spread.py [--runs 10] [--checks 10] [--delays 0.0001,0.0002,...]
                                 [--preset cpu-bench] [--tokens 128] [--repeats 3]
                                 [--tolerance PATH] [--out PATH] [--provisional]

On a quiet machine, in this order (all with the model-relative gate alone, `--mode model`):
1. record: ``--runs`` independent readings of unchanged code → the tolerance record
   (``ppsd calibrate tolerance``'s code; refused on a busy machine unless --provisional);
2. checks: ``--checks`` more gate decisions of unchanged code (``ppsd calibrate regress
   --quick``'s code), judged against that record: how many pass, the spread of measured ÷
   predicted over them, and how long the gate takes;
3. ladder: one decision per injected delay (``PPSD_TEST_TICK_DELAY_S``, seconds per PPSD
   stage step and EESD draft step), smallest first: the smallest delay it fails, and how much
   each delay cut the measured speedups.
Writes the tolerance record (default: this hardware class's file in calibration/baselines/)
and a JSON of every figure (default results/gate_spread/<hardware>.json), and prints the
figures BENCHMARKS.md quotes. Exit 3 if the machine was busy while recording.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from calibration import cli, gate, model_gate
from ppsd_real.model_loading import ModelSpec
from ppsd_real.test_hooks import TICK_DELAY_ENV
from ppsd_sim.records import atomic_write_text, check_writable

DELAYS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005)


def _decision(spec: ModelSpec, plan: cli.Plan, args: argparse.Namespace, delay: float) -> dict:
    """One `regress --quick --mode model` decision, with ``delay`` injected (0: none)."""
    old = os.environ.pop(TICK_DELAY_ENV, None)
    if delay:
        os.environ[TICK_DELAY_ENV] = repr(delay)  # stage processes spawned inside inherit it
    t0 = time.perf_counter()
    try:
        d, taken = cli.decide_gates(
            spec,
            plan,
            tokens=args.tokens,
            repeats=args.repeats,
            transport=args.transport,
            quick=True,
            floor=None,
        )
    finally:
        if old is None:
            os.environ.pop(TICK_DELAY_ENV, None)
        else:
            os.environ[TICK_DELAY_ENV] = old
    wall = time.perf_counter() - t0
    first = d.runs[0].sections[cli.MODEL_GATE]
    return {
        "delay_s": delay,
        "status": d.status,
        "wall_s": round(wall, 2),
        "profile_s": [round(m.profile_s, 2) for m in taken],
        "readings": len(taken),
        "load": [
            None if r.load is None else round(r.load.foreign + r.load.steal, 4) for r in d.runs
        ],
        "cells": {
            v.label: {
                "measured": v.measured,
                "predicted": v.predicted,
                "ratio": v.ratio,
                "change": v.change,
                "threshold": v.threshold,
                "ok": v.ok,
            }
            for v in first
            if isinstance(v, model_gate.ModelVerdict)
        },
        "lines": cli.describe_decision(d),
    }


def _spread(xs: list[float]) -> dict:
    med = statistics.median(xs)
    return {
        "median": med,
        "min": min(xs),
        "max": max(xs),
        "sd_rel": statistics.stdev(xs) / med if len(xs) > 1 else 0.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="cpu-bench")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="as `regress --quick` (3)")
    ap.add_argument("--transport", default="pipe", choices=("pipe", "gloo"))
    ap.add_argument("--runs", type=int, default=10, help="readings recorded (default 10)")
    ap.add_argument("--checks", type=int, default=10, help="unchanged-code decisions (10)")
    ap.add_argument("--delays", default=",".join(f"{d:g}" for d in DELAYS))
    ap.add_argument("--tolerance", help="record to write (default: this class's)")
    ap.add_argument("--out", help="figures JSON (default results/gate_spread/<hardware>.json)")
    ap.add_argument("--provisional", action="store_true", help="record even on a busy machine")
    args = ap.parse_args()
    spec = ModelSpec(args.preset)
    hw = gate.hardware_class()
    out = Path(args.out) if args.out else Path("results/gate_spread") / f"{hw}.json"
    check_writable(out, "--out")
    delays = sorted(float(x) for x in args.delays.split(",") if x)
    command = "python benchmarks/gate_spread.py " + " ".join(sys.argv[1:])

    t0 = time.perf_counter()
    tol, tol_path = cli.record_and_describe_tolerance(args, spec, command)
    if tol is None:
        return 3
    record_s = time.perf_counter() - t0

    plan = cli.choose_mode("model", cli.default_baseline(spec.name), False, tol_path, spec.name)
    checks = []
    for i in range(args.checks):
        checks.append(_decision(spec, plan, args, 0.0))
        c = checks[-1]
        print(f"check {i + 1}/{args.checks}: {c['status']} ({c['wall_s']:.0f} s)")
        print("\n".join(c["lines"]))
    ladder = []
    for d in delays:
        ladder.append(_decision(spec, plan, args, d))
        r = ladder[-1]
        print(f"delay {d * 1e3:g} ms per step: {r['status']}")
        print("\n".join(r["lines"]))

    labels = [c.label for c in tol.cells]
    base_measured = {
        lb: statistics.median(c["cells"][lb]["measured"] for c in checks) for lb in labels
    }
    for r in ladder:
        r["speedup_drop"] = {
            lb: 1.0 - r["cells"][lb]["measured"] / base_measured[lb] for lb in labels
        }
    caught = [r["delay_s"] for r in ladder if r["status"] == "fail"]
    smallest = next(
        (
            r["delay_s"]
            for i, r in enumerate(ladder)
            if all(x["status"] == "fail" for x in ladder[i:])
        ),
        None,
    )
    passing = [c for c in checks if c["status"] == "pass"]
    figures = {
        "hardware": hw,
        "model": spec.name,
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "tolerance": str(tol_path),
        "provisional": tol.provisional,
        "record_s": round(record_s, 1),
        "recorded": {
            c.label: {
                "ratios": list(c.ratios),
                "median": c.median,
                "sd_run_upper": c.between_runs,
                "allowed_drop_this_class": tol.allowed_drop(c, True),
                "allowed_drop_other_classes": tol.allowed_drop(c, False),
            }
            for c in tol.cells
        },
        "checks": {
            "passed": len(passing),
            "of": len(checks),
            "ratio": {lb: _spread([c["cells"][lb]["ratio"] for c in checks]) for lb in labels},
            "wall_s": _spread([c["wall_s"] for c in checks]) if checks else None,
            "profile_s": _spread([p for c in checks for p in c["profile_s"]]) if checks else None,
        },
        "ladder": ladder,
        "caught_delays_s": caught,
        "smallest_caught_s": smallest,
        "runs": checks,
    }
    atomic_write_text(out, json.dumps(figures, indent=1, ensure_ascii=False) + "\n")

    print(f"\n## model-relative gate on {hw}, {spec.name} (figures: {out})")
    if tol.provisional:
        print("PROVISIONAL tolerance (recorded with --provisional)")
    for lb in labels:
        rec, chk = figures["recorded"][lb], figures["checks"]["ratio"][lb]
        print(
            f"- {lb}: recorded ratio {rec['median']:.3f} over {len(rec['ratios'])} runs, sd_run "
            f"(upper 90%) {rec['sd_run_upper']:.1%}, allowed drop {rec['allowed_drop_this_class']:.1%}"
            f" here / {rec['allowed_drop_other_classes']:.1%} elsewhere; {len(checks)} checks: "
            f"ratio {chk['median']:.3f} [{chk['min']:.3f}–{chk['max']:.3f}], sd {chk['sd_rel']:.1%}"
        )
    print(f"- unchanged code passed {len(passing)} of {len(checks)} decisions")
    for r in ladder:
        drops = ", ".join(f"{lb} {-r['speedup_drop'][lb]:+.0%}" for lb in labels)
        print(
            f"- delay {r['delay_s'] * 1e3:g} ms/step: {r['status']} (measured speedup change {drops})"
        )
    print(
        "- smallest injected delay caught (it and every larger one failed): "
        + ("none" if smallest is None else f"{smallest * 1e3:g} ms per step")
    )
    if checks:
        w, p = figures["checks"]["wall_s"], figures["checks"]["profile_s"]
        print(
            f"- time: a passing model-relative decision {w['median']:.0f} s "
            f"[{w['min']:.0f}–{w['max']:.0f}]; of it the quick profile {p['median']:.0f} s "
            "(what the model-relative gate adds beside the baseline gate's measurement)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
