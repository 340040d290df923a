"""PPSD's schedule inside one segment, with the bound on tokens in flight.

A segment starts when a verified token enters stage 1 of an empty pipeline and lasts until the
next rejection. Inside it nothing is random: stage times are fixed, so the start time of token
j (0 = the verified token, then the drafts behind it) at every stage follows a max-plus
recurrence, the same for every segment. With the stages of ``PpsdCosts`` and a limit M on
tokens in flight (entered into stage 1, verdict not yet back at stage 1: what the real
runner's controller allows, ``SchemeConfig.inflight_limit``):

    D_j      = S[e, j−1] + t_e + EE head (+ hop back to stage 1 if e > 1)   draft j is ready
    S[0, j]  = max(D_j, S[0, j−1] + busy_0, C_{j−M} + hop)                 stage 1 starts j
    S[s, j]  = max(S[s−1, j] + t_{s−1} + hop, S[s, j−1] + busy_s)          later stages
    C_j      = S[k−1, j] + busy_{k−1}                                       commit of j

Without the bound the solution is linear in j (``fast._stage_lines``: commits at G + j·Π).
With it, it is linear only while the bound is slack; after a finite transient it is periodic
with period M (a max-plus system: its critical circuits are a stage, the draft loop, or the
in-flight loop of mean (G + hop) / M), so the long-run commit gap is max(Π, (G + hop) / M).
``segment_schedule`` computes the transient exactly and extends the periodic part without
iterating, so a run of 10⁹ accepted drafts costs no more than one of 100.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppsd_sim.costs import PpsdCosts


@dataclass(frozen=True)
class SegmentSchedule:
    """Start times of the tokens of one segment at every stage (seconds from the segment's
    start), for token indices 0 .. ``len(starts[0]) − 1`` computed, and beyond them by
    periodicity: S[s, j + M] = S[s, j] + ``shift`` for j >= ``periodic_from``."""

    costs: PpsdCosts
    limit: int
    starts: np.ndarray  # (k, J)
    periodic_from: int | None  # None: not yet periodic within the computed columns
    shift: float  # D = M·λ, the time M tokens take in the periodic regime

    @property
    def computed(self) -> int:
        return int(self.starts.shape[1])

    def start(self, s: int, j: np.ndarray) -> np.ndarray:
        """S[s, j] for an array of token indices (extrapolated past the computed columns)."""
        j = np.asarray(j, dtype=np.int64)
        n = self.computed
        if self.periodic_from is None:
            if j.size and int(j.max()) >= n:
                raise ValueError("segment schedule: index beyond the computed columns")
            return self.starts[s, j]
        m = self.limit
        q = np.where(j >= n, (j - n) // m + 1, 0)  # periods to add; base in [n − M, n)
        return self.starts[s, j - q * m] + q * self.shift

    def commit(self, j: np.ndarray) -> np.ndarray:
        """C_j: when token j's verdict commits (relative to the segment's start)."""
        last = self.costs.k - 1
        return self.start(last, j) + self.costs.busy_per_token(last)


def _busy(c: PpsdCosts) -> list[float]:
    return [c.busy_per_token(s) for s in range(c.k)]


def bound_binds(c: PpsdCosts, limit: int, max_index: int) -> bool:
    """Whether the in-flight bound changes the unbounded (linear) schedule for any token up to
    ``max_index``: stage 1 would start token j at j·P_e, earlier than the verdict of token j − M
    reaches it (G + (j − M)·Π + hop). Π >= P_e, so the largest j is the worst."""
    j = max_index
    if j < limit:
        return False
    return c.fill_latency + (j - limit) * c.accepted_gap + c.hop > j * c.draft_period


def segment_schedule(c: PpsdCosts, limit: int, need: int) -> SegmentSchedule:
    """The bounded schedule, computed column by column until it is periodic (or ``need``
    columns are done; every index below ``need`` is then available)."""
    k, e, h = c.k, c.exit_stage, c.hop
    busy = _busy(c)
    comp = list(c.compute)
    draft_after = comp[e] + c.ee_head + (h if e > 0 else 0.0)
    last_busy = busy[-1]
    m = max(1, int(limit))
    cols: list[list[float]] = []
    commits: list[float] = []
    periodic_from: int | None = None
    shift, streak, j = 0.0, 0, 0
    while True:
        col = [0.0] * k
        if j > 0:
            prev = cols[j - 1]
            t = max(prev[e] + draft_after, prev[0] + busy[0])
            if j >= m:
                t = max(t, commits[j - m] + h)
            col[0] = t
        for s in range(1, k):
            t = col[s - 1] + comp[s - 1] + h
            if j > 0:
                t = max(t, cols[j - 1][s] + busy[s])
            col[s] = t
        cols.append(col)
        commits.append(col[-1] + last_busy)
        # Periodic once M consecutive columns equal the columns M before them plus one common
        # D: each column depends only on the one before it and on the commit M before it, so
        # every later column then repeats too (shifted by D per M tokens).
        if j >= 2 * m:
            back = cols[j - m]
            d = col[-1] - back[-1]
            tol = 1e-12 * max(1.0, abs(col[-1]))
            if all(abs((col[s] - back[s]) - d) <= tol for s in range(k)):
                streak = streak + 1 if streak and abs(d - shift) <= tol else 1
                shift = d
            else:
                streak = 0
            if streak >= m:
                periodic_from = j - 2 * m + 1
                break
        j += 1
        if j >= max(need, 1):
            break
    return SegmentSchedule(c, m, np.array(cols, dtype=float).T, periodic_from, shift)
