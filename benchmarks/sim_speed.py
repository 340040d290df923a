"""Benchmark: simulated tokens per second of the SimPy model and of the exact fast path.

Not a test. Run: python benchmarks/sim_speed.py [--repeats 5]
Targets (issue 2): SimPy ≥ 100,000 tokens/s for a 4-stage PPSD on one core; fast path
≥ 10,000,000 tokens/s. Prints median and min–max over repeats, after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.simulate import simulate


def rate(
    engine: str, scheme: SchemeConfig, alpha: float, tokens: int, profile: HardwareProfile
) -> float:
    t0 = time.perf_counter()
    simulate(profile, scheme, AcceptanceSpec.iid(alpha), tokens=tokens, seed=1, engine=engine)
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--simpy-tokens", type=int, default=200_000)
    ap.add_argument("--fast-tokens", type=int, default=10_000_000)
    args = ap.parse_args()
    profile = HardwareProfile.uniform(32, 1e-3, 1.0, hop=2e-5, tick=3e-5, flush=4e-5)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}, python {platform.python_version()}"
    )
    print(f"{'engine':<7}{'scheme':<18}{'alpha':>6}{'median tok/s':>15}{'min':>15}{'max':>15}")
    cases = [
        ("simpy", SchemeConfig.ppsd_even(32, 4), a, args.simpy_tokens)
        for a in (0.5, 0.8, 0.9, 0.99)
    ]
    cases += [("simpy", SchemeConfig.eesd(8, 4), 0.8, args.simpy_tokens)]
    cases += [
        ("fast", SchemeConfig.ppsd_even(32, 4), a, args.fast_tokens) for a in (0.5, 0.8, 0.99)
    ]
    cases += [("fast", SchemeConfig.eesd(8, 4), 0.8, args.fast_tokens)]
    for engine, scheme, alpha, tokens in cases:
        rate(engine, scheme, alpha, min(tokens, 20_000), profile)  # warm-up
        xs = [rate(engine, scheme, alpha, tokens, profile) for _ in range(args.repeats)]
        print(
            f"{engine:<7}{scheme.label():<18}{alpha:>6}{statistics.median(xs):>15,.0f}{min(xs):>13,.0f}{max(xs):>13,.0f}"
        )


if __name__ == "__main__":
    main()
