"""One OS process per PPSD stage, each holding only its layers and cache, one thread each.

The parent starts the stages once (``DistributedBackend`` is a context manager), sends each run
as a job (``backends.messages``) and collects the replies. It watches every stage process:

- a stage that dies fails the run at once with a ``StageFailure`` naming it and how it ended
  (killed by which signal, or its exit code); the stages that merely lost their link to it are
  not blamed;
- every stage beats a heartbeat (a shared timestamp, ``HEARTBEAT_S``) from a thread of its
  own; one whose beat stops for ``hang_s`` during a job is hung (e.g. stopped by SIGSTOP) and
  named alone, within seconds;
- a stage that hears nothing for ``timeout_s`` reports itself silent (a stage-logic deadlock).

Then every stage process is terminated (then killed) so that none is left behind. Stage
processes ignore SIGINT: Ctrl-C is the parent's to handle (it stops them, quietly), and they
never print tracebacks: what went wrong travels in a ``Failed`` reply.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ppsd_real.backends.base import MeasurableBackend, PeerLost, ProcessTransport, require_ppsd
from ppsd_real.backends.messages import (
    Done,
    Failed,
    Forward,
    HopJob,
    HopResult,
    Job,
    LatencyJob,
    LatencyResult,
    Quit,
    Ready,
    Reply,
    RunJob,
)
from ppsd_real.backends.transport import TRANSPORTS
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig, StageSpec

HEARTBEAT_S = 0.2  # a stage's heartbeat period
# exit codes of a stage process that stopped on its own (after a ``Failed`` reply)
EXIT_PEER_LOST, EXIT_FAILED, EXIT_SILENT = 3, 4, 5


class StageFailure(RuntimeError):
    """A stage process died or hung; the run was aborted and all stages stopped. ``stages``:
    the stages to blame; ``details``: a stage's own traceback, when it failed with an error."""

    def __init__(self, message: str, stages: tuple[int, ...] = (), details: str = "") -> None:
        super().__init__(message)
        self.stages, self.details = stages, details


class _Silent(Exception):
    """Raised inside a stage that heard nothing for too long."""


@dataclass(frozen=True)
class PipelineSpec:
    """What every stage process needs to build itself: the model, the scheme (its stages'
    geometry and roles, ``SchemeConfig.stages()``), the transport and the EE head."""

    model: ModelSpec
    scheme: SchemeConfig
    transport: str = "pipe"
    threads: int = 1
    pin: bool = True
    head_path: str | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(
                "transport", f"must be one of {tuple(TRANSPORTS)}, got {self.transport!r}"
            )
        require_ppsd(self.scheme)

    @property
    def k(self) -> int:
        return self.scheme.n_stages


# ---- inside a stage process ---------------------------------------------------------------


