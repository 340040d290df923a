"""Batched pipeline-parallel AR (PP-AR) on real layers: k stage processes, k micro-batches.

What a user does with k devices and many requests without speculation, and so the baseline a
batched PPSD must beat on the same devices. The parent process is stage 0 (embedding and its
layers); every other stage is a process of its own holding only its layers (one torch thread,
pinned to a core of its own when there are enough). The admitted sequences are split into k
micro-batches (*groups*, at most ⌈max_batch / k⌉ sequences each, the serving simulator's wave
schedule): while stage s computes one group's step, stage s − 1 computes the next group's, so
k groups keep k stages busy. A group has one step in the pipeline at a time; its tokens come
back from the last stage (final norm + LM head) and the group goes round again.

Continuous batching per group: when a group's step returns, its finished sequences leave it
(every stage drops their cache rows with the group's next step) and waiting requests join it
with one prefill step of their own (whole prompts, right-padded, as ``BatchedAR``). Every stage
keeps one ``RaggedCache`` per group. Greedy; every sequence's tokens equal its batch-1 AR
tokens (tested). A stage that dies or fails ends the run with a ``StageFailure`` naming it.

The stage processes, their messages and the parent's plumbing are ``StagePipeline``'s, shared
with batched PPSD (``pipeline_ppsd``: the same stages with drafts in flight); ``BatchedPPAR``
is the scheduler without drafts.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import select
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any, Self

import torch

from ppsd_real.backends.distributed import StageFailure, exit_description
from ppsd_real.backends.messages import Failed, Ready, pack_tensor, unpack_tensor
from ppsd_real.backends.transport import PipeTransport, spin_then_poll
from ppsd_real.batched.cache import RaggedCache
from ppsd_real.batched.decoders import ARRIVALS, Request, SeqState, Served, check_requests
from ppsd_real.batched.driver import BatchedDriver
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig, validate
from ppsd_sim.records.serving_record import RequestTimes

#: how long a stage may take to load its layers, and the parent to hear from a busy pipeline
START_TIMEOUT_S = 300.0
STEP_TIMEOUT_S = 300.0


# ---- what travels between stages --------------------------------------------------------------
@dataclass(frozen=True)
class GroupStep:
    """One group's step into the next stage: ``hidden`` (rows, n, d) packed, each
    row's first position, ``valid`` prompt lengths for a prefill (None: a decode step of one
    token per row), and ``keep``: the rows of the group's cache that stay (in order) before
    this step (finished sequences leave); a prefill's rows are appended after them."""

    run: int
    group: int
    step: int  # numbered per run (batched PPSD names dead steps by it: ``SkipSteps``)
    hidden: tuple | None  # ``messages.pack_tensor``; None: skipped upstream (keep only)
    starts: tuple[int, ...]
    valid: tuple[int, ...] | None
    keep: tuple[int, ...]


@dataclass(frozen=True)
class GroupTokens:
    """The last stage's greedy tokens for a group's step, one per row of that step."""

    run: int
    group: int
    step: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class GroupDrafts:
    """The exit stage's early-exit tokens (argmax) for a group's decode step, one per row:
    sent to the parent at once, on a link of its own (batched PPSD with the exit after stage 0)."""

    run: int
    group: int
    step: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class SkipSteps:
    """Steps every row of which a rejection made useless (batched PPSD): a stage that has not
    run one yet skips it (its ``keep`` still applies) and passes on only that."""

    run: int
    steps: tuple[int, ...]


@dataclass(frozen=True)
class Echo:
    """A hand-off probe: every stage unpacks and repacks ``hidden`` and passes it on, no layer
    runs; the last stage sends it back to the parent (``BatchedPPAR.hop_samples``)."""

    hidden: tuple


@dataclass(frozen=True)
class StopStages:
    """End of the pipeline: each stage passes it on and exits."""


