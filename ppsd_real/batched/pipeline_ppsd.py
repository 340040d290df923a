"""Batched PPSD on real layers: PP-AR's k stage processes and k groups, with drafts in flight.

The stage processes, groups and caches are ``pipeline.StagePipeline``'s (the parent is stage 0
and the scheduler). What speculation adds, per group of at most ⌈max_batch / k⌉ sequences:

- A group's step holds one token of every sequence in the group, each at its own position: a
  verified token or a draft. The exit stage (stage 0 in the basic layout, else a stage process
  that sends its early-exit tokens straight back) drafts every row's next token, so the group
  may step again before its verdicts are back: up to ``scheme.inflight_limit`` steps of a group
  are in the pipeline at once (the in-flight limit of every sequence in it).
- The last stage's tokens are the verdicts. A row whose draft matches goes on; one whose draft
  is wrong commits the verified token, which enters with the group's next step, and only that
  row's younger tokens are flushed (its epoch moves on; the other rows of those steps run on).
  A step every row of which is flushed or finished is dead: the later stages are told
  (``SkipSteps``) and skip it if they have not run it. Nothing is cropped: a row's entry for
  position p lives in slot p (``RaggedCache``), so its verified tokens overwrite what its flushed
  ones wrote before anything reads it, and stale rows' outputs are never used.
- Stage 0's choice, the serving simulator's ``real_first`` policy at group granularity: a group
  admitting requests (prefill) first, then a group whose step carries a verified token of some
  row (a row with nothing in flight), then a group with drafts only, and that only while fewer
  than k decode steps are in the pipeline (a stage passes steps on in the order they came, so a
  draft step queued ahead of a verified one would delay it: drafts fill idle slots only); the
  oldest group first.
  A group whose every row has all its remaining tokens in flight does not step (tokens past a
  request's end are never drafted).

Greedy and lossless per row: every sequence's tokens equal its batch-1 AR tokens (tested),
whatever its drafts. How it differs from the simulator's PPSD: a group's rows step together (the
simulator lets every sequence's token enter on its own); a step with any live row runs whole
(the simulator drops flushed tokens from steps not yet started); a stage does not abandon a
step it has started.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from ppsd_real.backends.messages import pack_tensor
from ppsd_real.batched.decoders import Request, SeqState, Served, check_requests
from ppsd_real.batched.pipeline import (
    Echo,
    GroupDrafts,
    GroupStep,
    GroupTokens,
    SkipSteps,
    StagePipeline,
    _Group,
    _RunState,
)


class _Row:
    """What speculation tracks of one sequence: its tokens in flight (position, token) in
    order, the next one to enter, its epoch (a rejection starts a new one)."""

    __slots__ = ("epoch", "flight", "nxt", "run_len", "seq")

    def __init__(self, seq: SeqState) -> None:
        self.seq = seq
        self.epoch = 0
        self.flight: deque[tuple[int, int]] = deque()
        self.nxt: tuple[int, int] | None = None
        self.run_len = 0  # drafts accepted since the last rejection

    @property
    def useful(self) -> bool:
        """Another token of this sequence could still be committed."""
        return len(self.flight) < self.seq.left


@dataclass
class _Flight:
    """One decode step of a group in the pipeline: its rows and what each carried."""

    step: int
    rows: list[_Row]
    starts: tuple[int, ...]
    epochs: tuple[int, ...]
    drafted: bool = False
    verdict: tuple[int, ...] | None = None

    def live(self) -> bool:
        return any(
            r.seq.left > 0 and e == r.epoch for r, e in zip(self.rows, self.epochs, strict=True)
        )


@dataclass
class _SpecGroup(_Group):
    flights: deque[_Flight] = field(default_factory=deque)  # live steps, oldest first
    prefill: int | None = None  # the step id of its prefill in flight


class BatchedPPSD(StagePipeline):
    """Continuous-batching greedy PPSD over ``scheme``'s stages (see the module docstring).
    ``ee_head``: a trained early-exit head file (None: the model's LM head); every request's
    ``drafter`` (the oracle replays its AR reference at a set rate) picks its drafts."""

    name = "ppsd"
    kind = "ppsd"
    title = "batched PPSD"

    @property
    def limit(self) -> int:
        """Steps of one group in the pipeline at once (every row's tokens in flight)."""
        return self.scheme.inflight_limit

    @functools.cached_property
    def exit_at_0(self) -> bool:
        return self.scheme.stages()[0].exit

    @functools.cached_property
    def _ee(self) -> torch.nn.Module | None:
        """Stage 0's early-exit head when it drafts (None: the model's LM head)."""
        if not self.exit_at_0 or self.ee_head is None:
            return None
        from ppsd_real.drafters import DrafterSpec, load_ee_head

        return load_ee_head(DrafterSpec(head_path=self.ee_head), self.d.parts.lm_head)

    # ---- the engine ---------------------------------------------------------------------------
    def run(self, requests: list[Request]) -> Served:
        """Decode every request (see the module docstring); timestamps from the first step."""
        check_requests(requests, self.max_batch, "max_batch")
        if not self._procs:
            raise RuntimeError(f"{self.title}: the stages were closed")
        self.steps = self.flushes = 0
        self._dead = 0
        self._run += 1
        st = _RunState(requests, self.max_batch, self.arrivals)
        self._rows = {s.i: _Row(s) for s in st.seqs}
        self._flights: dict[int, tuple[_SpecGroup, _Flight]] = {}
        groups = [_SpecGroup(g) for g in range(self.k)]
        peak = 0
        self._pin()
        try:
            while st.queue or st.seated:
                g = self._choose(groups, st)
                if g is not None:
                    self._dispatch(g, st)
                    peak = max(peak, sum(len(x.flights) for x in groups))
                    block = False
                else:
                    block = True
                for conn in self._ready("decoding", block):
                    self._handle(self._take(conn, "decoding"), groups, st)
            served = st.served(self.steps)
            self._back_to_empty()
        finally:
            self._unpin()
        served.flushes = self.flushes
        served.extra.update(steps_in_flight_peak=peak, dead_steps=self._dead)
        return served

    def _back_to_empty(self) -> None:
        """Wait until the pipeline holds none of this run's steps (an echo behind them all), so
        the next run's clock does not start on this one's leftovers."""
        self._tx.send(Echo(pack_tensor(torch.zeros(1))))
        self._back(Echo, "emptying the pipeline")

    def _choose(self, groups: list[_SpecGroup], st: _RunState) -> _SpecGroup | None:
        """The group stage 0 steps next (the module docstring's policy), None: wait."""
        if st.queue:
            for g in groups:
                room = min(self.cap - g.live, self.max_batch - st.seated)
                if room > 0 and g.prefill is None:
                    return g
        best: tuple[int, int, int] | None = None
        pick = None
        busy = sum(len(g.flights) for g in groups)  # decode steps in the pipeline
        for g in groups:
            if g.prefill is not None or len(g.flights) >= self.limit:
                continue
            rows = [self._rows[s.i] for s in g.rows if s.left > 0]
            if not rows or any(r.nxt is None for r in rows) or not any(r.useful for r in rows):
                continue
            real = any(not r.flight for r in rows)
            if not real and busy >= self.k:
                continue  # drafts only fill a slot no verified token would
            key = (0 if real else 1, min(r.seq.i for r in rows), g.index)
            if best is None or key < best:
                best, pick = key, g
        return pick

    def _dispatch(self, g: _SpecGroup, st: _RunState) -> None:
        room = min(self.cap - g.live, self.max_batch - st.seated)
        if st.queue and room > 0 and g.prefill is None:
            g.prefill = self._prefill(g, st.admit(room))
            return
        keep = self._keep(g)
        rows = [self._rows[s.i] for s in g.rows]
        starts = tuple(r.nxt[0] for r in rows if r.nxt is not None)
        toks = [r.nxt[1] for r in rows if r.nxt is not None]
        assert len(starts) == len(rows)  # _choose stepped only a group with every next token
        for r in rows:
            r.flight.append(r.nxt)  # type: ignore[arg-type]  # checked above
            r.nxt = None
        msg = GroupStep(self._run, g.index, self.steps, None, starts, None, keep)
        h = self._caches.step(msg, 0, self.stop0, self.d.embed([[t] for t in toks]))
        self._send(msg, h)
        fl = _Flight(msg.step, rows, starts, tuple(r.epoch for r in rows))
        g.flights.append(fl)
        self._flights[fl.step] = (g, fl)
        if self.exit_at_0:
            self._drafted(g, fl, self.d.head(h, self._ee)[:, 0].tolist())

    # ---- what comes back ----------------------------------------------------------------------
    def _handle(self, msg: Any, groups: list[_SpecGroup], st: _RunState) -> None:
        if getattr(msg, "run", None) != self._run:
            return  # an earlier run's leftovers (or an echo)
        g = groups[msg.group]
        if isinstance(msg, GroupTokens) and msg.step == g.prefill:
            self._joined(g, msg, st)
            return
        entry = self._flights.get(msg.step)
        if entry is None:
            return  # a dead step some stage ran before it heard
        g, fl = entry
        if isinstance(msg, GroupDrafts):
            self._drafted(g, fl, list(msg.tokens))
        else:
            fl.verdict = msg.tokens
        self._settle(g, st)

    def _joined(self, g: _SpecGroup, msg: GroupTokens, st: _RunState) -> None:
        """A group's prefill is back: the first tokens, which enter with its next step."""
        t = st.now()
        for s, tok in zip(g.joining, msg.tokens, strict=True):
            s.commit([tok])
            st.first[s.i] = t
            if s.left == 0:
                st.leave(s, t)
            else:
                self._rows[s.i].nxt = (s.pending, tok)
        g.rows += g.joining
        g.joining = []
        g.prefill = None

    def _drafted(self, g: _SpecGroup, fl: _Flight, ee: list[int]) -> None:
        """The exit stage's tokens for ``fl``: every live row's draft for its next position."""
        fl.drafted = True
        for r, pos, epoch, x in zip(fl.rows, fl.starts, fl.epochs, ee, strict=True):
            s = r.seq
            if s.left > 0 and epoch == r.epoch:
                i = pos + 1 - len(s.prompt)  # the output index drafted
                r.nxt = (pos + 1, x if s.drafter is None else s.drafter.draft(i, int(x)))

    def _settle(self, g: _SpecGroup, st: _RunState) -> None:
        """Judge the group's verdicts in order, each once its step's drafts are in."""
        while g.flights and g.flights[0].verdict is not None and g.flights[0].drafted:
            fl = g.flights.popleft()
            del self._flights[fl.step]
            t = st.now()
            assert fl.verdict is not None
            for r, pos, epoch, v in zip(fl.rows, fl.starts, fl.epochs, fl.verdict, strict=True):
                if r.seq.left > 0 and epoch == r.epoch:
                    self._verdict(r, pos, int(v), st, t)
            self._reap(g)

    def _verdict(self, r: _Row, pos: int, v: int, st: _RunState, t: float) -> None:
        """The full model's token for ``pos + 1``: commit it and judge the draft there."""
        s = r.seq
        got = r.flight.popleft()
        assert got[0] == pos  # a sequence's tokens come back in order
        s.commit([v])
        d = r.flight[0][1] if r.flight else (r.nxt[1] if r.nxt is not None else None)
        assert d is not None  # _settle waits for the step's drafts
        ok = d == v  # the draft of the token just committed (it entered at pos + 1)
        s.res.trace.append(int(ok))
        s.res.positions.append(r.run_len + 1)
        if s.left == 0:
            st.leave(s, t)
            r.flight.clear()
            return
        if ok:
            r.run_len += 1
            return
        r.run_len = 0
        r.epoch += 1
        r.flight.clear()
        r.nxt = (pos + 1, v)
        s.res.flushes += 1
        self.flushes += 1

    def _reap(self, g: _SpecGroup) -> None:
        """Steps with no live row left are dead: forgotten here, skipped by the stages."""
        dead = [fl for fl in g.flights if not fl.live()]
        if not dead:
            return
        for fl in dead:
            g.flights.remove(fl)
            del self._flights[fl.step]
        self._dead += len(dead)
        note = SkipSteps(self._run, tuple(fl.step for fl in dead))
        for conn in self._notices:
            try:
                conn.send(note)
            except OSError:
                self._explain("telling the stages to skip a step")