def _name_process(name: str) -> None:
    """What ``ps`` shows for this process (Linux; best effort)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as fh:
        fh.write(name[:15])


def _heartbeat(beats: Any, rank: int) -> None:
    def beat() -> None:
        while True:
            beats[rank] = time.monotonic()
            time.sleep(HEARTBEAT_S)

    threading.Thread(target=beat, daemon=True, name="heartbeat").start()


class StageServer:
    """One stage process's state: its layers (only its own), head, transport; one handler per
    job type."""

    def __init__(self, spec: PipelineSpec, stage: StageSpec, link: Any, silence_s: float) -> None:
        from ppsd_real.drafters import load_ee_head
        from ppsd_real.layers import LayerDriver, ModelParts
        from ppsd_real.model_loading import load_model

        self.spec, self.stage, self.silence_s = spec, stage, silence_s
        k, rank = spec.k, stage.index
        cpus = sorted(os.sched_getaffinity(0))
        own_core = spec.pin and spec.model.device == "cpu" and len(cpus) >= k
        if own_core:
            # One core per stage: left to itself the scheduler often wakes a receiver on the
            # sender's core, and both stages then crawl (measured: ~2x slower per stage).
            os.sched_setaffinity(0, {cpus[rank % len(cpus)]})
        model = load_model(spec.model)
        parts = ModelParts.of(model)
        parts.layers = [m if i in stage.layers else None for i, m in enumerate(parts.layers)]
        if not stage.first:
            parts.embed = None
        self.ee_head = None
        if stage.exit and spec.head_path:
            self.ee_head = load_ee_head(DrafterSpec(head_path=spec.head_path), parts.lm_head)
        del model
        self.parts = parts
        self.driver = LayerDriver(parts, stage.layers)
        transport_cls: type[ProcessTransport] = TRANSPORTS[spec.transport]
        self.transport = transport_cls.connect(rank, k, link, spec.model.device, own_core)

    def serve(self, parent: Connection) -> None:
        handlers: dict[type, Any] = {RunJob: self.run, HopJob: self.hop, LatencyJob: self.latency}
        while True:
            job: Job = parent.recv()
            if isinstance(job, Quit):
                break
            parent.send(handlers[type(job)](job))
        self.transport.close()

    def run(self, job: RunJob) -> Done:
        """One generation: stage 0 drives it (``Controller``), the others follow messages."""
        from ppsd_real.decoders.ppsd import Controller, Stage
        from ppsd_real.drafters import Drafter

        rank = self.stage.index
        st: Stage
        if self.stage.first:
            vocab = int(self.parts.lm_head.weight.shape[0])
            drafter = Drafter(job.drafter, vocab, job.reference)
            st = Controller(
                self.spec.scheme,
                self.driver,
                self.transport,
                drafter,
                job.prompt,
                job.max_new_tokens,
                self.ee_head,
                job.epoch0,
                job.sampling,
            )
        else:
            st = Stage(
                self.stage, self.driver, self.transport, self.ee_head, job.epoch0, job.sampling
            )
        t0 = time.perf_counter()
        if isinstance(st, Controller):
            st.start_run()
        quiet_since = time.perf_counter()
        while not st.done:
            if st.step(0.5):
                quiet_since = time.perf_counter()
            elif time.perf_counter() - quiet_since > self.silence_s:
                raise _Silent(f"stage {rank} heard nothing for {self.silence_s:.0f} s mid-run")
        elapsed = time.perf_counter() - t0
        summary: dict[str, Any] = {**st.summary(), "elapsed_s": elapsed}
        if isinstance(st, Controller):
            summary["time_s"] = elapsed
            return Done(
                rank,
                summary,
                st.out[: job.max_new_tokens],
                st.trace,
                st.positions,
                st.flushes,
                st.expected,
            )
        return Done(rank, summary)

    def hop(self, job: HopJob) -> HopResult:
        """Round trips 0 -> 1 -> 0 of a one-token hidden state of the model's width, dtype and
        device (what a real hand-off carries); stage 0 returns the one-way times."""
        import torch

        rank, t = self.stage.index, self.transport
        samples: list[float] = []
        if rank > 1:
            return HopResult(rank, samples)
        width = int(self.parts.config.hidden_size)
        payload = torch.zeros(1, 1, width, dtype=self.driver.dtype, device=self.driver.device)
        for _ in range(job.repeats):
            if rank == 0:
                t0 = time.perf_counter()
                t.send(1, Forward(0, 0, [0], payload))
                self._receive()
                samples.append((time.perf_counter() - t0) / 2)
            else:
                t.send(0, self._receive())
        return HopResult(rank, samples)

    def _receive(self) -> Any:
        end = time.monotonic() + self.silence_s
        while time.monotonic() < end:
            msg = self.transport.recv(0.5)
            if msg is not None:
                return msg
        raise _Silent(f"stage {self.stage.index} heard nothing for {self.silence_s:.0f} s")

    def latency(self, job: LatencyJob) -> LatencyResult:
        """Time this stage's own decode step, layer by layer, inside its own process (its
        working set only: the per-stage context), sampling from ``t_start`` for ``window_s``
        seconds on the shared monotonic clock, so stages asked together really run at once."""
        import torch

        st, d, ctx = self.stage, self.driver, job.context_len
        cache = d.new_cache()
        if st.first:
            h = d.embed(list(range(1, ctx + 1)))
        else:
            width = int(self.parts.config.hidden_size)
            gen = torch.Generator().manual_seed(st.index)
            h = torch.randn(1, ctx, width, generator=gen).to(device=d.device, dtype=d.dtype)
        h = d.run_layers(h, st.start, st.stop, cache, 0)
        x1 = h[:, -1:].clone()
        layers: list[list[float]] = [[] for _ in st.layers]
        heads: list[float] = []
        embed: list[float] = []
        clock, sync = time.perf_counter, d.sync  # sync: a GPU's queued work (free on CPU)
        sync()
        while clock() < job.t_start:
            pass
        while clock() < job.t_start + job.window_s:
            x = x1
            if st.first:
                t0 = clock()
                d.embed([5])
                sync()
                embed.append(clock() - t0)
            for j, i in enumerate(st.layers):
                t0 = clock()
                x = d.run_layers(x, i, i + 1, cache, ctx)
                sync()
                layers[j].append(clock() - t0)
            if st.exit or st.last:
                t0 = clock()
                d.head(x, self.ee_head if st.exit and not st.last else None)
                sync()
                heads.append(clock() - t0)
        return LatencyResult(st.index, {"layers": layers, "head": heads, "embed": embed})


def _stage_main(
    spec: PipelineSpec, rank: int, parent: Connection, link: Any, beats: Any, silence_s: float
) -> None:
    """Entry point of one stage process: build only this stage's layers, then serve jobs.
    Whatever stops it is reported to the parent as ``Failed`` and ends it quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's (it stops us)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent's start
    _name_process(f"ppsd-stage-{rank}")
    _heartbeat(beats, rank)
    from ppsd_real.threads import torch_threads

    code, failure = 0, None
    try:
        with torch_threads(spec.threads):
            server = StageServer(spec, spec.scheme.stages()[rank], link, silence_s)
            parent.send(Ready(rank, os.getpid()))
            server.serve(parent)
    except (EOFError, BrokenPipeError):
        os._exit(0)  # the parent is gone: nobody to serve or to tell
    except PeerLost as err:
        code, failure = EXIT_PEER_LOST, Failed(rank, str(err), err.peer)
    except _Silent as err:
        code, failure = EXIT_SILENT, Failed(rank, str(err))
    except BaseException as err:  # a bug: the parent names it, the traceback travels along
        first = str(err).splitlines()[0] if str(err) else ""
        code = EXIT_FAILED
        failure = Failed(rank, f"{type(err).__name__}: {first}", details=traceback.format_exc())
    if failure is not None:
        with contextlib.suppress(OSError, ValueError):
            parent.send(failure)
        os._exit(code)  # no interpreter teardown: a broken transport may block it


