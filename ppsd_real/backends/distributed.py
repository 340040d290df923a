"""One OS process per PPSD stage, each holding only its layers and cache, one thread each.

The parent starts the stages once (``DistributedBackend`` is a context manager), sends each run
as a job and collects the result. It watches every stage process: one that dies or stays silent
past ``timeout_s`` fails the run with a ``StageFailure`` naming the stage, and every stage
process is then terminated (then killed) so that none is left behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ppsd_real.decoders.result import DecodeResult
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.errors import ConfigError


class StageFailure(RuntimeError):
    """A stage process died or hung; the run was aborted and all stages stopped."""


@dataclass(frozen=True)
class PipelineSpec:
    """What every stage process needs to build itself."""

    TRANSPORTS = ("pipe", "gloo")

    model: ModelSpec
    bounds: tuple[int, ...]
    exit_stage: int
    transport: str = "pipe"
    threads: int = 1
    pin: bool = True
    head_path: str | None = None
    spin_s: float = 0.005  # pipe: busy-poll this long before a blocking receive

    def __post_init__(self) -> None:
        if self.transport not in self.TRANSPORTS:
            raise ConfigError(
                "transport", f"must be one of {self.TRANSPORTS}, got {self.transport!r}"
            )


def talk_pairs(k: int) -> set[tuple[int, int]]:
    """Stage pairs that exchange messages: 0 with every stage (drafts, verdicts, flushes) and
    each stage with the next (hidden states)."""
    return {(0, s) for s in range(1, k)} | {(s, s + 1) for s in range(1, k - 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stage_main(
    rank: int,
    spec: PipelineSpec,
    parent: Connection,
    peers: dict[int, Connection],
    port: int,
    silence_s: float,
) -> None:
    """Entry point of one stage process: build only this stage's layers, then serve jobs."""
    import torch

    k = len(spec.bounds)
    torch.set_num_threads(spec.threads)
    cpus = sorted(os.sched_getaffinity(0))
    own_core = spec.pin and spec.model.device == "cpu" and len(cpus) >= k
    if own_core:
        # One core per stage: left to itself the scheduler often wakes a receiver on the
        # sender's core, and both stages then crawl (measured: ~2x slower per stage).
        os.sched_setaffinity(0, {cpus[rank % len(cpus)]})
    from ppsd_real.backends.transport import GlooTransport, PipeTransport
    from ppsd_real.decoders.ppsd import Controller, Stage
    from ppsd_real.drafters import Drafter, load_ee_head
    from ppsd_real.layers import LayerDriver, ModelParts
    from ppsd_real.model_loading import load_model

    start = 0 if rank == 0 else spec.bounds[rank - 1]
    stop = spec.bounds[rank]
    model = load_model(spec.model)
    parts = ModelParts.of(model)
    parts.layers = [m if start <= i < stop else None for i, m in enumerate(parts.layers)]
    if rank != 0:
        parts.embed = None
    ee_head = None
    if rank == spec.exit_stage - 1 and spec.head_path:
        ee_head = load_ee_head(DrafterSpec(head_path=spec.head_path), parts.lm_head)
    del model
    driver = LayerDriver(parts, range(start, stop))
    if spec.transport == "gloo":
        import torch.distributed as dist

        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=k
        )
        peers_of = [b if a == rank else a for a, b in talk_pairs(k) if rank in (a, b)]
        transport: Any = GlooTransport(rank, peers_of, spec.model.device)
    else:
        # Spin only on a core of its own: sharing one, it would starve the other stage.
        spin = spec.spin_s if own_core else 0.0
        transport = PipeTransport(rank, peers, spec.model.device, spin)
    parent.send(("ready", rank, os.getpid()))
    while True:
        job = parent.recv()
        if job[0] == "quit":
            break
        if job[0] == "hop":
            parent.send(("hop", _hop_probe(rank, transport, job[1])))
            continue
        if job[0] == "latency":
            parent.send(("latency", _stage_latency(rank, spec, driver, ee_head, *job[1:])))
            continue
        _, epoch0, prompt, n, dspec, reference, max_inflight = job
        if rank == 0:
            drafter = Drafter(dspec, parts.lm_head.weight.shape[0], reference)
            st: Stage = Controller(
                spec.bounds,
                spec.exit_stage,
                driver,
                transport,
                drafter,
                prompt,
                n,
                max_inflight,
                ee_head,
                epoch0,
            )
        else:
            st = Stage(rank, spec.bounds, spec.exit_stage, driver, transport, ee_head, epoch0)
        t0 = time.perf_counter()
        if rank == 0:
            st.start_run()
        quiet_since = time.perf_counter()
        while not st.done:
            if st.step(0.5):
                quiet_since = time.perf_counter()
            elif time.perf_counter() - quiet_since > silence_s:
                raise SystemExit(f"stage {rank}: no message for {silence_s:.0f}s")
        elapsed = time.perf_counter() - t0
        summary = st.summary()
        summary["elapsed_s"] = elapsed
        if rank == 0:
            ctl: Any = st
            summary.update(
                tokens=ctl.out[:n],
                trace=ctl.trace,
                positions=ctl.positions,
                flushes=ctl.flushes,
                time_s=elapsed,
            )
        parent.send(("done", rank, summary))
    if spec.transport == "gloo":
        import torch.distributed as dist

        transport.close()
        dist.destroy_process_group()