# ---- one stage ----------------------------------------------------------------------------------
class _StageCaches:
    """A stage's caches, one per group of the current run (a new run starts empty)."""

    def __init__(self, d: BatchedDriver, gaps: bool = False) -> None:
        self.d, self.run, self.gaps = d, -1, gaps
        self.by_group: dict[int, RaggedCache] = {}

    def keep(self, msg: GroupStep) -> RaggedCache | None:
        """Apply ``msg.keep`` to its group's cache (rows that finished leave); that cache."""
        if msg.run != self.run:
            self.run = msg.run
            self.by_group = {}
        cache = self.by_group.get(msg.group)
        if cache is not None and list(msg.keep) != list(range(cache.rows)):
            cache.keep_rows(msg.keep)
        return cache

    def step(self, msg: GroupStep, start: int, stop: int, hidden: torch.Tensor) -> torch.Tensor:
        """Apply ``msg.keep``, run layers[start:stop] for the step, return their output."""
        cache = self.keep(msg)
        if msg.valid is None:
            assert cache is not None  # a decode step follows its group's prefill
            return self.d.run_layers(hidden, start, stop, cache, list(msg.starts))
        new = self.d.new_cache(len(msg.valid), self.gaps)
        out = self.d.run_layers(hidden, start, stop, new, 0, valid=list(msg.valid))
        if cache is None or cache.rows == 0:
            self.by_group[msg.group] = new
        else:
            cache.append(new)
        return out


@dataclass(frozen=True)
class StageJob:
    """What one stage process holds and does: layers[start:stop], the final head if last,
    the early-exit head if it is PPSD's exit stage (``ee_head``: a trained head file, None:
    the model's LM head), and the core it is pinned to."""

    model: ModelSpec
    rank: int
    start: int
    stop: int
    last: bool
    exit: bool = False
    ee_head: str | None = None
    cpu: int | None = None


@dataclass(frozen=True)
class StageLinks:
    """A stage process's connections: steps in, steps (or the last stage's tokens) out,
    failures to the parent; batched PPSD adds the exit stage's drafts to the parent and the
    parent's ``SkipSteps`` notices."""

    rx: Connection
    tx: Connection
    report: Connection
    drafts: Connection | None = None
    notices: Connection | None = None


