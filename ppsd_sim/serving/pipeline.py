"""SimPy model of the pipeline schemes under load: PP-AR and PPSD on k stages, one device each.

Entities: one process per stage with an inbox; tokens (one sequence's input at one position,
carrying the epoch of that sequence) and prefill jobs (the prompts admitted together). A stage
step takes the inbox's ready work as one micro-batch — a prefill job alone, or at most one
token of each sequence — and costs ``StageSteps`` at that load (tokens in the step, KV tokens
its sequences have cached). Hidden states go on one hop after the stage's layers; the exit
stage (PPSD) then drafts each sequence's next token with the EE head, which returns to stage 1;
the last stage runs the final head and each sequence's verdict:

- PP-AR: the token is committed and the sequence's next token goes back to stage 1 (one hop);
  only one token of a sequence is ever in the pipeline. Under the default policy stage 1 takes
  at most ``microbatch`` (default ceil(admitted sequences / k)) tokens per step, oldest request
  first, so k micro-batches fill the k stages (the usual pipeline-parallel serving schedule).
- PPSD: the verdict judges that sequence's draft behind it (its own acceptance stream): accepted,
  nothing stops; rejected, only that sequence's younger tokens are flushed (its epoch moves on;
  the last stage knows at once, every other stage one hop later and then crops that sequence's
  cache; a stage step whose every token is flushed is abandoned, one with live tokens of other
  sequences runs on) and its verified token goes to stage 1. How stage-1 slots are shared
  between sequences and drafts is ``ServingSettings.policy`` (``POLICY_HELP``). A sequence
  never has more than ``scheme.inflight_limit`` tokens in flight (entered, verdict pending).

With one request this is ``engines.simpy_ppsd`` step for step (tested to 1e-9); stages sharing
a device are not modelled here.
"""

from __future__ import annotations

import math
from collections import deque
from functools import partial

import simpy

from ppsd_sim.acceptance.sampler import AcceptanceSampler, RunCursor
from ppsd_sim.engines.result import observed_from_runs
from ppsd_sim.records.run_record import AcceptanceObserved
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.serving.iteration import ModelResult
from ppsd_sim.serving.requests import Realised
from ppsd_sim.serving.scheduler import Scheduler
from ppsd_sim.serving.step_costs import StageSteps

INF = math.inf


class _Seq:
    __slots__ = (
        "blocked",
        "commits",
        "cursor",
        "done",
        "epoch",
        "flight",
        "i",
        "known",
        "need",
        "prompt",
        "run_acc",
        "runs",
    )

    def __init__(self, i: int, prompt: int, need: int, k: int) -> None:
        self.i = i
        self.prompt = prompt
        self.need = need  # decode commits to make (output tokens - 1)
        self.commits = 0
        self.epoch = 0
        self.known = [0] * k  # the epoch each stage has been told about
        self.flight: deque[_Tok] = deque()  # entered stage 1, verdict pending, not flushed
        self.cursor: RunCursor | None = None
        self.done = False
        self.runs: list[int] = []
        self.run_acc = 0
        self.blocked = False  # a token waits at stage 1 for the in-flight limit


class _Tok:
    __slots__ = ("epoch", "ready", "seq", "t", "w")

    def __init__(self, seq: _Seq, t: int, epoch: int, ready: float, k: int) -> None:
        self.seq = seq
        self.t = t  # position after the prompt: token t's verdict is decode commit t + 1
        self.epoch = epoch
        self.ready = ready
        self.w = [0.0] * k  # finished work per stage (wasted if flushed later)


class _Prefill:
    __slots__ = ("ids", "n", "ready", "tokens")

    def __init__(self, ids: list[int], tokens: int, ready: float) -> None:
        self.ids = ids
        self.n = len(ids)
        self.tokens = tokens
        self.ready = ready


class _Step:
    __slots__ = ("abandoned", "end", "live", "start", "tok_of")

    def __init__(self, start: float, end: float, tok_of: dict[int, _Tok] | None, live: int) -> None:
        self.start = start
        self.end = end
        self.tok_of = tok_of  # sequence number -> its token in this step (PPSD)
        self.live = live  # tokens the stage still believes live
        self.abandoned = False


