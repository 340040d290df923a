"""SimPy model of PPSD: k pipeline stages, drafting at the exit stage, verifying at the last.

Entities: one process per stage, each with an inbox; tokens are small records carrying an
epoch (bumped by every flush) and the time they are ready at the stage (sent time + hop).
Events: a stage finishing a token; the last stage judging the draft behind it; on a
rejection, a flush that reaches the last stage at once and every other stage one hop later,
abandons the work in progress there, crops the cache and restarts stage 1 with the verified
token. Stages mapped to the same device share a ``simpy.Resource`` and so contend. Stage 1
enters a token only while fewer than ``limit`` tokens are in flight (entered, verdict not yet
back at stage 1, one hop after its commit): what the real runner's controller allows.

To stay fast (>100k tokens/s) a stage takes its next input without an event when one is
already waiting, and a hop is a ready-time stamp rather than an event of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import simpy

from ppsd_sim.acceptance.sampler import AcceptanceSampler, RunCursor
from ppsd_sim.costs import PpsdCosts
from ppsd_sim.engines.result import EngineResult, observed_from_runs
from ppsd_sim.records.span import Span


@dataclass(slots=True)
class _Item:
    ready: float
    epoch: int
    index: int  # token number in the run (for timelines); -1 for a crop job
    crop: bool = False


def _name(item: _Item) -> str:
    return "crop" if item.crop else f"token {item.index}"


class _Inbox:
    """FIFO with an optional wake-up event; no event at all when an item is waiting."""

    __slots__ = ("env", "items", "waiter")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.items: deque[_Item] = deque()
        self.waiter: simpy.Event | None = None

    def put(self, item: _Item) -> None:
        self.items.append(item)
        w = self.waiter
        if w is not None:
            self.waiter = None
            w.succeed()


class _PpsdModel:
    def __init__(
        self,
        costs: PpsdCosts,
        sampler: AcceptanceSampler,
        n_tokens: int,
        timeline: bool,
        limit: int | None = None,
    ) -> None:
        self.c = costs
        self.limit = limit
        self.entered = 0  # tokens stage 1 started in the epoch it knows
        self.commit_log: dict[int, list[float]] = {0: []}  # commit times per epoch
        self.slot_waiter: simpy.Event | None = None
        self.env = env = simpy.Environment()
        self.n = n_tokens
        k = costs.k
        self.inbox = [_Inbox(env) for _ in range(k)]
        self.known_epoch = [0] * k  # the epoch each stage has been told about
        self.epoch = 0
        self.current: list[_Item | None] = [None] * k
        self.busy = [0.0] * k
        self.wasted = [0.0] * k
        self.started = [0.0] * k
        self.epoch_work = [0.0] * k  # finished work on tokens of the epoch a stage knows
        self.epoch_commits = 0  # tokens committed in the current epoch
        self.free_at = [0.0] * k  # dedicated devices: a crop makes the stage busy until then
        self.spans: list[Span] | None = [] if timeline else None
        self.cursor = RunCursor(sampler)
        self.runs: list[int] = []
        self.run_accepts = 0
        self.committed = 0
        self.next_index = 1
        self.done = env.event()
        shared = {d for d in costs.devices if costs.devices.count(d) > 1}
        pool = {d: simpy.Resource(env, capacity=1) for d in shared}
        self.device = [pool.get(d) for d in costs.devices]
        self.procs = [env.process(self._stage(s)) for s in range(k)]
        self.inbox[0].put(_Item(0.0, 0, 0))

    # ---- the stage process ---------------------------------------------------------------------
    def _stage(self, s: int):
        env, c, inbox = self.env, self.c, self.inbox[s]
        items, known, spans = inbox.items, self.known_epoch, self.spans
        last = s == c.k - 1
        dev = self.device[s]
        dur = c.busy_per_token(s)
        # Where this stage's output goes is decided at the start of each step (a flush arriving
        # earlier makes the receivers drop it): the hidden state after the layers and, at the
        # exit stage, the next draft after the EE head.
        gated = s == 0 and self.limit is not None
        down = None if last else self.inbox[s + 1]
        down_after = c.compute[s] + c.hop
        draft_to = self.inbox[0] if s == c.exit_stage else None
        draft_after = c.compute[s] + c.ee_head + (c.hop if s > 0 else 0.0)
        busy, epoch_work, current, started, free_at = (
            self.busy,
            self.epoch_work,
            self.current,
            self.started,
            self.free_at,
        )
        while True:
            if not items:
                inbox.waiter = env.event()
                yield inbox.waiter
                continue
            item = items.popleft()
            if not item.crop and item.epoch != known[s]:
                continue  # flushed before it started here
            slot = 0.0
            if gated and not item.crop:
                slot = yield from self._slot(item)
                if slot < 0.0:
                    continue  # flushed while it waited for a slot
            req = None
            if dev is not None:  # shared device: wait for the input, then win the device
                req = yield from self._acquire(s, item, dev, slot)
                if req is None:
                    continue
            now = env.now
            start = item.ready if item.ready > now else now
            if free_at[s] > start:  # a crop (dedicated device) still running
                start = free_at[s]
            if slot > start:  # the verdict that frees a slot is still on its way
                start = slot
            if gated and not item.crop:
                self.entered += 1
            current[s], started[s] = item, start
            if item.crop:
                step = c.flush
            else:
                step = dur
                if down is not None:
                    down.put(_Item(start + down_after, item.epoch, item.index))
                if draft_to is not None:
                    draft_to.put(_Item(start + draft_after, item.epoch, self.next_index))
                    self.next_index += 1
            try:
                yield env.timeout(start - now + step)
            except simpy.Interrupt:  # flushed mid-step: the work so far is wasted
                elapsed = max(0.0, env.now - start)
                busy[s] += elapsed
                self.wasted[s] += elapsed
                if spans is not None and elapsed > 0:
                    spans.append(Span(s, start, env.now, f"{_name(item)} (flushed)", "wasted"))
                continue
            finally:
                current[s] = None
                if req is not None and dev is not None:
                    dev.release(req)
            busy[s] += step
            if spans is not None:
                spans.append(
                    Span(s, start, start + step, _name(item), "crop" if item.crop else "compute")
                )
            if not item.crop:
                epoch_work[s] += step
                if last:
                    self._judge(item)

    def _slot(self, item: _Item):
        """Stage 1 may enter the q-th token of an epoch once the verdict of token q − M is
        back (its commit + one hop). Returns that time (0 when q < M), or −1 if a flush made
        the item stale while it waited for the commit."""
        m = self.limit
        assert m is not None
        while True:
            q = self.entered
            if q < m:
                return 0.0
            log = self.commit_log[self.known_epoch[0]]
            if len(log) > q - m:
                return log[q - m] + self.c.hop
            self.slot_waiter = self.env.event()
            yield self.slot_waiter
            if item.epoch != self.known_epoch[0]:
                return -1.0

    def _wake_slot(self) -> None:
        w = self.slot_waiter
        if w is not None:
            self.slot_waiter = None
            w.succeed()

    def _acquire(self, s: int, item: _Item, dev: simpy.Resource, not_before: float = 0.0):
        """Wait until the input is ready (and not before ``not_before``), then for the shared
        device. Returns the granted request, or None if a flush made the item stale
        meanwhile."""
        env, known = self.env, self.known_epoch
        ready = max(item.ready, not_before)
        if ready > env.now:
            yield env.timeout(ready - env.now)
        if not item.crop and item.epoch != known[s]:
            return None
        req = dev.request()
        yield req
        if not item.crop and item.epoch != known[s]:
            dev.release(req)
            return None
        return req

    # ---- verification ----------------------------------------------------------------------------
    def _judge(self, item: _Item) -> None:
        if self.limit is not None:
            self.commit_log[self.epoch].append(self.env.now)
            self._wake_slot()
        self.committed += 1
        self.epoch_commits += 1
        if self.committed >= self.n:
            self.done.succeed()
            return
        if self.cursor.judge():
            self.run_accepts += 1
            return
        self.runs.append(self.run_accepts)
        self.run_accepts = 0
        self._flush()

    def _flush(self) -> None:
        env, c = self.env, self.c
        self.epoch += 1
        epoch, k = self.epoch, c.k
        if self.limit is not None:
            self.commit_log[epoch] = []
        kept, self.epoch_commits = self.epoch_commits, 0
        self._close_epoch(k - 1, kept)
        self.known_epoch[k - 1] = epoch
        self._crop(k - 1, env.now)
        verified = _Item(0.0, epoch, self.next_index)
        self.next_index += 1

        def notify(_event: object = None) -> None:
            now = env.now
            for s in range(k - 1):
                self._close_epoch(s, kept)
                self.known_epoch[s] = epoch
                cur = self.current[s]
                if cur is not None and not cur.crop and cur.epoch != epoch:
                    self.procs[s].interrupt("flush")
                self._crop(s, now)
            if self.limit is not None:  # stage 1 now counts the new epoch's tokens
                self.entered = 0
                for old in [e for e in self.commit_log if e < epoch]:
                    del self.commit_log[old]
                self._wake_slot()
            verified.ready = now
            self.inbox[0].put(verified)

        if c.hop > 0:
            env.timeout(c.hop).callbacks.append(notify)
        else:
            notify()

    def _crop(self, s: int, now: float) -> None:
        """Stage s crops its KV cache from ``now``. On a shared device the crop is a job that
        must win the device; on a dedicated one it just delays the stage's next start (the
        stage is idle or abandoning stale work), which costs no event."""
        if self.device[s] is not None:
            self.inbox[s].put(_Item(now, self.epoch, -1, crop=True))
            return
        f = self.c.flush
        if f <= 0:
            return
        self.free_at[s] = now + f
        self.busy[s] += f
        if self.spans is not None:
            self.spans.append(Span(s, now, now + f, "crop", "crop"))

    def _close_epoch(self, s: int, kept: int) -> None:
        """A stage learns of a flush: what it finished for tokens beyond the ``kept`` committed
        ones of the old epoch was wasted (each token costs the stage exactly its step time)."""
        lost = self.epoch_work[s] - kept * self.c.busy_per_token(s)
        if lost > 1e-15:
            self.wasted[s] += lost
        self.epoch_work[s] = 0.0

    def run(self) -> EngineResult:
        env = self.env
        env.run(until=self.done)
        end = env.now
        for s in range(self.c.k):  # work in progress when the run ends still counts as busy
            if self.current[s] is not None:
                self.busy[s] += max(0.0, end - self.started[s])
        obs = observed_from_runs(self.runs, self.run_accepts)
        return EngineResult(
            self.n, end, obs, self.busy, self.wasted, len(self.runs), spans=self.spans
        )


def run_ppsd(
    costs: PpsdCosts,
    sampler: AcceptanceSampler,
    n_tokens: int,
    *,
    timeline: bool = False,
    limit: int | None = None,
) -> EngineResult:
    """Simulate ``n_tokens`` commits of PPSD; stops at the n-th commit. ``limit`` bounds the
    tokens in flight (None: unbounded)."""
    return _PpsdModel(costs, sampler, n_tokens, timeline, limit).run()
