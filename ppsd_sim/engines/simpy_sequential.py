"""SimPy models of the single-device schemes: AR and EESD (draft-then-verify)."""

from __future__ import annotations

import numpy as np
import simpy

from ppsd_sim.acceptance.sampler import AcceptanceSampler
from ppsd_sim.costs import ArCosts, EesdCosts
from ppsd_sim.engines.result import EngineResult, observed_from_rounds
from ppsd_sim.records.run_record import AcceptanceObserved
from ppsd_sim.records.span import Span


def run_ar(costs: ArCosts, n_tokens: int, *, timeline: bool = False) -> EngineResult:
    """One process, one forward step per token through all layers."""
    env = simpy.Environment()
    spans: list[Span] | None = [] if timeline else None

    def decode():
        for i in range(n_tokens):
            start = env.now
            yield env.timeout(costs.token)
            if spans is not None:
                spans.append(Span(0, start, env.now, f"token {i}", "compute"))

    env.process(decode())
    env.run()
    return EngineResult(
        n_tokens, env.now, AcceptanceObserved(0, 0), [env.now], [0.0], 0, spans=spans
    )


def run_eesd(
    costs: EesdCosts, sampler: AcceptanceSampler, n_tokens: int, *, timeline: bool = False
) -> EngineResult:
    """Rounds of γ draft steps, one verification pass, a crop after a rejection."""
    env = simpy.Environment()
    g = costs.gamma
    spans: list[Span] | None = [] if timeline else None
    taken: list[int] = []
    state = {"wasted": 0.0, "flushes": 0}

    def span(start: float, name: str, cat: str) -> None:
        if spans is not None:
            spans.append(Span(0, start, env.now, name, cat))

    def decode():
        committed, buf, i = 0, np.zeros(0, dtype=np.int64), 0
        while True:
            if i >= len(buf):
                buf, i = sampler.rounds(256, g), 0
            a = int(buf[i])
            i += 1
            r = len(taken)
            for d in range(g):
                start = env.now
                yield env.timeout(costs.draft_step)
                span(start, f"round {r} draft {d + 1}", "draft")
            start = env.now
            yield env.timeout(costs.verify)
            span(start, f"round {r} verify", "verify")
            taken.append(a)
            committed += a + 1
            if a < g:
                state["wasted"] += (g - a) * costs.draft_step
            if committed >= n_tokens:
                return
            if a < g:
                state["flushes"] += 1
                start = env.now
                yield env.timeout(costs.flush)
                span(start, f"round {r} crop", "crop")

    env.process(decode())
    env.run()
    obs = observed_from_rounds(np.asarray(taken), g)
    return EngineResult(
        n_tokens,
        env.now,
        obs,
        [env.now],
        [state["wasted"]],
        int(state["flushes"]),
        rounds=len(taken),
        spans=spans,
    )
