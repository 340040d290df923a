"""Exact fast path: vectorised recurrences equal to the SimPy models for the same acceptance.

PPSD (every stage on its own device): a rejection flushes every younger token and crops all
caches, so each segment — a verified token, the r accepted drafts behind it, then the
rejection — starts from an empty pipeline. With deterministic stage times the tandem of
stages is a max-plus linear system: the j-th commit of a segment happens at
G + j·Π after the segment starts, where G is the fill latency and Π the accepted gap
(``PpsdCosts``), and the segment ends after G + r·Π + hop + flush. Flushed work per stage has
a closed form too, because each stage's start times are linear in j.

The bound on tokens in flight (``SchemeConfig.inflight_limit``) leaves that schedule alone
while it is slack (``schedule.bound_binds``); where it binds, the in-segment schedule is the
max-plus recurrence of ``ppsd_sim.schedule`` (still the same for every segment), and commit
times and flushed work are read from it instead of from the straight lines.
"""

from __future__ import annotations

import numpy as np

from ppsd_sim.acceptance.sampler import AcceptanceSampler
from ppsd_sim.costs import ArCosts, EesdCosts, PpsdCosts
from ppsd_sim.engines.result import EngineResult, observed_from_rounds, observed_from_runs
from ppsd_sim.errors import ConfigError
from ppsd_sim.schedule import SegmentSchedule, bound_binds, segment_schedule


def run_ar(costs: ArCosts, n_tokens: int) -> EngineResult:
    t = n_tokens * costs.token
    from ppsd_sim.records.run_record import AcceptanceObserved

    return EngineResult(n_tokens, t, AcceptanceObserved(0, 0), [t], [0.0], 0)


def _take_until(draw, need: int, weight) -> np.ndarray:
    """Draw chunks from ``draw(count)`` until Σ weight(chunk) >= need."""
    parts, total = [], 0
    chunk = 1024
    while total < need:
        x = draw(chunk)
        parts.append(x)
        total += int(weight(x).sum())
        chunk = min(chunk * 4, 1 << 22)
    return np.concatenate(parts)


def run_eesd(costs: EesdCosts, sampler: AcceptanceSampler, n_tokens: int) -> EngineResult:
    g = costs.gamma
    rounds = _take_until(lambda c: sampler.rounds(c, g), n_tokens, lambda a: a + 1)
    cum = np.cumsum(rounds + 1)
    m = int(np.searchsorted(cum, n_tokens))  # the round whose verification commits token n
    used = rounds[: m + 1]
    rejected = used < g
    round_time = g * costs.draft_step + costs.verify
    time = (m + 1) * round_time + int(rejected[:m].sum()) * costs.flush
    # the last round's crop happens after its commit and is not part of the run
    wasted = float(((g - used)[rejected]).sum() * costs.draft_step)
    obs = observed_from_rounds(used, g)
    return EngineResult(
        n_tokens, float(time), obs, [float(time)], [wasted], int(rejected[:m].sum()), rounds=m + 1
    )