def _stage_latency(
    rank: int,
    spec: PipelineSpec,
    driver: Any,
    ee_head: Any,
    context_len: int,
    t_start: float,
    window_s: float,
) -> dict[str, list]:
    """Time this stage's own decode step, layer by layer, inside its own process (its working
    set only: the per-stage context), sampling from ``t_start`` for ``window_s`` seconds on the
    shared monotonic clock, so stages asked together really run at the same time."""
    import torch

    start = 0 if rank == 0 else spec.bounds[rank - 1]
    stop = spec.bounds[rank]
    last = rank == len(spec.bounds) - 1
    exit_ = rank == spec.exit_stage - 1
    cache = driver.new_cache()
    if rank == 0:
        h = driver.embed(list(range(1, context_len + 1)))
    else:
        width = driver.parts.config.hidden_size
        h = torch.randn(1, context_len, width, generator=torch.Generator().manual_seed(rank))
    h = driver.run_layers(h, start, stop, cache, 0)
    x1 = h[:, -1:].clone()
    layers: list[list[float]] = [[] for _ in range(start, stop)]
    heads: list[float] = []
    embed: list[float] = []
    clock, sync = time.perf_counter, driver.sync  # sync: a GPU's queued work (free on CPU)
    sync()
    while clock() < t_start:
        pass
    while clock() < t_start + window_s:
        x = x1
        if rank == 0:
            t0 = clock()
            driver.embed([5])
            sync()
            embed.append(clock() - t0)
        for j, i in enumerate(range(start, stop)):
            t0 = clock()
            x = driver.run_layers(x, i, i + 1, cache, context_len)
            sync()
            layers[j].append(clock() - t0)
        if exit_ or last:
            t0 = clock()
            driver.head(x, ee_head if exit_ and not last else None)
            sync()
            heads.append(clock() - t0)
    return {"layers": layers, "head": heads, "embed": embed}


def _hop_probe(rank: int, transport: Any, repeats: int) -> list[float]:
    """Round trips 0 -> 1 -> 0 of a one-token hidden-sized message; rank 0 returns one-way times."""
    import torch

    from ppsd_real.backends.transport import Msg

    samples: list[float] = []
    payload = torch.zeros(1, 1, 512)
    if rank == 0:
        for _ in range(repeats):
            t0 = time.perf_counter()
            transport.send(1, ("ping", 0, 0, [0], payload))
            msg: Msg | None = None
            while msg is None:
                msg = transport.recv(5.0)
            samples.append((time.perf_counter() - t0) / 2)
    elif rank == 1:
        for _ in range(repeats):
            msg = None
            while msg is None:
                msg = transport.recv(5.0)
            transport.send(0, msg)
    return samples


