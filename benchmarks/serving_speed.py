"""Benchmark: the serving simulator's own speed (issue 11).

Not a test. Run: python benchmarks/serving_speed.py [--repeats 5] [--requests 1000]
[--rate R] [--cpu N]
Target: 1,000 requests × 256 output tokens at batch up to 32 in ≤ 10 s on one core, for every
scheme (the SimPy models are single-threaded). The default workload keeps the batch full (all
requests at t = 0; ``--rate R``: Poisson arrivals instead), prompts 64–512 tokens, i.i.d.
α = 0.8, on the embedded serving example profile (``ppsd_sim.serving.example``); the pipeline
schemes run under both slot policies. The process is pinned to one core (``--cpu``, default
the first it may use). Prints, after one warm-up per case, the median and min–max CPU time
(``time.process_time``: what the one core spends, less sensitive to other processes than wall
time), the median wall time, the steps simulated and whether the median meets the target.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from ppsd_sim.records import AcceptanceSpec, SchemeConfig
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Workload
from ppsd_sim.serving import simulate_serving
from ppsd_sim.serving.example import example_serving_profile

TARGET_S = 10.0
CASES = [
    (SchemeConfig.ar(), "real_first"),
    (SchemeConfig.tp_ar(4), "real_first"),
    (SchemeConfig.eesd(8, 4), "real_first"),
    (SchemeConfig.pp_ar_even(32, 4), "real_first"),
    (SchemeConfig.pp_ar_even(32, 4), "greedy"),
    (SchemeConfig.ppsd_even(32, 4), "real_first"),
    (SchemeConfig.ppsd_even(32, 4), "greedy"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--output", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rate", type=float, help="Poisson arrivals (req/s); default all at t = 0")
    ap.add_argument("--cpu", type=int, help="core to pin to (default: the first allowed)")
    args = ap.parse_args()
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    profile = example_serving_profile()
    arrivals = Arrivals.at_once() if args.rate is None else Arrivals.poisson(args.rate)
    work = Workload(
        count=args.requests,
        prompt=LengthDist.uniform(64, 512),
        output=LengthDist.fixed(args.output),
        arrivals=arrivals,
        acceptance=AcceptanceSpec.iid(0.8),
    )
    warm = Workload(count=20, output=LengthDist.fixed(32), acceptance=AcceptanceSpec.iid(0.8))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(pinned to core {cpu}), load {os.getloadavg()[0]:.2f}, "
        f"python {platform.python_version()}"
    )
    print(
        f"{args.requests} requests × {args.output} output tokens, batch ≤ {args.batch}, "
        f"{arrivals.label()}, {args.repeats} repeats; target ≤ {TARGET_S:g} s CPU per case"
    )
    print(
        f"{'scheme':<18}{'policy':<12}{'cpu s':>8}{'min':>8}{'max':>8}{'wall s':>8}"
        f"{'batch':>7}{'steps':>9}  target"
    )
    for scheme, policy in CASES:
        st = ServingSettings(max_batch=args.batch, policy=policy)
        simulate_serving(profile, scheme, warm, st)
        cpu_s, wall, rec = [], [], None
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            rec = simulate_serving(profile, scheme, work, st, keep_profile=False)
            cpu_s.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
        med = statistics.median(cpu_s)
        print(
            f"{scheme.label():<18}{policy:<12}{med:>8.2f}{min(cpu_s):>8.2f}{max(cpu_s):>8.2f}"
            f"{statistics.median(wall):>8.2f}{rec.mean_batch:>7.1f}{rec.steps:>9}  "
            + ("met" if med <= TARGET_S else f"MISSED by {med / TARGET_S:.2f}×")
        )


if __name__ == "__main__":
    main()