def _stage_main(job: StageJob, links: StageLinks) -> None:
    """A stage process: load the model, keep layers[start:stop] (and its heads), then pass
    group steps on until told to stop. Failures go to the parent on ``links.report``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's (it stops us)
    rx, tx, report = links.rx, links.tx, links.report
    try:
        if job.cpu is not None:
            os.sched_setaffinity(0, {job.cpu})
        torch.set_num_threads(1)
        from ppsd_real.drafters import DrafterSpec, load_ee_head
        from ppsd_real.layers import LayerDriver, ModelParts
        from ppsd_real.model_loading import load_model

        parts = ModelParts.of(load_model(job.model))
        ee_head = None
        if job.exit:
            ee_head = load_ee_head(DrafterSpec(head_path=job.ee_head), parts.lm_head)
        start, stop = job.start, job.stop
        parts.layers = [m if start <= i < stop else None for i, m in enumerate(parts.layers)]
        parts.embed = None
        driver = BatchedDriver(LayerDriver(parts, range(start, stop)))
        caches = _StageCaches(driver, gaps=links.notices is not None)
        d = caches.d
        dead: set[tuple[int, int]] = set()  # (run, step) of steps to skip
        report.send(Ready(job.rank, os.getpid()))
        inbox = select.poll()
        inbox.register(rx.fileno(), select.POLLIN)
        spin = PipeTransport.SPIN_S if job.cpu is not None else 0.0
        while True:
            spin_then_poll(inbox, spin, None)
            msg = rx.recv()
            if isinstance(msg, StopStages):
                with contextlib.suppress(OSError):
                    tx.send(msg)
                break
            if isinstance(msg, Echo):
                tx.send(Echo(pack_tensor(unpack_tensor(msg.hidden, job.model.device))))
                continue
            if links.notices is not None:
                while links.notices.poll():
                    note = links.notices.recv()
                    dead = {x for x in dead if x[0] == note.run}
                    dead.update((note.run, j) for j in note.steps)
            if msg.hidden is None or (msg.run, msg.step) in dead:
                caches.keep(msg)  # a step nobody needs: the rows that leave still leave
                if not job.last:
                    tx.send(replace(msg, hidden=None))
                continue
            h = caches.step(msg, start, stop, unpack_tensor(msg.hidden, job.model.device))
            if not job.last:
                tx.send(replace(msg, hidden=pack_tensor(h)))
                if job.exit and msg.valid is None and links.drafts is not None:
                    ee = d.head(h, ee_head)[:, 0].tolist()
                    links.drafts.send(GroupDrafts(msg.run, msg.group, msg.step, tuple(ee)))
                continue
            if msg.valid is None:
                toks = d.head(h)[:, 0]
            else:
                rows = torch.arange(len(msg.valid))
                at = torch.tensor([v - 1 for v in msg.valid])
                toks = d.head(h[rows, at][:, None])[:, 0]
            tx.send(GroupTokens(msg.run, msg.group, msg.step, tuple(toks.tolist())))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        os._exit(0)  # the parent or a neighbour is gone: the parent reports what happened
    except BaseException as err:  # a bug: the parent names it, with the traceback
        first = str(err).splitlines()[0] if str(err) else ""
        with contextlib.suppress(OSError, ValueError):
            report.send(
                Failed(job.rank, f"{type(err).__name__}: {first}", details=traceback.format_exc())
            )
        os._exit(4)


# ---- the parent: stage 0 and the scheduler ------------------------------------------------------
@dataclass
class _Group:
    index: int
    rows: list[SeqState] = field(default_factory=list)  # the group's cache rows, in order
    busy: bool = False
    joining: list[SeqState] = field(default_factory=list)  # the prefill in flight

    @property
    def live(self) -> int:
        """Sequences of the group still generating (finished ones leave at its next step)."""
        return sum(1 for s in self.rows if s.left > 0)


class _RunState:
    """One run's requests: the queue, the places of a closed loop, every request's times."""

    def __init__(self, requests: list[Request], max_batch: int, arrivals: str) -> None:
        self.requests, self.arrivals = requests, arrivals
        n = len(requests)
        self.arrival, self.admitted, self.first, self.finish = ([0.0] * n for _ in range(4))
        self.seqs = [SeqState(i, r) for i, r in enumerate(requests)]
        self.queue = deque(self.seqs)
        self.free = deque([0.0] * max_batch)  # when each place became free (closed loop)
        self.seated = 0  # admitted and not finished
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def admit(self, room: int) -> list[SeqState]:
        new = [self.queue.popleft() for _ in range(min(room, len(self.queue)))]
        t = self.now()
        for s in new:
            place = self.free.popleft()
            self.arrival[s.i] = place if self.arrivals == "closed" else 0.0
            self.admitted[s.i] = t
        self.seated += len(new)
        return new

    def leave(self, s: SeqState, t: float) -> None:
        self.finish[s.i] = t
        self.free.append(t)
        self.seated -= 1
        s.res.time_s = t - self.admitted[s.i]

    def served(self, steps: int) -> Served:
        total = self.now()
        times = RequestTimes(
            tuple(self.arrival),
            tuple(self.admitted),
            tuple(self.first),
            tuple(self.finish),
            tuple(len(r.prompt) for r in self.requests),
            tuple(r.new_tokens for r in self.requests),
        )
        return Served([s.res for s in self.seqs], times, total, steps, 0)


class StagePipeline:
    """k − 1 stage processes behind the parent (stage 0) over ``scheme``'s stages: started and
    loaded once, then ``run`` many times by a subclass's scheduler; closed as a context
    manager. A stage that dies or fails ends the run with a ``StageFailure`` naming it."""

    kind = ""  # the scheme kind a subclass runs
    title = ""  # how failures name the engine

    def __init__(
        self,
        driver: BatchedDriver,
        model: ModelSpec,
        scheme: SchemeConfig,
        max_batch: int,
        arrivals: str = "batch",
        pin: bool = True,
        ee_head: str | None = None,
    ) -> None:
        if not isinstance(scheme, SchemeConfig) or scheme.kind != self.kind:
            raise ConfigError("scheme", f"{self.title} needs a {self.kind} scheme (its stages)")
        scheme.check_layers(driver.n_layers)
        self.max_batch = validate.integer("max_batch", max_batch, lo=1, hi=100_000)
        self.arrivals = validate.choice("arrivals", arrivals, ARRIVALS)
        self.d, self.scheme, self.ee_head = driver, scheme, ee_head
        self.k = scheme.n_stages
        self.cap = math.ceil(self.max_batch / self.k)  # sequences per group (micro-batch)
        stages = scheme.stages()
        self.stop0 = stages[0].stop
        self.steps = self.flushes = 0
        self._run = 0
        self._procs: list[Any] = []
        self._reports: list[Connection] = []
        self._notices: list[Connection] = []
        self._drafts: Connection | None = None
        self._caches = _StageCaches(driver)
        self._start(model, stages, pin, ee_head)

    # ---- processes ------------------------------------------------------------------------------
    def _start(self, model: ModelSpec, stages: tuple, pin: bool, ee_head: str | None) -> None:
        ctx = mp.get_context("spawn")
        cpus = sorted(os.sched_getaffinity(0))
        own = pin and model.device == "cpu" and len(cpus) >= self.k
        speculative = self.kind == "ppsd"
        # links: parent -> stage 1 -> ... -> stage k-1 -> parent
        pipes = [ctx.Pipe(duplex=False) for _ in range(self.k)]  # pipes[s]: into stage s+1
        self._tx = pipes[0][1]
        self._rx = pipes[-1][0]
        theirs: list[Connection] = []  # ends the children hold once started
        try:
            for s in range(1, self.k):
                rep_rx, rep_tx = ctx.Pipe(duplex=False)
                drafts = notices = None
                if speculative and stages[s].exit:
                    self._drafts, drafts = ctx.Pipe(duplex=False)
                    theirs.append(drafts)
                if speculative:
                    notices, note_tx = ctx.Pipe(duplex=False)
                    self._notices.append(note_tx)
                    theirs.append(notices)
                job = StageJob(
                    model,
                    s,
                    stages[s].start,
                    stages[s].stop,
                    stages[s].last,
                    speculative and stages[s].exit,
                    ee_head,
                    cpus[s % len(cpus)] if own else None,
                )
                links = StageLinks(pipes[s - 1][0], pipes[s][1], rep_tx, drafts, notices)
                p = ctx.Process(
                    target=_stage_main,
                    args=(job, links),
                    name=f"ppsd-{self.kind}-stage-{s}",
                    daemon=True,
                )
                p.start()
                rep_tx.close()
                self._procs.append(p)
                self._reports.append(rep_rx)
            for conn in theirs:
                conn.close()
            self._own = own
            # the tokens coming back: spun for (a core of its own), as the transports do
            self._spin = PipeTransport.SPIN_S if own else 0.0
            self._inbox = select.poll()
            self._inbox.register(self._rx.fileno(), select.POLLIN)
            if self._drafts is not None:
                self._inbox.register(self._drafts.fileno(), select.POLLIN)
            for s in range(1, self.k):  # the children hold these ends now
                pipes[s - 1][0].close()
                pipes[s][1].close()
            deadline = time.monotonic() + START_TIMEOUT_S
            ready: set[int] = set()
            while len(ready) < self.k - 1:
                for conn in self._wait(deadline, "starting"):
                    msg = self._recv(conn, "starting")
                    if isinstance(msg, Ready):
                        ready.add(msg.rank)
                    else:
                        self._fail(msg)
        except BaseException:
            self.close()
            raise

    def _wait(self, deadline: float, what: str) -> list[Connection]:
        """Reports or the pipeline's output ready to read; a stage that ended fails the run."""
        sentinels = {p.sentinel for p in self._procs}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._abort(
                    StageFailure(f"{self.title}: no reply from the stages while {what}")
                )
            outs = [self._rx] if self._drafts is None else [self._drafts, self._rx]
            got = wait([*outs, *self._reports, *sentinels], timeout=min(left, 1.0))
            if any(x in sentinels for x in got):
                self._explain(what)
            ready = [c for c in got if c in outs or c in self._reports]
            if ready:
                return ready

    def _recv(self, conn: Connection, what: str) -> Any:
        try:
            return conn.recv()
        except (EOFError, OSError):  # a stage hung up: find the one that ended first
            self._explain(what)
            raise AssertionError("unreachable") from None

    def _explain(self, what: str) -> None:
        """A stage ended or a link closed: raise a StageFailure naming the stage to blame —
        the one that reported a failure, else one killed or failing, not those that merely
        lost their link to it (they exit with code 0)."""
        deadline = time.monotonic() + 5.0
        while True:
            for r in self._reports:
                if r.poll():
                    with contextlib.suppress(EOFError, OSError):
                        self._fail(r.recv())
            ended = [(s + 1, p) for s, p in enumerate(self._procs) if p.exitcode is not None]
            blamed = [(s, p) for s, p in ended if p.exitcode != 0]
            if blamed or (ended and time.monotonic() > deadline):
                rank, p = (blamed or ended)[0]
                raise self._abort(
                    StageFailure(
                        f"{self.title}: stage {rank} (pid {p.pid}) {exit_description(p.exitcode)} "
                        f"while {what}",
                        (rank,),
                    )
                )
            if time.monotonic() > deadline:
                raise self._abort(StageFailure(f"{self.title}: lost the stages while {what}"))
            time.sleep(0.02)

    def _fail(self, msg: Any) -> None:
        if isinstance(msg, Failed):
            raise self._abort(
                StageFailure(
                    f"{self.title}: stage {msg.rank} failed: {msg.reason}",
                    (msg.rank,),
                    msg.details,
                )
            )
        raise self._abort(StageFailure(f"{self.title}: unexpected report {msg!r}"))

    def _abort(self, err: StageFailure) -> StageFailure:
        self.close()
        return err

    def close(self) -> None:
        """Stop the stage processes (politely, then for good). Safe to call twice."""
        procs, self._procs = self._procs, []
        if procs:
            with contextlib.suppress(OSError, ValueError):
                self._tx.send(StopStages())
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """The stage processes (stages 1 .. k − 1)."""
        return [int(p.pid) for p in self._procs]

    def _pin(self) -> None:
        """Stage 0 on a core of its own while it runs (the other stages have theirs)."""
        self._pinned = None
        cpus = sorted(os.sched_getaffinity(0))
        if self._own:
            os.sched_setaffinity(0, {cpus[0]})
            self._pinned = set(cpus)

    def _unpin(self) -> None:
        if self._pinned:
            os.sched_setaffinity(0, self._pinned)
        self._pinned = None

    def _keep(self, g: _Group) -> tuple[int, ...]:
        """The group's rows that stay (finished sequences leave before its next step)."""
        keep = tuple(j for j, s in enumerate(g.rows) if s.left > 0)
        g.rows = [g.rows[j] for j in keep]
        return keep

    def _send(
        self,
        msg: GroupStep,
        h: torch.Tensor,
    ) -> None:
        """Stage 0's output of ``msg`` on to stage 1."""
        self.steps += 1
        try:
            self._tx.send(replace(msg, hidden=pack_tensor(h)))
        except OSError:  # BrokenPipeError included: stage 1 is gone
            self._explain("sending a step")

    def _prefill(self, g: _Group, new: list[SeqState]) -> int:
        """Stage 0 of one prefill step over the joining sequences' whole prompts."""
        keep = self._keep(g)
        lens = [len(s.prompt) for s in new]
        width = max(lens)
        ids = [list(s.prompt) + [s.prompt[-1]] * (width - len(s.prompt)) for s in new]
        msg = GroupStep(self._run, g.index, self.steps, None, (0,) * len(new), tuple(lens), keep)
        h = self._caches.step(msg, 0, self.stop0, self.d.embed(ids))
        g.joining = new
        self._send(msg, h)
        return msg.step

    def hop_samples(self, rows: int = 1, repeats: int = 200, warmup: int = 20) -> list[float]:
        """One hand-off of ``rows`` rows of one token's hidden state between stage processes,
        as a group step makes it (pack, send, the receiver's wake-up or spin, receive, unpack):
        each sample is a trip round all k stages, no layer run, divided by k."""
        validate.integer("rows", rows, lo=1, hi=100_000)
        width = int(self.d.parts.config.hidden_size)
        h = torch.zeros((rows, 1, width), dtype=self.d.dtype, device=self.d.device)
        out: list[float] = []
        self._pin()
        try:
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                self._tx.send(Echo(pack_tensor(h)))
                msg = self._back(Echo, "timing hand-offs")
                unpack_tensor(msg.hidden, str(self.d.device))
                if i >= warmup:
                    out.append((time.perf_counter() - t0) / self.k)
        finally:
            self._unpin()
        return out

    def _ready(self, what: str, block: bool = True) -> list[Connection]:
        """Connections with something to read, the exit stage's drafts before the last
        stage's output (a draft is sent before its step's verdict exists): checked at once,
        then (``block``) spun for on a core of its own and waited for with every stage
        watched: a failure report or a stage that ended raises a StageFailure naming it."""
        outs = [self._rx] if self._drafts is None else [self._drafts, self._rx]
        events = spin_then_poll(self._inbox, self._spin if block else 0.0, None if block else 0)
        if events:
            fds = {fd for fd, _ in events}
            return [c for c in outs if c.fileno() in fds]
        if not block:
            return []
        deadline = time.monotonic() + STEP_TIMEOUT_S
        ready = self._wait(deadline, what)
        return sorted(ready, key=lambda c: outs.index(c) if c in outs else -1)

    def _take(self, conn: Connection, what: str) -> Any:
        """One message from ``conn``; a stage's failure report raises its StageFailure."""
        msg = self._recv(conn, what)
        if conn in self._reports:
            self._fail(msg)
        return msg

    def _back(self, kind: type[Any], what: str) -> Any:
        """The next ``kind`` message out of the pipeline (tokens: this run's; see ``_ready``)."""
        while True:
            for conn in self._ready(what):
                msg = self._take(conn, what)
                if isinstance(msg, kind) and getattr(msg, "run", self._run) == self._run:
                    return msg


