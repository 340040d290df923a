"""SimPy model of the single-device schemes under load: AR, TP-AR and EESD with continuous
batching (iteration-level scheduling).

One engine process. At every step boundary it admits waiting requests; if any were admitted it
runs one prefill step over all their prompts (the running sequences wait: prefill first, no
chunking) which yields each one's first token; otherwise it runs one decode step for every
admitted sequence — AR/TP-AR: one token each; EESD: a round of γ batched draft steps and one
batched verification, after which each sequence commits its own accepted prefix plus the
bonus token, and one KV crop follows if any continuing sequence rejected a draft. A sequence
that reaches its output length leaves at the end of that step (tokens past its end are
dropped) and frees its KV reservation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from ppsd_sim.acceptance.sampler import AcceptanceSampler
from ppsd_sim.engines.result import observed_from_rounds
from ppsd_sim.records.run_record import AcceptanceObserved
from ppsd_sim.serving.requests import Realised
from ppsd_sim.serving.scheduler import Scheduler
from ppsd_sim.serving.step_costs import DeviceSteps

_ROUND_CHUNK = 64


@dataclass
class ModelResult:
    """What a serving model returns besides the scheduler's timestamps."""

    busy_s: list[float]
    wasted_s: list[float]
    flushes: int
    steps: int
    observed: AcceptanceObserved | None
    max_step_tokens: int = 0
    notes: dict[str, str] = field(default_factory=dict)
    max_inflight: int = 0


@dataclass
class _Tally:
    """The engine's running totals (seconds busy and wasted, flushes, steps, the most tokens
    in one step)."""

    busy: float = 0.0
    wasted: float = 0.0
    flushes: int = 0
    steps: int = 0
    max_t: int = 0


class _Seq:
    __slots__ = ("buf", "ctx", "i", "left", "pos", "rounds", "sampler")

    def __init__(self, i: int, prompt: int, left: int) -> None:
        self.i = i
        self.ctx = prompt  # cached KV tokens before the next step
        self.left = left  # decode commits still to make
        self.sampler: AcceptanceSampler | None = None
        self.buf = np.zeros(0, dtype=np.int64)
        self.pos = 0
        self.rounds: list[int] = []


def run_iteration(
    env: simpy.Environment,
    sched: Scheduler,
    steps: DeviceSteps,
    reqs: Realised,
    speculative: bool,
) -> ModelResult:
    """Run the engine until every request has finished (``sched.all_done``)."""
    g = steps.gamma
    running: list[_Seq] = []
    st = _Tally()

    def engine():
        while True:
            new = sched.admit()
            if new:
                T = int(sum(int(reqs.prompt[i]) for i in new))
                dur = steps.prefill(T, len(new))
                st.max_t = max(st.max_t, T)
                yield env.timeout(dur)
                st.busy += dur
                st.steps += 1
                for i in new:
                    sched.first_token(i)
                    left = int(reqs.output[i]) - 1
                    if left == 0:
                        sched.complete(i)
                        continue
                    s = _Seq(i, int(reqs.prompt[i]), left)
                    if speculative:
                        acc = reqs.acceptance[i]
                        assert acc is not None  # simulate.prepare refuses EESD without one
                        s.sampler = AcceptanceSampler(acc, reqs.seeds[i])
                    running.append(s)
                continue
            if not running:
                if sched.done_count == reqs.n:
                    return
                yield sched.wait()
                continue
            B = len(running)
            K = sum(s.ctx for s in running)
            if not speculative:
                dur = steps.decode(B, K)
                st.max_t = max(st.max_t, B)
                yield env.timeout(dur)
                st.busy += dur
                st.steps += 1
                for s in running:
                    s.ctx += 1
                    s.left -= 1
                    if s.left == 0:
                        sched.complete(s.i)
                running[:] = [s for s in running if s.left > 0]
                continue
            yield from eesd_round(B, K)

    def eesd_round(B: int, K: int):
        drafts = [steps.draft(B, K + B * d) for d in range(g)]
        verify = steps.verify(B, K + B * g, K)
        dur = sum(drafts) + verify
        st.max_t = max(st.max_t, B * (g + 1))
        yield env.timeout(dur)
        st.busy += dur
        st.steps += g + 1
        rejected = False
        for s in running:
            if s.pos >= len(s.buf):
                assert s.sampler is not None  # every speculative sequence has one
                s.buf, s.pos = s.sampler.rounds(_ROUND_CHUNK, g), 0
            a = int(s.buf[s.pos])
            s.pos += 1
            s.rounds.append(a)
            if a < g:
                st.wasted += sum(drafts[a:]) / B
            s.ctx += a + 1
            s.left -= a + 1
            if s.left <= 0:
                s.left = 0
                sched.complete(s.i)
            elif a < g:
                rejected = True
        done = [s for s in running if s.left == 0]
        running[:] = [s for s in running if s.left > 0]
        observed.extend(done)
        if rejected:
            st.flushes += 1
            yield env.timeout(steps.flush)
            st.busy += steps.flush

    observed: list[_Seq] = []
    env.process(engine())
    env.run(until=sched.all_done)
    obs = None
    if speculative:
        rounds = [a for s in observed for a in s.rounds]
        obs = observed_from_rounds(np.asarray(rounds, dtype=np.int64), g) if rounds else None
    return ModelResult([st.busy], [st.wasted], st.flushes, st.steps, obs, max_step_tokens=st.max_t)