# ---- in the parent ----------------------------------------------------------------------------


def exit_description(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"


def _state(pid: int | None) -> str:
    """The process state letter's meaning from /proc (Linux), e.g. 'stopped'."""
    states = {
        "T": "stopped (SIGSTOP?)",
        "t": "stopped by a debugger",
        "D": "in an uninterruptible wait",
        "Z": "a zombie",
        "R": "running",
        "S": "sleeping",
    }
    try:
        with open(f"/proc/{pid}/stat") as fh:
            letter = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "unknown"
    return states.get(letter, letter)


class DistributedBackend(MeasurableBackend):
    """k stage processes (spawned, so no thread pool is inherited across a fork).

    ``timeout_s``: a stage that hears nothing for this long mid-job reports itself silent
    (and bounds the probes); ``hang_s``: a stage whose heartbeat stops this long during a job
    is hung; ``start_timeout_s``: how long the stages may take to load the model."""

    def __init__(
        self,
        spec: PipelineSpec,
        timeout_s: float = 60.0,
        start_timeout_s: float = 120.0,
        hang_s: float = 3.0,
    ) -> None:
        self.spec, self.scheme, self.head_path = spec, spec.scheme, spec.head_path
        self.transport_name = spec.transport
        self.timeout_s, self.hang_s = timeout_s, hang_s
        self.procs: list[mp.process.BaseProcess] = []
        self.conns: list[Connection] = []
        self.pids: list[int] = []
        self._job = 0
        self._busy = False  # a job was sent and not all of its replies came
        self._start(start_timeout_s)

    # ---- life cycle --------------------------------------------------------------------------
    def _start(self, start_timeout_s: float) -> None:
        ctx = mp.get_context("spawn")
        k = self.spec.k
        transport = TRANSPORTS[self.spec.transport]
        links = transport.links(k, ctx)
        self._beats = ctx.RawArray("d", k)
        # SIGINT blocked while starting: the children inherit the mask (until _stage_main
        # ignores it), so a Ctrl-C during their start-up prints no traceback from them.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for rank in range(k):
                mine, theirs = ctx.Pipe(duplex=True)
                p = ctx.Process(
                    target=_stage_main,
                    name=f"ppsd-stage-{rank}",
                    daemon=True,
                    args=(self.spec, rank, theirs, links[rank], self._beats, self.timeout_s),
                )
                p.start()
                theirs.close()
                self.procs.append(p)
                self.conns.append(mine)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            self._abort()
            raise
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        try:
            for link in links:  # the parent's copies: a dead stage's pipes must read EOF
                for c in link.values() if isinstance(link, dict) else ():
                    c.close()
            got = self._collect(Ready, range(k), start_timeout_s, "starting")
            self.pids = [got[r].pid for r in range(k)]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every stage: ask (when idle), then terminate, then kill. Safe to call twice."""
        if not self._busy:
            for c in self.conns:
                with contextlib.suppress(OSError, ValueError):
                    c.send(Quit())
            deadline = time.monotonic() + 2.0
            for p in self.procs:
                p.join(max(0.0, deadline - time.monotonic()))
        self._abort()

    def _abort(self) -> None:
        """Terminate whatever still runs (a stopped process acts on SIGTERM once continued)."""
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                with contextlib.suppress(OSError, TypeError):
                    os.kill(p.pid, signal.SIGCONT)  # type: ignore[arg-type]
        deadline = time.monotonic() + 2.0
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(2.0)
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self.procs, self.conns, self._busy = [], [], False

    # ---- jobs --------------------------------------------------------------------------------
    def _send(self, job: Job, ranks: Any, what: str) -> None:
        """Send ``job`` to ``ranks``; a stage that is already gone fails the job by name."""
        if not self.procs:
            raise StageFailure("the stage processes are gone (a previous run failed)")
        idle = f"idle between jobs (found before {what})"
        if any(p.exitcode is not None for p in self.procs):
            self._fail(idle)
        self._busy = True
        for r in ranks:
            try:
                self.conns[r].send(job)
            except OSError:
                self._fail(idle)

    def _collect(self, kind: type, ranks: Any, timeout: float | None, what: str) -> dict[int, Any]:
        """One ``kind`` reply from every stage in ``ranks``, or StageFailure (all stopped): a
        stage that died, failed, or whose heartbeat stopped (also while starting)."""
        ranks = list(ranks)
        replies: dict[int, Any] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        sentinels = {p.sentinel: i for i, p in enumerate(self.procs)}
        while len(replies) < len(ranks):
            conns = {self.conns[r]: r for r in ranks if r not in replies}
            for obj in wait([*conns, *sentinels], HEARTBEAT_S):
                if obj in sentinels:
                    self._fail(what)
                try:
                    msg: Reply = obj.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    self._fail(what)
                if isinstance(msg, Failed):
                    self._fail(what, [msg])
                if isinstance(msg, kind):
                    replies[conns[obj]] = msg  # type: ignore[index]
            if self._hung():
                self._fail(what)
            if deadline is not None and time.monotonic() > deadline:
                missing = [r for r in ranks if r not in replies]
                self._fail(what, timed_out=(missing, timeout or 0.0))
        self._busy = False
        return replies

    def _hung(self) -> list[int]:
        now = time.monotonic()
        return [
            i
            for i, p in enumerate(self.procs)
            if p.exitcode is None and self._beats[i] > 0 and now - self._beats[i] > self.hang_s
        ]

    def _fail(
        self,
        what: str,
        reports: list[Failed] | None = None,
        timed_out: tuple[list[int], float] | None = None,
    ) -> None:
        """Find who to blame, stop every stage, raise one StageFailure that says it all."""
        got = {f.rank: f for f in reports or []}
        grace = time.monotonic() + 1.0  # the others' reports and exits: cause from effect
        while True:
            for i, c in enumerate(self.conns):  # replies already sent (a dead stage's too)
                with contextlib.suppress(EOFError, OSError):
                    while c.poll():
                        msg = c.recv()
                        if isinstance(msg, Failed):
                            got[i] = msg
            blame, primary = self._blame(got, timed_out)
            if primary or time.monotonic() > grace:
                break
            time.sleep(0.05)
        details = next((f.details for f in got.values() if f.details), "")
        self._busy = True  # no polite Quit: terminate
        self._abort()
        raise StageFailure(
            f"{'; '.join(b for _, b in blame)} while {what}; all stage processes were stopped",
            tuple(sorted({r for r, _ in blame if r >= 0})),
            details,
        )

    def _blame(
        self, got: dict[int, Failed], timed_out: tuple[list[int], float] | None
    ) -> tuple[list[tuple[int, str]], bool]:
        """(stage, what happened) to report, and whether a cause was found (a hung, killed or
        failing stage) rather than only effects (stages that lost a link, or a timeout)."""
        hung = set(self._hung())
        blame: list[tuple[int, str]] = []
        for i, p in enumerate(self.procs):
            pid, code = p.pid, p.exitcode
            if i in hung:
                quiet = time.monotonic() - self._beats[i]
                blame.append(
                    (
                        i,
                        f"stage {i} (pid {pid}) stopped responding (no heartbeat for "
                        f"{quiet:.1f} s; process {_state(pid)})",
                    )
                )
            elif code is not None and i not in got:
                blame.append((i, f"stage {i} (pid {pid}) {exit_description(code)}"))
            elif i in got and got[i].peer is None:
                blame.append((i, f"stage {i} (pid {pid}) failed: {got[i].reason}"))
        if blame:
            return blame, True
        for f in got.values():
            blame.append((-1 if f.peer is None else f.peer, f"stage {f.rank} {f.reason}"))
        if not blame and timed_out is not None:
            missing, t = timed_out
            blame = [
                (r, f"stage {r} (pid {self.procs[r].pid}) did not answer within {t:.0f} s")
                for r in missing
            ]
        return blame or [(-1, "a stage's link to the parent closed")], False

    def run(
        self,
        prompt: list[int],
        max_new_tokens: int,
        drafter: DrafterSpec,
        reference: list[int] | None = None,
        sampling: SamplingSpec = GREEDY,
    ) -> DecodeResult:
        """One PPSD generation; raises StageFailure if a stage dies or hangs."""
        self.check_drafter(drafter, reference, sampling)
        self._job += 1
        job = RunJob(
            self._job * 1_000_000, list(prompt), max_new_tokens, drafter, reference, sampling
        )
        t0 = time.perf_counter()
        self._send(job, range(self.spec.k), "generating")
        done = self._collect(Done, range(self.spec.k), None, "generating")
        wall = time.perf_counter() - t0
        stats = [done[r].summary for r in range(self.spec.k)]
        head: Done = done[0]
        return DecodeResult(
            tokens=head.tokens,
            time_s=stats[0]["time_s"],
            trace=head.trace,
            positions=head.positions,
            expected=head.expected,
            flushes=head.flushes,
            stage_busy_s=[s["busy_s"] for s in stats],
            stage_wasted_s=[s["wasted_s"] for s in stats],
            extra={"stages": stats, "wall_with_dispatch_s": wall},
        )

    def hop_latency(self, repeats: int = 200) -> list[float]:
        """One-way hand-off times between stage 0 and stage 1 over this backend's transport,
        of one token's hidden state (the model's width, dtype and device)."""
        k = self.spec.k
        self._send(HopJob(repeats), range(k), "measuring hops")
        got = self._collect(HopResult, range(k), repeats * 1.0 + self.timeout_s, "measuring hops")
        return got[0].one_way_s

    def stage_latency(
        self, context_len: int, window_s: float, together: bool
    ) -> list[dict[str, list]]:
        """Per-stage decode timings measured inside the stage processes: each stage alone
        (one after another, the others idle) or all stages over the same time window."""
        k, what = self.spec.k, "timing stages"
        if together:
            ranks = range(k)
            self._send(LatencyJob(context_len, time.perf_counter() + 0.05, window_s), ranks, what)
            got = self._collect(LatencyResult, ranks, window_s + self.timeout_s, what)
            return [got[r].timings for r in ranks]
        out = []
        for s in range(k):
            self._send(LatencyJob(context_len, time.perf_counter(), window_s), [s], what)
            out.append(
                self._collect(LatencyResult, [s], window_s + self.timeout_s, what)[s].timings
            )
        return out