class BatchedPPAR(StagePipeline):
    """Continuous-batching greedy PP-AR over ``scheme``'s stages (see the module docstring).
    Build once (the stage processes start and load their layers), ``run`` many times, close
    (a context manager)."""

    name = "pp_ar"
    kind = "pp_ar"
    title = "batched PP-AR"

    # ---- the engine -------------------------------------------------------------------------------
    def run(self, requests: list[Request]) -> Served:
        """Decode every request (see the module docstring); timestamps from the first step."""
        check_requests(requests, self.max_batch, "max_batch")
        if not self._procs:
            raise RuntimeError(f"{self.title}: the stages were closed")
        self.steps = 0
        self._run += 1
        st = _RunState(requests, self.max_batch, self.arrivals)
        groups = [_Group(g) for g in range(self.k)]
        peak = 0  # groups in the pipeline at once: k when there is work for k groups
        self._pin()
        try:
            while st.queue or any(g.busy or g.live for g in groups):
                for g in groups:  # every idle group with work goes round once more
                    if not g.busy:
                        self._dispatch(g, st)
                peak = max(peak, sum(g.busy for g in groups))
                back = self._back(GroupTokens, "decoding")
                self._collect(groups[back.group], st, back)
        finally:
            self._unpin()
        served = st.served(self.steps)
        served.extra["groups_in_flight_peak"] = peak
        return served

    def _dispatch(self, g: _Group, st: _RunState) -> None:
        """Admit waiting requests into the group (a prefill step) or step its sequences."""
        room = min(self.cap - g.live, self.max_batch - st.seated)
        if st.queue and room > 0:
            self._prefill(g, st.admit(room))
            g.busy = True
        elif g.live:
            self._decode(g)

    def _collect(self, g: _Group, st: _RunState, msg: GroupTokens) -> None:
        """A group's tokens are back: commit them; its finished sequences leave."""
        t = st.now()
        g.busy = False
        if g.joining:
            for s, tok in zip(g.joining, msg.tokens, strict=True):
                s.commit([tok])
                st.first[s.i] = t
            g.rows += g.joining
            done = g.joining
            g.joining = []
        else:
            for s, tok in zip(g.rows, msg.tokens, strict=True):
                s.commit([tok])
            done = g.rows
        for s in done:
            if s.left == 0:
                st.leave(s, t)

    def _decode(self, g: _Group) -> None:
        """Stage 0 of one decode step: the next token of every sequence in the group."""
        keep = self._keep(g)
        if not g.rows:
            return
        starts = tuple(s.pending for s in g.rows)
        msg = GroupStep(self._run, g.index, self.steps, None, starts, None, keep)
        h = self._caches.step(msg, 0, self.stop0, self.d.embed([[s.out[-1]] for s in g.rows]))
        self._send(msg, h)
        g.busy = True