class PipelineModel:
    def __init__(
        self,
        env: simpy.Environment,
        sched: Scheduler,
        steps: StageSteps,
        reqs: Realised,
        settings: ServingSettings,
        speculative: bool,
        inflight_limit: int,
    ) -> None:
        self.env, self.sched, self.c, self.reqs = env, sched, steps, reqs
        self.k = k = steps.k
        self.spec = speculative
        self.policy = settings.policy
        self.microbatch = settings.microbatch
        self.limit = inflight_limit if speculative else 1
        self.inbox: list[list] = [[] for _ in range(k)]
        self.waiter: list[simpy.Event | None] = [None] * k
        self.wait_until = [INF] * k
        self.cur: list[_Step | None] = [None] * k
        self.free_at = [0.0] * k
        self.busy = [0.0] * k
        self.wasted = [0.0] * k
        self.procs: list[simpy.Process] = []
        self.flushes = 0
        self.steps = 0
        self.max_t = 0
        self.max_flight = 0
        self.seqs: list[_Seq] = []
        sched.on_idle_wake.append(lambda: self._wake(0, -INF))

    # ---- plumbing ------------------------------------------------------------------------
    def _put(self, s: int, item) -> None:
        self.inbox[s].append(item)
        self._wake(s, item.ready)

    def _wake(self, s: int, ready: float) -> None:
        """Stage s, if asleep, looks again when work ready at ``ready`` is (no event is spent
        waking it early: it is rung at that time)."""
        w = self.waiter[s]
        if w is None or ready >= self.wait_until[s]:
            return
        now = self.env.now
        if ready <= now:
            self.waiter[s] = None
            self.wait_until[s] = INF
            w.succeed()
            return
        self.wait_until[s] = ready
        self.env.timeout(ready - now).callbacks.append(partial(self._ring, s, w, ready))

    def _ring(self, s: int, ev: simpy.Event, until: float, _e: object) -> None:
        if self.waiter[s] is ev and self.wait_until[s] == until:
            self.waiter[s] = None
            self.wait_until[s] = INF
            ev.succeed()

    def _sleep(self, s: int, until: float) -> simpy.Event:
        ev = self.env.event()
        self.waiter[s] = ev
        self.wait_until[s] = until
        if until < INF:
            self.env.timeout(until - self.env.now).callbacks.append(
                partial(self._ring, s, ev, until)
            )
        return ev

    # ---- the stage process ---------------------------------------------------------------
    def stage(self, s: int):
        env, c, inbox = self.env, self.c, self.inbox[s]
        last = s == self.k - 1
        is_exit = s == c.exit_stage
        entry = s == 0
        limit = self.limit
        free_at = self.free_at
        while True:
            if entry:
                new = self.sched.admit()
                if new:
                    tokens = int(sum(int(self.reqs.prompt[i]) for i in new))
                    if inbox and inbox[0].__class__ is _Prefill:  # not started yet: join it
                        inbox[0].ids.extend(new)
                        inbox[0].n += len(new)
                        inbox[0].tokens += tokens
                    else:
                        inbox.insert(0, _Prefill(new, tokens, env.now))
            # one pass: drop what this stage knows to be flushed, find the earliest work
            keep, earliest, head, dropped = [], INF, None, False
            for it in inbox:
                if it.__class__ is _Tok:
                    q = it.seq
                    if q.done or it.epoch != q.known[s]:
                        dropped = True
                        continue
                    keep.append(it)
                    if entry and len(q.flight) >= limit:
                        q.blocked = True
                        continue
                else:
                    keep.append(it)
                if it.ready < earliest:
                    earliest, head = it.ready, it
            if dropped:
                inbox[:] = keep
            if head is None:
                yield self._sleep(s, INF)
                continue
            now = env.now
            start = max(now, free_at[s], earliest)
            if start > now:
                yield self._sleep(s, start)
                continue
            if head.__class__ is _Prefill:
                inbox.remove(head)
                yield from self._prefill_step(s, head, last)
                continue
            ready, rest, seen = [], [], set()
            for it in inbox:
                if (
                    it.__class__ is _Tok
                    and it.ready <= now
                    and it.seq.i not in seen
                    and not (entry and len(it.seq.flight) >= limit)
                ):
                    seen.add(it.seq.i)  # at most one token per sequence (its oldest)
                    ready.append(it)
                else:
                    rest.append(it)
            if entry:
                batch = self._select(ready)
                if len(batch) < len(ready):
                    taken = set(map(id, batch))
                    rest = [it for it in inbox if id(it) not in taken]
            else:
                batch = ready
            inbox[:] = rest
            yield from self._token_step(s, batch, last, is_exit)

    def _select(self, ready: list[_Tok]) -> list[_Tok]:
        """Stage 1's slot policy (``POLICY_HELP``), the same for PP-AR and PPSD so that a
        scheme and its twin are scheduled alike: ``greedy`` takes every sequence's waiting
        token; ``real_first`` at most ``microbatch`` (default the PP-AR wave, ceil(admitted
        sequences / k)), oldest request first, verified tokens before drafts."""
        if self.policy == "greedy":
            return ready
        cap = self.microbatch or max(1, -(-self.sched.running // self.k))
        if len(ready) <= cap:
            return ready
        if self.spec:
            ready.sort(key=lambda it: (it.t > it.seq.commits, it.seq.i))
        else:
            ready.sort(key=lambda it: it.seq.i)
        return ready[:cap]

    def _prefill_step(self, s: int, job: _Prefill, last: bool):
        env, c = self.env, self.c
        start = env.now
        comp = c.compute(s, job.tokens, 0)
        dur = comp + (c.final(job.n) if last else 0.0)
        self.max_t = max(self.max_t, job.tokens)
        if not last:
            job.ready = start + comp + c.send(job.tokens)
            self._put(s + 1, job)
        self.cur[s] = _Step(start, start + dur, None, 0)
        try:
            yield env.timeout(dur)
        finally:
            self.cur[s] = None
        self.busy[s] += dur
        self.steps += 1
        if last:
            for i in job.ids:
                self._first_token(i)

    def _first_token(self, i: int) -> None:
        sched, k = self.sched, self.k
        sched.first_token(i)
        need = int(self.reqs.output[i]) - 1
        if need == 0:
            sched.complete(i)
            return
        q = _Seq(i, int(self.reqs.prompt[i]), need, k)
        if self.spec:
            acc = self.reqs.acceptance[i]
            assert acc is not None  # simulate.prepare refuses PPSD without one
            q.cursor = RunCursor(AcceptanceSampler(acc, self.reqs.seeds[i]))
        self.seqs.append(q)
        self._put(0, _Tok(q, 0, 0, self.env.now + self.c.hop_s, k))

    def _token_step(self, s: int, batch: list[_Tok], last: bool, is_exit: bool):
        env, c, spec = self.env, self.c, self.spec
        start = env.now
        T = len(batch)
        K = 0
        for it in batch:
            K += it.seq.prompt + it.t
        comp = c.compute(s, T, K)
        ee = c.ee(T) if is_exit else 0.0
        dur = comp + ee + (c.final(T) if last else 0.0)
        if self.max_t < T:
            self.max_t = T
        if s == 0:
            for it in batch:
                q = it.seq
                if it.epoch == q.epoch:  # (a stale token stage 1 was not told about is not)
                    q.flight.append(it)
                    if len(q.flight) > self.max_flight:
                        self.max_flight = len(q.flight)
        if not last:
            down = start + comp + c.send(T)
            for it in batch:
                it.ready = down
            self.inbox[s + 1].extend(batch)
            self._wake(s + 1, down)
        if is_exit:
            back = start + comp + ee + (c.hop_s if s > 0 else 0.0)
            k = self.k
            drafts = [
                _Tok(it.seq, it.t + 1, it.epoch, back, k)
                for it in batch
                if it.t + 1 < it.seq.need  # tokens past the request's end are never drafted
            ]
            if drafts:
                self.inbox[0].extend(drafts)
                self._wake(0, back)
        step = _Step(start, start + dur, {it.seq.i: it for it in batch} if spec else None, T)
        self.cur[s] = step
        try:
            yield env.timeout(dur)
        except simpy.Interrupt:  # every token in the step was flushed: abandon it
            elapsed = env.now - start
            self.busy[s] += elapsed
            self.wasted[s] += elapsed
            return
        finally:
            self.cur[s] = None
        self.busy[s] += dur
        self.steps += 1
        if spec:
            share = dur / T
            for it in batch:
                q = it.seq
                if q.done or it.epoch != q.epoch:
                    self.wasted[s] += share
                else:
                    it.w[s] += share
        if last:
            for it in batch:
                q = it.seq
                if not q.done and it.epoch == q.epoch:
                    self._verdict(q, it)

    # ---- verdicts, flushes ---------------------------------------------------------------
    def _verdict(self, q: _Seq, it: _Tok) -> None:
        q.flight.popleft()  # the oldest token in flight: stages keep a sequence's order
        q.commits += 1
        if q.commits >= q.need:
            # no younger token of q exists: drafts past the request's end are never made
            q.done = True
            self.sched.complete(q.i)
            return
        if not self.spec:
            it.t += 1  # PP-AR: the committed token is the sequence's next input
            it.ready = self.env.now + self.c.hop_s
            self._put(0, it)
            return
        assert q.cursor is not None  # every PPSD sequence has one
        if q.cursor.judge():
            q.run_acc += 1
            if q.blocked:  # one fewer in flight: its waiting draft may enter now
                q.blocked = False
                self._wake(0, -INF)
            return
        q.runs.append(q.run_acc)
        q.run_acc = 0
        self.flushes += 1
        self._drop(q)
        self._crop(self.k - 1, self.env.now)
        self._notify(q, _Tok(q, it.t + 1, q.epoch, 0.0, self.k))

    def _drop(self, q: _Seq) -> None:
        """Flush q's tokens in flight: their finished work is wasted; new epoch."""
        q.epoch += 1
        q.known[self.k - 1] = q.epoch
        q.blocked = False
        wasted = self.wasted
        for tok in q.flight:
            for s, w in enumerate(tok.w):
                if w:
                    wasted[s] += w
        q.flight.clear()

    def _notify(self, q: _Seq, verified: _Tok) -> None:
        """Every stage but the last learns of q's new epoch one hop later: steps left with no
        live token are abandoned, caches are cropped (a flush), the verified token enters."""
        env, k = self.env, self.k
        epoch = q.epoch

        def tell(_e: object = None) -> None:
            now = env.now
            for s in range(k - 1):
                q.known[s] = epoch
                step = self.cur[s]
                if step is not None and step.tok_of and not step.abandoned:
                    tok = step.tok_of.get(q.i)
                    if tok is not None and tok.epoch != epoch:
                        step.tok_of.pop(q.i)
                        step.live -= 1
                        if step.live == 0:
                            step.abandoned = True
                            step.end = now
                            self.procs[s].interrupt("flush")
                self._crop(s, now)
            verified.ready = now
            self._put(0, verified)

        if self.c.hop_s > 0:
            env.timeout(self.c.hop_s).callbacks.append(tell)
        else:
            tell()

    def _crop(self, s: int, now: float) -> None:
        f = self.c.flush
        if f <= 0:
            return
        step = self.cur[s]
        after = step.end if step is not None and not step.abandoned else now
        self.free_at[s] = max(self.free_at[s], now, after) + f
        self.busy[s] += f

    # ---- run -----------------------------------------------------------------------------
    def run(self) -> ModelResult:
        env = self.env
        self.procs = [env.process(self.stage(s)) for s in range(self.k)]
        env.run(until=self.sched.all_done)
        end = env.now
        for s in range(self.k):  # work in progress when the run ends still counts as busy
            step = self.cur[s]
            if step is not None:
                self.busy[s] += max(0.0, end - step.start)
        obs = None
        if self.spec:
            judged = accepted = 0
            for q in self.seqs:
                o = observed_from_runs(q.runs, q.run_acc)
                judged += o.judged
                accepted += o.accepted
            obs = AcceptanceObserved(judged, accepted)
        return ModelResult(
            self.busy,
            self.wasted,
            self.flushes,
            self.steps,
            obs,
            max_step_tokens=self.max_t,
            max_inflight=self.max_flight,
        )
