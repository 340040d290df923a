"""Seeded realisations of an AcceptanceSpec.

Every scheme consumes acceptance through one of two views:
- ``runs``: accepted drafts before each rejection, in order (PPSD, and the judged-draft stream
  of EESD for the i.i.d., Markov and trace models);
- ``rounds``: accepted drafts per EESD round of γ (a == γ means no rejection in that round).

A Markov chain over output positions (``chain="positions"``) gives the same runs (PPSD judges
every position), while its EESD rounds skip the bonus position after γ accepts: the chain
steps through it, but nothing is drafted there.

Each variate is drawn from a fixed number of uniforms by inverse CDF, so the sequence does not
depend on how a caller chunks its requests: the SimPy model and the fast path see exactly the
same acceptance for the same seed.
"""

from __future__ import annotations

import numpy as np

from ppsd_sim.acceptance.semantics import alphas_of, markov_transitions
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_spec import HISTOGRAM_TAILS as _TAILS
from ppsd_sim.records.acceptance_spec import AcceptanceSpec

#: A run that never ends (α = 1): longer than any simulation.
INFINITE_RUN = np.int64(2**62)


def _geometric_count(u: np.ndarray, p: float) -> np.ndarray:
    """Number of successes before the first failure, P(X >= i) = p**i, from u in (0, 1]."""
    if p >= 1.0:
        return np.full(u.shape, INFINITE_RUN, dtype=np.int64)
    if p <= 0.0:
        return np.zeros(u.shape, dtype=np.int64)
    x = np.floor(np.log(u) / np.log(p))
    return np.minimum(x, float(INFINITE_RUN)).astype(np.int64)