def _stage_lines(c: PpsdCosts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each stage s: start time of token j in a segment is sigma[s] + j·pi[s]; p[s] is
    how long the token occupies the stage."""
    k, e, h = c.k, c.exit_stage, c.hop
    p = np.array([c.busy_per_token(s) for s in range(k)])
    period = c.draft_period
    sigma, pi = np.zeros(k), np.zeros(k)
    for s in range(e + 1):
        sigma[s] = sum(c.compute[u] + h for u in range(s))
        pi[s] = period
    arrive = sum(c.compute[: e + 1]) + (e + 1) * h  # token 0 at stage e+1
    done, slowest = arrive, period
    for s in range(e + 1, k):
        done += p[s] + (h if s > e + 1 else 0.0)
        slowest = max(slowest, p[s])
        sigma[s] = done - p[s]
        pi[s] = slowest
    return sigma, pi, p


def _partial_work(x: np.ndarray, pi: float, p: float) -> np.ndarray:
    """Work done by one stage on tokens whose first start precedes an abort by x (>= 0 or
    not), the tokens starting every pi and taking p each (p <= pi)."""
    x = np.asarray(x, dtype=float)
    out = np.zeros_like(x)
    pos = x > 0
    if not pos.any():
        return out
    xs = x[pos]
    started = np.ceil(xs / pi) if pi > 0 else np.ones_like(xs)
    out[pos] = (started - 1) * p + np.minimum(p, xs - (started - 1) * pi)
    return out


def run_ppsd(
    costs: PpsdCosts, sampler: AcceptanceSampler, n_tokens: int, limit: int | None = None
) -> EngineResult:
    """PPSD on dedicated devices; ``limit`` bounds the tokens in flight (None: unbounded)."""
    if not costs.dedicated:
        raise ConfigError(
            "engine",
            "the fast path needs one device per stage; use engine 'simpy' for shared devices",
        )
    k = costs.k
    G, Pi, h, f = costs.fill_latency, costs.accepted_gap, costs.hop, costs.flush
    runs = _take_until(sampler.runs, n_tokens, lambda r: np.minimum(r, n_tokens) + 1)
    commits = np.minimum(runs, n_tokens) + 1
    cum = np.cumsum(commits)
    m = int(np.searchsorted(cum, n_tokens))  # segment holding the n-th commit
    complete = runs[:m].astype(float)
    last = n_tokens - (int(cum[m - 1]) if m else 0)  # commits in the final segment (>= 1)
    if limit is not None:
        top = max(int(runs[:m].max()) + 1 if m else 0, last - 1) + limit + 1
        if bound_binds(costs, limit, top):
            sched = segment_schedule(costs, limit, top + 1)
            return _bounded(costs, sched, runs, m, last, n_tokens)
    seg_time = G + complete * Pi + h + f
    start_last = float(seg_time.sum())
    end = start_last + G + (last - 1) * Pi

    sigma, pi, p = _stage_lines(costs)
    busy, wasted = [], []
    for s in range(k):
        abort = G + complete * Pi + (h if s < k - 1 else 0.0)  # flush reaches stage s
        w = float(_partial_work(abort - (sigma[s] + (complete + 1) * pi[s]), pi[s], p[s]).sum())
        # still in flight (not flushed) when the run ends at the n-th commit
        tail = float(
            _partial_work(np.array([G + (last - 1) * Pi - (sigma[s] + last * pi[s])]), pi[s], p[s])[
                0
            ]
        )
        wasted.append(w)
        busy.append(n_tokens * p[s] + m * f + w + tail)
    obs = observed_from_runs(runs[:m], last - 1)
    return EngineResult(n_tokens, end, obs, busy, wasted, m)


def _bounded(
    c: PpsdCosts, sched: SegmentSchedule, runs: np.ndarray, m: int, last: int, n_tokens: int
) -> EngineResult:
    """The same bookkeeping as the straight-line case, on the bounded schedule: a segment of r
    accepted drafts ends at C_r + hop + flush; at most M tokens behind the rejected one can
    have started (token j waits for the verdict of j − M), so flushed work is a sum over them."""
    k, h, f, lim = c.k, c.hop, c.flush, sched.limit
    complete = runs[:m].astype(np.int64)
    c_rej = sched.commit(complete)  # commit of the rejected draft's verdict, per segment
    start_last = float((c_rej + h + f).sum())
    end_rel = float(sched.commit(np.array([last - 1]))[0])
    behind = np.arange(1, lim + 1)
    tail_idx = (last - 1) + behind
    busy, wasted = [], []
    chunk = max(1, 1_000_000 // lim)
    for s in range(k):
        p = c.busy_per_token(s)
        w = 0.0
        for i in range(0, m, chunk):
            r = complete[i : i + chunk]
            abort = c_rej[i : i + chunk] + (h if s < k - 1 else 0.0)
            idx = r[:, None] + behind[None, :]
            st = sched.start(s, idx.ravel()).reshape(idx.shape)
            w += float(np.clip(abort[:, None] - st, 0.0, p).sum())
        tail = float(np.clip(end_rel - sched.start(s, tail_idx), 0.0, p).sum())
        wasted.append(w)
        busy.append(n_tokens * p + m * f + w + tail)
    obs = observed_from_runs(runs[:m], last - 1)
    return EngineResult(n_tokens, start_last + end_rel, obs, busy, wasted, m)
