"""Batched greedy AR and EESD with continuous batching, on the real layers.

The engine follows the serving simulator's iteration model (``ppsd_sim.serving.iteration``) so
a measured run and its prediction describe the same schedule: at every step boundary waiting
requests are admitted up to ``max_batch``; if any were, one prefill step runs over all their
prompts (the running sequences wait; no chunking) and yields each one's first token; otherwise
one decode step runs for every running sequence:

- AR: one token each;
- EESD: a round of γ batched draft steps through layers[0:E] and the early-exit head, then
  one batched verification of every row's γ + 1 tokens through the remaining layers (with
  cache reuse; or all layers without it); each row accepts its own longest matching prefix
  plus the full model's token, and its rejected drafts are cut from its own cache row only.

A sequence that reaches its length leaves at the end of that step (tokens past its end are
dropped) and its row leaves the cache; a waiting one joins at the next boundary. Every
sequence's tokens equal its batch-1 AR tokens (greedy is lossless per row; tested).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import torch

from ppsd_real.batched.cache import RaggedCache
from ppsd_real.batched.driver import BatchedDriver
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.drafters import Drafter
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.serving_record import RequestTimes

#: how requests arrive: all at once (``batch``: N requests waiting at t = 0), or ``closed``
#: (a closed loop of ``max_batch`` users, each sending its next request when its last one
#: finishes: a request arrives when a slot frees)
ARRIVALS = ("batch", "closed")


@dataclass(frozen=True)
class Request:
    """One sequence to decode: its prompt, how many tokens to generate and, for EESD, its
    drafter (the oracle drafter replays that request's own AR reference)."""

    prompt: tuple[int, ...]
    new_tokens: int
    drafter: Drafter | None = None


@dataclass
class Served:
    """A batched run: one ``DecodeResult`` per request (its tokens and acceptance; ``time_s``
    its admission to finish), their timestamps (seconds from the start), the makespan and
    the engine's step count (prefills, decode steps; EESD: draft steps and verifications)."""

    results: list[DecodeResult]
    times: RequestTimes
    time_s: float
    steps: int = 0
    flushes: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def tokens(self) -> list[int]:
        """Every request's tokens, in request order (compared against the batch-1 AR ones)."""
        return [t for r in self.results for t in r.tokens]

    def result(self) -> DecodeResult:
        """The whole run as one ``DecodeResult`` (``bench.measure`` times and checks it):
        tokens in request order, the makespan, acceptance pooled over the requests."""
        res = DecodeResult(tokens=self.tokens, time_s=self.time_s, flushes=self.flushes)
        for r in self.results:
            res.trace.extend(r.trace)
            res.positions.extend(r.positions)
            if r.histogram:
                if not res.histogram:
                    res.histogram = [0] * len(r.histogram)
                res.histogram = [a + b for a, b in zip(res.histogram, r.histogram, strict=True)]
            if r.rounds is not None:
                res.rounds = (res.rounds or 0) + r.rounds
        res.extra = {"served": self, **self.extra}
        return res


class SeqState:
    __slots__ = ("drafter", "i", "left", "out", "prompt", "res")

    def __init__(self, i: int, req: Request) -> None:
        self.i, self.prompt, self.drafter = i, req.prompt, req.drafter
        self.out: list[int] = []
        self.left = req.new_tokens
        self.res = DecodeResult(tokens=self.out, time_s=0.0)

    def commit(self, tokens: list[int]) -> None:
        """Append what fits of ``tokens`` (a sequence never grows past its length)."""
        take = tokens[: self.left]
        self.out.extend(take)
        self.left -= len(take)

    @property
    def pending(self) -> int:
        """Position of the last committed token (the next step's input)."""
        return len(self.prompt) + len(self.out) - 1


def check_requests(requests: list[Request], max_batch: int, field_: str = "--batch") -> None:
    """Refuse an empty request list, a batch < 1, empty prompts, lengths < 1 (one line)."""
    validate.integer(field_, max_batch, lo=1, hi=100_000)
    if not requests:
        raise ConfigError("requests", "needs at least one request")
    for i, r in enumerate(requests):
        if not r.prompt:
            raise ConfigError(f"requests[{i}].prompt", "must hold at least one token")
        validate.integer(f"requests[{i}].new_tokens", r.new_tokens, lo=1)


class BatchedAR:
    """Continuous-batching greedy AR over ``BatchedDriver`` (see the module docstring)."""

    name = "ar"

    def __init__(self, driver: BatchedDriver, max_batch: int, arrivals: str = "batch") -> None:
        validate.integer("max_batch", max_batch, lo=1, hi=100_000)
        validate.choice("arrivals", arrivals, ARRIVALS)
        self.d, self.max_batch, self.arrivals = driver, max_batch, arrivals
        self.steps = 0
        self.flushes = 0

    # ---- the engine ---------------------------------------------------------------------------
    def run(self, requests: list[Request]) -> Served:
        """Decode every request (see the module docstring); timestamps from the first step."""
        check_requests(requests, self.max_batch, "max_batch")
        d, n = self.d, len(requests)
        arrival, admitted, first, finish = ([0.0] * n for _ in range(4))
        self.steps = self.flushes = 0
        seqs = [SeqState(i, r) for i, r in enumerate(requests)]
        queue = deque(seqs)
        free = deque([0.0] * self.max_batch)  # when each slot became free (closed loop)
        running: list[SeqState] = []
        cache = d.new_cache(0)
        d.sync()
        t0 = time.perf_counter()

        def leave(s: SeqState, t: float) -> None:
            finish[s.i] = t
            free.append(t)
            s.res.time_s = t - admitted[s.i]

        while queue or running:
            room = self.max_batch - len(running)
            if queue and room > 0:
                new = [queue.popleft() for _ in range(min(room, len(queue)))]
                t = time.perf_counter() - t0
                for s in new:
                    slot = free.popleft()
                    arrival[s.i] = slot if self.arrivals == "closed" else 0.0
                    admitted[s.i] = t
                joined = self._prefill(new)
                t = time.perf_counter() - t0
                keep = []
                for j, s in enumerate(new):
                    first[s.i] = t
                    if s.left == 0:
                        leave(s, t)
                    else:
                        keep.append(j)
                if keep:
                    if len(keep) < len(new):
                        joined.keep_rows(keep)
                    cache.append(joined)
                    running += [new[j] for j in keep]
                continue
            self._step(running, cache)
            t = time.perf_counter() - t0
            rows = []
            for j, s in enumerate(running):
                if s.left == 0:
                    leave(s, t)
                else:
                    rows.append(j)
            if len(rows) < len(running):
                cache.keep_rows(rows)
                running = [running[j] for j in rows]
        total = time.perf_counter() - t0
        times = RequestTimes(
            tuple(arrival),
            tuple(admitted),
            tuple(first),
            tuple(finish),
            tuple(len(r.prompt) for r in requests),
            tuple(r.new_tokens for r in requests),
        )
        return Served([s.res for s in seqs], times, total, self.steps, self.flushes)

    def _prefill(self, new: list[SeqState]) -> RaggedCache:
        """One step over the new sequences' whole prompts (right-padded): their first token."""
        d = self.d
        lens = [len(s.prompt) for s in new]
        width = max(lens)
        ids = [list(s.prompt) + [s.prompt[-1]] * (width - len(s.prompt)) for s in new]
        cache = d.new_cache(len(new))
        h = d.run_layers(d.embed(ids), 0, d.n_layers, cache, 0, valid=lens)
        rows = torch.arange(len(new), device=h.device)
        last = torch.tensor([n - 1 for n in lens], device=h.device)
        toks = d.head(h[rows, last][:, None])[:, 0].tolist()
        self.steps += 1
        for s, tok in zip(new, toks, strict=True):
            s.commit([int(tok)])
        return cache

    def _step(self, running: list[SeqState], cache: RaggedCache) -> None:
        """One token for every running sequence."""
        d = self.d
        ids = d.embed([[s.out[-1]] for s in running])
        h = d.run_layers(ids, 0, d.n_layers, cache, [s.pending for s in running])
        self.steps += 1
        for s, tok in zip(running, d.head(h)[:, 0].tolist(), strict=True):
            s.commit([int(tok)])


def judge(res: DecodeResult, drafts: list[int], verified: list[int], room: int) -> int:
    """Accept the longest prefix of ``drafts`` that matches the full model's ``verified``
    tokens and record the round in ``res`` as the batch-1 ``EESDDecoder`` does (the judged
    drafts' outcomes and positions, the histogram for full rounds, rounds, flushes); ``room``
    is how many tokens the sequence still needs. Returns the accepted count."""
    g = len(drafts)
    a = 0
    while a < g and drafts[a] == verified[a]:
        a += 1
    for j in range(min(a + 1 if a < g else g, room)):
        res.trace.append(1 if j < a else 0)
        res.positions.append(j + 1)
    if not res.histogram:
        res.histogram = [0] * (g + 1)
    if room >= g + 1:
        res.histogram[a] += 1
    res.rounds = (res.rounds or 0) + 1
    res.flushes += 1 if a < g else 0
    return a


class BatchedEESD(BatchedAR):
    """Continuous-batching greedy EESD: every running sequence drafts γ tokens with the early
    exit (its own ``Request.drafter``, or the exit head's argmax), one batched verification,
    per-row accept and crop (see the module docstring). ``cache_reuse=False`` verifies
    through all layers instead of reusing the early layers' draft entries."""

    name = "eesd"

    def __init__(
        self,
        driver: BatchedDriver,
        max_batch: int,
        exit_layer: int,
        gamma: int,
        cache_reuse: bool = True,
        ee_head: torch.nn.Module | None = None,
        arrivals: str = "batch",
    ) -> None:
        super().__init__(driver, max_batch, arrivals)
        validate.integer("exit_layer", exit_layer, lo=1, hi=driver.n_layers - 1)
        self.e, self.gamma = exit_layer, validate.integer("gamma", gamma, lo=1, hi=4096)
        self.cache_reuse, self.ee_head = cache_reuse, ee_head

    def _step(self, running: list[SeqState], cache: RaggedCache) -> None:
        """One round for every running sequence: γ drafts, one verification, accept, crop."""
        d, e, n_layers, g = self.d, self.e, self.d.n_layers, self.gamma
        base = [s.pending for s in running]
        toks = [s.out[-1] for s in running]
        drafts: list[list[int]] = [[] for _ in running]
        hidden: list[torch.Tensor] = []
        for j in range(g):
            hj = d.run_layers(d.embed([[t] for t in toks]), 0, e, cache, [b + j for b in base])
            hidden.append(hj)
            ee = d.head(hj, self.ee_head)[:, 0].tolist()
            toks = [
                int(x) if s.drafter is None else s.drafter.draft(len(s.out) + j, int(x))
                for s, x in zip(running, ee, strict=True)
            ]
            for row, t in zip(drafts, toks, strict=True):
                row.append(t)
        if self.cache_reuse:
            last = d.embed([[t] for t in toks])
            hidden.append(d.run_layers(last, 0, e, cache, [b + g for b in base]))
            h = d.run_layers(torch.cat(hidden, dim=1), e, n_layers, cache, base)
        else:
            ids = [[s.out[-1], *dr] for s, dr in zip(running, drafts, strict=True)]
            h = d.run_layers(d.embed(ids), 0, n_layers, cache, base)
        verified = d.head(h).tolist()
        self.steps += g + 1
        rejected = False
        for row, (s, dr, v) in enumerate(zip(running, drafts, verified, strict=True)):
            a = judge(s.res, dr, [int(x) for x in v], s.left)
            s.commit([*dr[:a], int(v[a])])
            cache.crop_row(row, 0, n_layers, base[row] + a + 1)
            rejected |= a < g and s.left > 0
        self.flushes += 1 if rejected else 0
