"""The queue and admission control every serving model shares, and the arrival processes.

Admission (continuous batching): at each scheduling point the engine admits waiting requests
in arrival order (FIFO, no overtaking) while fewer than ``max_batch`` sequences are admitted
and the request's KV reservation fits the budget. A request reserves prompt + output tokens
plus its scheme's draft slots (EESD γ, PPSD its in-flight limit) for its whole life, so an
admitted request never has to be preempted or swapped; it frees them when it finishes.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import simpy

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.serving.requests import Realised


def check_budget(reqs: Realised, settings: ServingSettings, slack: int) -> np.ndarray:
    """Each request's KV reservation (prompt + output + ``slack`` draft slots); refuses a
    budget that cannot hold the largest one (it would wait for ever)."""
    need = reqs.prompt + reqs.output + slack
    budget = settings.kv_budget
    if budget is not None:
        worst = int(np.argmax(need))
        if int(need[worst]) > budget:
            raise ConfigError(
                "kv_budget",
                f"{budget} tokens cannot hold request {worst} (prompt "
                f"{int(reqs.prompt[worst])} + output {int(reqs.output[worst])} + {slack} "
                f"draft slots = {int(need[worst])}); give at least {int(need[worst])}",
            )
    return need


class Scheduler:
    """Waiting queue, admitted set, KV accounting and per-request timestamps of one run."""

    def __init__(
        self,
        env: simpy.Environment,
        reqs: Realised,
        settings: ServingSettings,
        slack: int,
        think_s: float = 0.0,
    ) -> None:
        self.env = env
        self.reqs = reqs
        self.max_batch = settings.max_batch
        self.budget = settings.kv_budget
        self.need = check_budget(reqs, settings, slack)
        n = reqs.n
        self.arrival = np.full(n, np.nan)
        self.admitted = np.full(n, np.nan)
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.queue: deque[int] = deque()
        self.running = 0
        self.kv_used = 0
        self.done_count = 0
        self.all_done = env.event()
        self.waiter: simpy.Event | None = None
        self.on_idle_wake: list = []  # extra wake-ups (pipeline stage 1)
        self.think_s = think_s
        self._next = 0  # closed loop: next request number to send

    # ---- arrivals ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the arrival process: open (known times) or a closed loop of users."""
        if self.reqs.arrival is not None:
            self.env.process(self._open())
        else:
            raise ConfigError("arrivals", "a closed loop needs start_closed(users)")

    def start_closed(self, users: int) -> None:
        for _ in range(min(users, self.reqs.n)):
            self._send_next()

    def _open(self):
        env, times = self.env, self.reqs.arrival
        assert times is not None  # start() runs this only for known arrival times
        for i in range(self.reqs.n):
            t = float(times[i])
            if t > env.now:
                yield env.timeout(t - env.now)
            self.arrive(i)

    def _send_next(self) -> None:
        if self._next < self.reqs.n:
            i = self._next
            self._next += 1
            self.arrive(i)

    def arrive(self, i: int) -> None:
        self.arrival[i] = self.env.now
        self.queue.append(i)
        self.wake()

    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            w.succeed()
        for cb in self.on_idle_wake:
            cb()

    def wait(self) -> simpy.Event:
        """An event that fires at the next arrival (or other wake-up)."""
        if self.waiter is None:
            self.waiter = self.env.event()
        return self.waiter

    # ---- admission and completion ---------------------------------------------------------
    def admit(self) -> list[int]:
        """Admit waiting requests, FIFO, while the batch and the KV budget allow."""
        out: list[int] = []
        q = self.queue
        while q and self.running < self.max_batch:
            i = q[0]
            need = int(self.need[i])
            if self.budget is not None and self.kv_used + need > self.budget:
                break
            q.popleft()
            self.running += 1
            self.kv_used += need
            self.admitted[i] = self.env.now
            out.append(i)
        return out

    def first_token(self, i: int) -> None:
        self.first[i] = self.env.now

    def complete(self, i: int) -> None:
        """Request i has all its tokens: it leaves, frees its KV and (closed loop) its user
        sends the next request after the think time."""
        self.finish[i] = self.env.now
        self.running -= 1
        self.kv_used -= int(self.need[i])
        self.done_count += 1
        if self.reqs.arrival is None:
            if self.think_s > 0:
                self.env.timeout(self.think_s).callbacks.append(lambda _e: self._send_next())
            else:
                self._send_next()
        if self.done_count == self.reqs.n:
            self.all_done.succeed()
        elif self.queue:
            self.wake()