class AcceptanceSampler:
    """A stateful, seeded stream of acceptance outcomes for one simulation.

    No global state: each simulation owns its sampler and its numpy Generator.
    """

    def __init__(self, spec: AcceptanceSpec, seed: int | None = 0) -> None:
        if not isinstance(spec, AcceptanceSpec):
            raise ConfigError("acceptance", "must be an AcceptanceSpec")
        self.spec = spec
        self._rng = np.random.default_rng(seed)
        self._first = True
        self._trace_pos = 0
        self._round_carry: int | None = None  # accepts left in a partially consumed run
        self._buffer = np.zeros(0, dtype=np.int64)  # drawn but not yet consumed runs
        if spec.kind in ("per_position", "histogram"):
            self._alphas = np.asarray(alphas_of(spec), dtype=float)
            self._surv = np.cumprod(self._alphas)  # S_i = P(r >= i), i = 1..m
        if spec.kind == "trace":
            self._trace = np.asarray(spec.trace, dtype=np.int8)

    # ---- the run view ------------------------------------------------------------------------
    def runs(self, count: int) -> np.ndarray:
        """The next ``count`` run lengths (accepted drafts before each rejection)."""
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        if self.spec.needs_tail(None) and self.spec.tail is None:
            raise _tail_error(self.spec, "runs of judged drafts (PPSD) go")
        return self._runs_unchecked(count)

    def _runs_unchecked(self, count: int) -> np.ndarray:
        """``runs`` without the histogram check (rounds capped at γ never need the tail)."""
        if len(self._buffer):
            head, self._buffer = self._buffer[:count], self._buffer[count:]
            return np.concatenate((head, self._draw_runs(count - len(head))))
        return self._draw_runs(count)

    def _draw_runs(self, count: int) -> np.ndarray:
        kind = self.spec.kind
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        if kind == "iid":
            u = 1.0 - self._rng.random(count)
            return _geometric_count(u, float(self.spec.mean_alpha))
        if kind == "markov":
            return self._markov_runs(count)
        if kind == "trace":
            return self._trace_runs(count)
        return self._position_runs(count)

    def _markov_runs(self, count: int) -> np.ndarray:
        a, rho = float(self.spec.alpha or 0.0), self.spec.burstiness
        p_aa, p_ra = markov_transitions(a, rho)  # accept after an accept / after a reject
        u = self._rng.random((count, 2))
        start = np.full(count, p_ra)
        if self._first:
            start[0] = a  # the chain starts in its stationary distribution
            self._first = False
        tail = _geometric_count(1.0 - u[:, 1], p_aa)
        runs = np.where(u[:, 0] < start, 1 + np.minimum(tail, INFINITE_RUN - 1), 0)
        return runs.astype(np.int64)

    def _trace_runs(self, count: int) -> np.ndarray:
        trace = self._trace
        n = len(trace)
        zeros = np.flatnonzero(trace == 0)
        if len(zeros) == 0:
            return np.full(count, INFINITE_RUN, dtype=np.int64)
        out = np.empty(count, dtype=np.int64)
        # Runs starting at trace position pos: ones up to the next zero (wrapping around).
        for i in range(count):
            pos = self._trace_pos
            nxt = zeros[np.searchsorted(zeros, pos)] if pos <= zeros[-1] else zeros[0] + n
            out[i] = nxt - pos
            self._trace_pos = (nxt + 1) % n
        return out

    def _position_runs(self, count: int) -> np.ndarray:
        surv = self._surv
        u = 1.0 - self._rng.random(count)  # (0, 1]
        # r = #{i : S_i >= u} over the listed positions (S is non-increasing) ...
        r = np.searchsorted(-surv, -u, side="right").astype(np.int64)
        # ... and past the list the last alpha repeats: S_{m+j} = S_m * a_last**j.
        m, s_m, a_last = len(surv), surv[-1], self._alphas[-1]
        beyond = r == m
        if beyond.any():
            extra = _geometric_count(u[beyond] / s_m, a_last) if s_m > 0 else 0
            r[beyond] = np.minimum(m + extra, INFINITE_RUN)
        return r

    # ---- the round view -----------------------------------------------------------------------
    def rounds(self, count: int, gamma: int) -> np.ndarray:
        """The next ``count`` EESD rounds: accepted drafts in each, 0..γ."""
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        if self.spec.needs_tail(gamma) and self.spec.tail is None:
            raise _tail_error(self.spec, f"rounds of γ={gamma} go")
        if self.spec.kind in ("per_position", "histogram"):
            # Position restarts at every round: a = min(γ, run drawn from the per-position law).
            return np.minimum(self._position_runs(count), gamma)
        return self._rounds_from_runs(count, gamma)

    def _rounds_from_runs(self, count: int, gamma: int) -> np.ndarray:
        """Split the stream of runs into rounds. Over judged drafts a run of r accepts then a
        rejection gives r // γ full rounds and one round with r % γ accepts that ends in the
        rejection. Over output positions each full round also uses the bonus position after
        it (period γ + 1), and a bonus that falls on the rejection ends the run with no
        partial round. A run cut by ``count`` leaves its remaining accepts for the next call,
        and unused runs go back to the buffer, so the result does not depend on how calls are
        chunked."""
        period = gamma + 1 if self.spec.chain == "positions" else gamma
        parts: list[np.ndarray] = []
        need = count
        while need > 0:
            runs = self._runs_unchecked(max(need, 16))
            if self._round_carry is not None:
                runs = np.concatenate((np.array([self._round_carry], dtype=np.int64), runs))
                self._round_carry = None
            # full rounds per run, capped: α = 1 gives endless runs
            full = np.minimum((runs + period - gamma) // period, need)
            # over judged drafts every run ends in a (maybe empty) partial round
            per_run = full + 1 if period == gamma else full + (runs - full * period >= 0)
            cum = np.cumsum(per_run)
            idx = int(np.searchsorted(cum, need))
            if idx >= len(runs):
                parts.append(_expand(runs, full, gamma, period))
                need -= int(cum[-1])
                continue
            before = int(cum[idx - 1]) if idx else 0
            m = need - before  # rounds taken from run idx (1 .. per_run[idx])
            parts.append(_expand(runs[:idx], full[:idx], gamma, period))
            if m == per_run[idx]:
                parts.append(_expand(runs[idx : idx + 1], full[idx : idx + 1], gamma, period))
            else:
                parts.append(np.full(m, gamma, dtype=np.int64))
                self._round_carry = int(runs[idx]) - m * period
            self._unget(runs[idx + 1 :])
            need = 0
        return np.concatenate(parts)

    def _unget(self, runs: np.ndarray) -> None:
        if len(runs):
            self._buffer = np.concatenate((runs, self._buffer))


def _expand(runs: np.ndarray, full: np.ndarray, gamma: int, period: int) -> np.ndarray:
    """Rounds of a sequence of complete runs: ``full`` rounds of γ each, then the partial
    round r − full·period where that is >= 0 (over judged drafts, period = γ: always)."""
    rest = runs - full * period
    if period == gamma:  # every run has its partial round: no mask (the fast path's hot loop)
        out = np.full(int(full.sum()) + len(runs), gamma, dtype=np.int64)
        out[np.cumsum(full + 1) - 1] = rest
        return out
    partial = rest >= 0
    per_run = full + partial
    out = np.full(int(per_run.sum()), gamma, dtype=np.int64)
    out[(np.cumsum(per_run) - 1)[partial]] = rest[partial]
    return out


def _tail_error(spec: AcceptanceSpec, where: str) -> ConfigError:
    g = spec.gamma
    return ConfigError(
        "acceptance.tail",
        f"a histogram of rounds of γ={g} says nothing about drafts past position {g}, and "
        f"{where} beyond it; choose a tail rule: {', '.join(_TAILS)}",
    )


class RunCursor:
    """Sequential accept/reject decisions over a sampler's run stream (used by event models).

    ``judge()`` returns True while the current run has accepts left, then False once (the
    rejection) and moves to the next run. Runs are fetched in chunks; the stream is identical
    to what ``AcceptanceSampler.runs`` gives the fast path.
    """

    __slots__ = ("_buf", "_i", "_left", "_sampler", "chunk")

    def __init__(self, sampler: AcceptanceSampler, chunk: int = 4096) -> None:
        self._sampler = sampler
        self.chunk = chunk
        self._buf = sampler.runs(chunk)
        self._i = 0
        self._left = int(self._buf[0])

    def judge(self) -> bool:
        if self._left > 0:
            self._left -= 1
            return True
        self._i += 1
        if self._i >= len(self._buf):
            self._buf = self._sampler.runs(self.chunk)
            self._i = 0
        self._left = int(self._buf[self._i])
        return False
