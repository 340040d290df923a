"""Measure calibration cells on the real runner, with the AR baseline measured beside them.

All variants run interleaved, repeat after repeat (one warm-up repeat excluded). AR with one
thread is measured right before and right after every small group of cells and each cell's
speedup uses the mean of the two, so machine drift (±15% here) cancels in the ratio. Every
output is checked token for token against AR: calibration never times a lossy run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from calibration.grid import Cell
from ppsd_real import runner
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.records import SchemeConfig, validate

GROUP = 4  # cells between two AR baselines


@dataclass
class Measured:
    cell: Cell
    speedups: list[float] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    trace: tuple[int, ...] = ()  # accept/reject sequence of the first timed repeat
    judged: int = 0
    accepted: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.speedups)

    @property
    def observed_alpha(self) -> float | None:
        return self.accepted / self.judged if self.judged else None


def measure_grid(
    spec: ModelSpec,
    cells: list[Cell],
    *,
    tokens: int = 128,
    repeats: int = 5,
    seed: int = 0,
    transport: str = "pipe",
    on_progress: Callable[[int, int], None] | None = None,
    fixed_trace: bool = False,
) -> list[Measured]:
    """Speedup of every cell over AR with one thread (the per-process budget of one stage).
    Each repeat draws a new acceptance sequence (a median over acceptance luck, as the model's
    i.i.d. prediction assumes), or with ``fixed_trace`` the same one every time: the gate then
    watches the code's speed, not acceptance luck (at α = 0.9 over 128 tokens the number of
    rejections is binomial, about 12 ± 3.4, each costing a flushed pipeline slot)."""
    validate.integer("tokens", tokens, lo=8)
    validate.integer("repeats", repeats, lo=1)
    torch.set_num_threads(1)
    m = runner.load(spec)
    for c in cells:
        c.scheme.check_layers(m.n_layers)
    prompt = [1 + (seed * 7 + i * 13) % (m.vocab - 1) for i in range(8)]
    ar = SchemeConfig.ar()
    ref = runner.run_local(m, ar, DrafterSpec(), prompt, tokens, None).tokens
    backends = {}
    out = [Measured(c) for c in cells]
    try:
        for c in cells:
            b = c.scheme.stage_boundaries
            if c.scheme.kind == "ppsd" and b not in backends:
                backends[b] = runner.open_distributed(
                    spec, c.scheme, m.n_layers, DrafterSpec(), transport=transport
                )
        total, done = (repeats + 1) * len(cells), 0

        def ar_time() -> float:
            return runner.run_local(m, ar, DrafterSpec(), prompt, tokens, None).time_s

        for rep in range(repeats + 1):
            before = ar_time()
            for g in range(0, len(cells), GROUP):
                group, times, results = out[g : g + GROUP], [], []
                for meas in group:
                    c = meas.cell
                    drafter = (
                        DrafterSpec()
                        if c.alpha is None
                        else DrafterSpec("oracle", c.alpha, seed if fixed_trace else seed + rep)
                    )
                    if c.scheme.kind == "ppsd":
                        r = backends[c.scheme.stage_boundaries].run(prompt, tokens, drafter, ref)
                    else:
                        r = runner.run_local(m, c.scheme, drafter, prompt, tokens, ref)
                    if r.tokens != ref:
                        raise RuntimeError(f"{c.label}: output differs from AR (not lossless)")
                    times.append(r.time_s)
                    results.append(r)
                    done += 1
                    if on_progress:
                        on_progress(done, total)
                after = ar_time()
                base = (before + after) / 2
                before = after
                if rep == 0:
                    continue  # warm-up
                for meas, t, r in zip(group, times, results, strict=True):
                    meas.times_s.append(t)
                    meas.speedups.append(base / t)
                    if rep == 1 and r.trace:
                        meas.trace = tuple(r.trace)
                    meas.judged += len(r.trace)
                    meas.accepted += sum(r.trace)
    finally:
        for be in backends.values():
            be.close()
    return out


def wall_clock() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