class DistributedBackend:
    """k stage processes (spawned, so no thread pool is inherited across a fork)."""

    def __init__(self, spec: PipelineSpec, timeout_s: float = 60.0, start_timeout_s: float = 120.0):
        self.spec, self.timeout_s = spec, timeout_s
        self.procs: list[mp.process.BaseProcess] = []
        self.conns: list[Connection] = []
        self.pids: list[int] = []
        self._job = 0
        self._start(start_timeout_s)

    def _start(self, start_timeout_s: float) -> None:
        ctx = mp.get_context("spawn")
        k = len(self.spec.bounds)
        peers: list[dict[int, Connection]] = [{} for _ in range(k)]
        for a, b in sorted(talk_pairs(k)):
            ca, cb = ctx.Pipe(duplex=True)
            peers[a][b], peers[b][a] = ca, cb
        port = _free_port()
        try:
            for rank in range(k):
                mine, theirs = ctx.Pipe(duplex=True)
                p = ctx.Process(
                    target=_stage_main,
                    name=f"ppsd-stage-{rank}",
                    daemon=True,
                    args=(rank, self.spec, theirs, peers[rank], port, self.timeout_s),
                )
                p.start()
                theirs.close()
                self.procs.append(p)
                self.conns.append(mine)
            for d in peers:
                for c in d.values():
                    c.close()
            got = self._collect("ready", start_timeout_s, "starting")
            self.pids = [g[2] for g in sorted(got)]
        except BaseException:
            self.close()
            raise

    def _collect(self, kind: str, timeout: float, what: str) -> list[tuple]:
        """One ``kind`` reply from every stage, or StageFailure (and every stage stopped)."""
        replies: dict[int, tuple] = {}
        deadline = time.monotonic() + timeout
        by_conn = {c: i for i, c in enumerate(self.conns)}
        by_sentinel = {p.sentinel: i for i, p in enumerate(self.procs)}
        while len(replies) < len(self.procs):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [i for i in range(len(self.procs)) if i not in replies]
                self.close()
                raise StageFailure(
                    f"stage(s) {missing} did not answer within {timeout:.0f}s while "
                    f"{what} (hung?); all stage processes were stopped"
                )
            waiting = [c for c, i in by_conn.items() if i not in replies]
            for obj in wait(waiting + list(by_sentinel), left):
                if obj in by_sentinel:
                    i = by_sentinel[obj]
                    if i in replies and kind != "ready":
                        continue
                    self.procs[i].join(0.1)
                    code, pid = self.procs[i].exitcode, self.procs[i].pid
                    self.close()
                    raise StageFailure(
                        f"stage {i} (pid {pid}) exited with code "
                        f"{code} while {what}; all stage processes were stopped"
                    )
                i = by_conn[obj]
                try:
                    msg = obj.recv()
                except (EOFError, OSError):
                    continue  # its sentinel will report the death
                if msg[0] == kind:
                    replies[i] = msg
        return [replies[i] for i in range(len(self.procs))]

    def run(
        self,
        prompt: list[int],
        max_new_tokens: int,
        drafter: DrafterSpec,
        reference: list[int] | None = None,
        max_inflight: int | None = None,
    ) -> DecodeResult:
        """One PPSD generation; raises StageFailure if a stage dies or hangs."""
        if not self.procs:
            raise StageFailure("the stage processes are gone (a previous run failed)")
        self._job += 1
        epoch0 = self._job * 1_000_000
        job = ("job", epoch0, list(prompt), max_new_tokens, drafter, reference, max_inflight)
        t0 = time.perf_counter()
        for c in self.conns:
            c.send(job)
        done = self._collect("done", self.timeout_s, "generating")
        wall = time.perf_counter() - t0
        stats = [d[2] for d in done]
        head = stats[0]
        return DecodeResult(
            tokens=head["tokens"],
            time_s=head["time_s"],
            trace=head["trace"],
            positions=head["positions"],
            flushes=head["flushes"],
            stage_busy_s=[s["busy_s"] for s in stats],
            stage_wasted_s=[s["wasted_s"] for s in stats],
            extra={
                "stages": [
                    {k: v for k, v in s.items() if k not in ("tokens", "trace", "positions")}
                    for s in stats
                ],
                "wall_with_dispatch_s": wall,
            },
        )

    def hop_latency(self, repeats: int = 200) -> list[float]:
        """One-way hand-off times between stage 0 and stage 1 over this backend's transport."""
        for c in self.conns:
            c.send(("hop", repeats))
        return self._collect("hop", self.timeout_s, "measuring hops")[0][1]

    def stage_latency(
        self, context_len: int, window_s: float, together: bool
    ) -> list[dict[str, list]]:
        """Per-stage decode timings measured inside the stage processes: each stage alone
        (one after another, the others idle) or all stages over the same time window."""
        k = len(self.spec.bounds)
        if together:
            t_start = time.perf_counter() + 0.05
            for c in self.conns:
                c.send(("latency", context_len, t_start, window_s))
            return [r[1] for r in self._collect_latency(range(k), window_s)]
        out = []
        for s in range(k):
            self.conns[s].send(("latency", context_len, time.perf_counter(), window_s))
            out.append(self._collect_latency([s], window_s)[0][1])
        return out

    def _collect_latency(self, ranks: Any, window_s: float) -> list[tuple]:
        """Replies from ``ranks`` only (the others were not asked); any failure stops all."""
        conns, procs = self.conns, self.procs
        self.conns = [conns[r] for r in ranks]
        self.procs = [procs[r] for r in ranks]
        try:
            return self._collect("latency", window_s + self.timeout_s, "timing stages")
        except StageFailure:
            self.conns, self.procs = conns, procs
            self.close()
            raise
        finally:
            if self.procs:
                self.conns, self.procs = conns, procs

    def close(self) -> None:
        """Stop every stage: ask, then terminate, then kill. Safe to call twice."""
        for c in self.conns:
            with contextlib.suppress(OSError, ValueError):
                c.send(("quit",))
        deadline = time.monotonic() + 2.0
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self.procs, self.conns = [], []

    def __enter__(self) -> DistributedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
