"""All PPSD stages in one process, stepped in turn: the correctness reference (no overlap)."""

from __future__ import annotations

import time
from collections import deque

import torch

from ppsd_real import sampling as sampling_rule
from ppsd_real.backends.base import PipelineBackend, require_ppsd
from ppsd_real.backends.transport import LocalTransport
from ppsd_real.decoders.ppsd import Controller, Stage, stage_work_summary
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.drafters import Drafter, DrafterSpec, load_ee_head
from ppsd_real.layers import LayerDriver
from ppsd_real.sampling import GREEDY, JudgeRule, SamplingSpec
from ppsd_sim.records import SchemeConfig


def run_sequential(
    driver: LayerDriver,
    scheme: SchemeConfig,
    drafter: Drafter,
    prompt: list[int],
    max_new_tokens: int,
    ee_head: torch.nn.Module | None = None,
    run_ahead: bool = True,
    sampling: SamplingSpec = GREEDY,
    judge_rule: JudgeRule = sampling_rule.judge,
) -> DecodeResult:
    """Same stage logic and messages as the distributed backend, one stage step at a time.
    ``run_ahead`` lets stage 0 enter drafts before reading verdicts (as overlapped stages do),
    so flushes and crops happen here too. ``judge_rule``: the controller's rule for sampled
    drafts (a parameter so tests can show that a wrong one is caught)."""
    specs = scheme.stages()
    boxes: list[deque] = [deque() for _ in specs]
    driver.sync()
    t0 = time.perf_counter()
    ctl = Controller(
        scheme,
        driver,
        LocalTransport(0, boxes),
        drafter,
        prompt,
        max_new_tokens,
        ee_head,
        sampling=sampling,
        judge_rule=judge_rule,
    )
    stages: list[Stage] = [ctl] + [
        Stage(sp, driver, LocalTransport(sp.index, boxes), ee_head, sampling=sampling)
        for sp in specs[1:]
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
        expected=ctl.expected,
        flushes=ctl.flushes,
        stage_busy_s=busy,
        stage_wasted_s=wasted,
        extra={"stages": raw},
    )


class SequentialBackend(PipelineBackend):
    """``run_sequential`` behind the backend interface, on a model loaded in this process."""

    def __init__(
        self,
        driver: LayerDriver,
        scheme: SchemeConfig,
        head_path: str | None = None,
        run_ahead: bool = True,
    ) -> None:
        scheme.check_layers(driver.n_layers)
        require_ppsd(scheme)
        self.driver, self.scheme, self.head_path, self.run_ahead = (
            driver,
            scheme,
            head_path,
            run_ahead,
        )
        self.vocab = int(driver.parts.lm_head.weight.shape[0])
        self.ee_head = load_ee_head(DrafterSpec(head_path=head_path), driver.parts.lm_head)

    def run(
        self,
        prompt: list[int],
        max_new_tokens: int,
        drafter: DrafterSpec,
        reference: list[int] | None = None,
        sampling: SamplingSpec = GREEDY,
    ) -> DecodeResult:
        self.check_drafter(drafter, reference, sampling)
        return run_sequential(
            self.driver,
            self.scheme,
            Drafter(drafter, self.vocab, reference),
            prompt,
            max_new_tokens,
            self.ee_head,
            self.run_ahead,
            sampling,
        )
