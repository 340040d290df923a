"""The embedded serving example: what ``ppsd serving`` shows with no arguments.

The batch-1 example profile (``ppsd_sim.examples``: 32 layers × 0.5 ms, illustrative round
numbers for a 7B-class model on one accelerator per stage) with illustrative load costs added:
per layer 0.48 ms per step (weights read once) + 2 µs per token (compute: the step turns
compute-bound near 240 tokens) + 8 ns per cached KV token read (16 KB per token per layer at
2 TB/s); heads 0.25 ms + 1 µs per token; a hop of 20 µs + 0.3 µs per token; and a tensor-parallel
split over 2 and 4 devices (each shard a 1/k share plus 10 µs, two all-reduces per layer of
8 µs + 60 ns per token). None of it is a measurement.
"""

from __future__ import annotations

from dataclasses import replace

from ppsd_sim import examples
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.load_cost import BatchedCosts, LoadCost, TensorParallel
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.workload import Arrivals, LengthDist, Workload

LAYER = LoadCost(a=0.48e-3, b=2e-6, c=8e-9)
HEAD = LoadCost(a=0.25e-3, b=1e-6)


def example_serving_profile() -> HardwareProfile:
    base = examples.example_profile()
    batched = BatchedCosts(
        layers=(LAYER,),
        embed=LoadCost(b=1e-8),
        ee_head=HEAD,
        final_head=HEAD,
        hop=LoadCost(a=20e-6, b=3e-7),
        notes="illustrative round numbers, not a measurement",
    )
    tp = tuple(
        TensorParallel(
            degree=k,
            layers=(LoadCost(a=LAYER.a / k + 10e-6, b=LAYER.b / k, c=LAYER.c / k),),
            embed=LoadCost(b=1e-8),
            final_head=LoadCost(a=HEAD.a / k + 5e-6, b=HEAD.b / k),
            allreduce=LoadCost(a=8e-6, b=6e-8),
            notes="illustrative round numbers, not a measurement",
        )
        for k in (2, 4)
    )
    return replace(base, batched=batched, tp=tp)


def example_workload(count: int = 200) -> Workload:
    """``count`` requests, prompts of 64–512 tokens, 128 output tokens, Poisson at 6 req/s,
    i.i.d. α = 0.8 (the batch-1 example's)."""
    return Workload(
        count=count,
        prompt=LengthDist.uniform(64, 512),
        output=LengthDist.fixed(128),
        arrivals=Arrivals.poisson(6.0),
        acceptance=AcceptanceSpec.iid(examples.EXAMPLE_ALPHA),
    )
