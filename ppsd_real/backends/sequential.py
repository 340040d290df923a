"""All PPSD stages in one process, stepped in turn: the correctness reference (no overlap)."""

from __future__ import annotations

import time
from collections import deque

import torch

from ppsd_real.backends.transport import LocalTransport
from ppsd_real.decoders.ppsd import Controller, Stage, stage_work_summary
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.drafters import Drafter
from ppsd_real.layers import LayerDriver


def run_sequential(
    driver: LayerDriver,
    bounds: tuple[int, ...],
    exit_stage: int,
    drafter: Drafter,
    prompt: list[int],
    max_new_tokens: int,
    ee_head: torch.nn.Module | None = None,
    max_inflight: int | None = None,
    run_ahead: bool = True,
) -> DecodeResult:
    """Same stage logic and messages as the distributed backend, one stage step at a time.
    ``run_ahead`` lets stage 0 enter drafts before reading verdicts (as overlapped stages do),
    so flushes and crops happen here too."""
    k = len(bounds)
    boxes: list[deque] = [deque() for _ in range(k)]
    driver.sync()
    t0 = time.perf_counter()
    ctl = Controller(
        bounds,
        exit_stage,
        driver,
        LocalTransport(0, boxes),
        drafter,
        prompt,
        max_new_tokens,
        max_inflight,
        ee_head,
    )
    stages: list[Stage] = [ctl] + [
        Stage(s, bounds, exit_stage, driver, LocalTransport(s, boxes), ee_head) for s in range(1, k)
    ]
    ctl.start_run()
    while not ctl.done:
        progressed = False
        for st in reversed(stages):
            if st is ctl:
                progressed = ctl.step(0.0, enter_first=run_ahead) or progressed
            else:
                progressed = st.step(0.0) or progressed
            if ctl.done:
                break
        if not progressed:
            raise RuntimeError("PPSD sequential backend made no progress (a stage-logic bug)")
    elapsed = time.perf_counter() - t0
    busy, wasted, raw = stage_work_summary(stages)
    return DecodeResult(
        tokens=ctl.out[:max_new_tokens],
        time_s=elapsed,
        trace=ctl.trace,
        positions=ctl.positions,
        flushes=ctl.flushes,
        stage_busy_s=busy,
        stage_wasted_s=wasted,
        extra={"stages": raw},
    )
