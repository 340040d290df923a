"""PPSD stage logic, shared by every backend (one process or one process per stage).

Stage s holds layers[b(s-1):b(s)] and its own KV cache. A token enters stage 0, flows to the
last stage, whose final head gives the full model's token for the next position (a *verdict*).
The exit stage's EE head drafts the next token, which enters stage 0 at once. Stage 0 is also
the controller: it owns the committed output and judges each draft against its verdict.

The messages are the types of ``backends.messages`` (Forward, Draft, Verdict, Flush, Stop); each
stage's geometry and roles come from ``SchemeConfig.stages()`` (a ``StageSpec``), never
re-derived here. An *epoch* names a branch: a rejection at position r bumps it; every message
of an older epoch is stale and dropped. How a rejection is handled (lessons from the prototype
in PPSD_NOTES.md):
- the verdict itself carries the verified token; stage 0 compares it with its own draft;
- stages poll their inbox between layers and abandon work a rejection made useless;
- the last stage never writes cache entries for a draft it already knows is wrong;
- every stage crops its cache back to r when it learns of the new epoch (each layer may hold a
  different length, e.g. after abandoned work).

Sampling (a ``SamplingSpec`` with temperature > 0): the exit stage samples its draft from the
warped EE head (q) and sends q with it; the last stage sends the warped full model (p) with its
verdict, whose token is then only a sample of p for a position that had no draft. The controller
judges each draft with ``judge_rule`` (exact speculative sampling: accept with probability
min(1, p/q), else commit the residual sample and flush). Every draw is keyed by (seed, position),
so the output depends on the seed only, not on timing: a verdict that arrives before its draft
(exit stage after stage 0) waits for it instead of committing the sample of p. The last stage
cannot know a draft is wrong before the controller judges it, so it never drops one.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from ppsd_real import sampling
from ppsd_real.backends.base import Transport
from ppsd_real.backends.messages import Draft, Flush, Forward, StageMessage, Stop, Verdict
from ppsd_real.drafters import Drafter, refuse_oracle
from ppsd_real.layers import LayerDriver
from ppsd_real.sampling import GREEDY, JudgeRule, SamplingSpec
from ppsd_real.test_hooks import spin, tick_delay
from ppsd_sim.records import SchemeConfig, StageSpec


@dataclass
class StageStats:
    busy_s: float = 0.0
    wasted_s: float = 0.0
    dropped: int = 0
    abandoned: int = 0
    crops: int = 0
    crop_s: float = 0.0
    # where busy time goes, and how long the stage sat blocked waiting for a message
    layers_s: float = 0.0
    heads_s: float = 0.0
    send_s: float = 0.0
    wait_s: float = 0.0
    poll_s: float = 0.0  # inside layers_s: the inbox checks between layers (control cost)
    steps: int = 0  # run_token calls
    # controller: verdict sent (last stage) -> handled (stage 0), same monotonic clock
    verdict_lag_s: float = 0.0
    verdict_lag_max_s: float = 0.0
    verdicts: int = 0
    # (epoch, pos, seconds) of work not yet known to be useful
    open_work: list[tuple[int, int, float]] = field(default_factory=list)

    def settle(self, epoch: int, pos: int) -> None:
        """Work of an older epoch at or after ``pos`` was on a flushed branch: wasted."""
        keep = []
        for w in self.open_work:
            if w[0] < epoch and w[1] >= pos:
                self.wasted_s += w[2]
            else:
                keep.append(w)
        self.open_work = keep[-64:]


class Stage:
    """One pipeline stage. Stage 0 additionally drives the run (see ``Controller``)."""

    def __init__(
        self,
        spec: StageSpec,
        driver: LayerDriver,
        transport: Transport,
        ee_head: torch.nn.Module | None = None,
        epoch0: int = 0,
        sampling: SamplingSpec = GREEDY,
    ) -> None:
        self.spec, self.s = spec, spec.index
        self.sampling = sampling
        self.start, self.stop = spec.start, spec.stop
        self.d, self.t, self.ee_head = driver, transport, ee_head
        self.cache = driver.new_cache()
        self.epoch = epoch0  # runs sharing processes start at distinct epochs: stale drops
        self.stats = StageStats()
        self._pending: list[Forward] = []
        self.done = False
        self.verified: dict[int, int] = {}  # last stage: full-model token per position
        self.blocked_from: int | None = None  # last stage: known-wrong draft position
        self._test_delay = tick_delay()
        self._current: tuple[int, int] | None = None

    # ---- messages -----------------------------------------------------------------------------
    def handle(self, msg: StageMessage) -> None:
        if isinstance(msg, Forward):
            self._forward(msg)
        elif isinstance(msg, Flush):
            self._adopt(msg.epoch, msg.pos)
        elif isinstance(msg, Stop):
            self.done = True
        else:
            raise RuntimeError(f"stage {self.s}: unexpected message {msg!r}")

    def _adopt(self, epoch: int, pos: int) -> None:
        """Learn of a newer epoch starting at ``pos``: crop the cache and forget its future."""
        if epoch <= self.epoch:
            return
        self.epoch = epoch
        t0 = time.perf_counter()
        self.d.crop(self.cache, self.start, self.stop, pos)
        self.stats.crops += 1
        self.stats.crop_s += time.perf_counter() - t0
        self.stats.settle(epoch, pos)
        self.verified = {p: v for p, v in self.verified.items() if p <= pos}
        self.blocked_from = None

    def _poll(self) -> bool:
        """Between layers: handle waiting control messages; True if the current work is stale."""
        t0 = time.perf_counter()
        try:
            return self._poll_inbox()
        finally:
            self.stats.poll_s += time.perf_counter() - t0

    def _poll_inbox(self) -> bool:
        while self.t.poll():
            msg = self.t.recv(0.0)
            if msg is None:
                break
            if isinstance(msg, Forward):
                self._pending.append(msg)
            else:
                self.handle(msg)
        cur = self._current
        return self.done or (cur is not None and cur[0] < self.epoch)

    def _forward(self, msg: Forward) -> None:
        epoch, pos, tokens = msg.epoch, msg.pos, msg.tokens
        if epoch < self.epoch:
            self.stats.dropped += 1
            return
        if epoch > self.epoch:
            self._adopt(epoch, pos)
        if self.spec.last and len(tokens) == 1 and self.sampling.greedy:
            if self.blocked_from is not None and pos >= self.blocked_from:
                self.stats.dropped += 1
                return
            want = self.verified.get(pos)
            if want is not None and want != tokens[0]:
                # A wrong draft: never write its KV; the flush for this epoch is coming.
                self.blocked_from = pos
                self.stats.dropped += 1
                return
        self.run_token(epoch, pos, tokens, msg.hidden)

    def run_token(
        self, epoch: int, pos: int, tokens: list[int], hidden: torch.Tensor | None
    ) -> bool:
        """Run this stage's layers on a token (or the prompt) and pass the results on."""
        st, clock = self.stats, time.perf_counter
        st.steps += 1
        if self._test_delay:
            spin(self._test_delay)
        t0 = clock()
        self._current = (epoch, pos)
        x = self.d.embed(tokens) if hidden is None else hidden
        h = self.d.run_layers(x, self.start, self.stop, self.cache, pos, self._poll)
        t1 = clock()
        st.layers_s += t1 - t0
        # One more poll after the last layer: a rejection that arrived during it must not
        # pay for a head and a hand-off of wrong-branch work on the critical path.
        if h is not None and not self.done:
            self._poll()
        self._current = None
        n = len(tokens)
        if h is None or epoch < self.epoch or self.done:
            st.abandoned += 1
            self._account(epoch, pos, t0, wasted=True)
            return False
        if not self.spec.last:
            t1 = clock()
            self.t.send(self.s + 1, Forward(epoch, pos, tokens, h))
            st.send_s += clock() - t1
        if self.spec.exit:
            t1 = clock()
            self._current = (epoch, pos)
            if self.sampling.greedy:
                ee, q = self.d.draft_token(h, self.ee_head, self._poll), None
            else:
                ee, q = self._sample_draft(h, pos + n)
            self._current = None
            st.heads_s += clock() - t1
            if ee is None or epoch < self.epoch or self.done:
                st.abandoned += 1  # rejected during the head: skip a wrong-branch draft
                self._account(epoch, pos, t0, wasted=True)
                return False
            self.on_draft(epoch, pos + n, ee, q)
        if self.spec.last:
            t1 = clock()
            if self.sampling.greedy:
                v, p = int(self.d.head(h[:, -1:])[-1]), None
            else:
                p = sampling.probs(self.d.logits(h[:, -1:])[-1], self.sampling)
                v = sampling.target_from(p, self.sampling.seed, pos + n)
            t2 = clock()
            st.heads_s += t2 - t1
            self.verified[pos + n] = v
            self.t.send(0, Verdict(epoch, pos + n, v, t2, p))
            st.send_s += clock() - t2
        self._account(epoch, pos, t0, wasted=False)
        return True

    def _account(self, epoch: int, pos: int, t0: float, wasted: bool) -> None:
        dt = time.perf_counter() - t0
        self.stats.busy_s += dt
        if wasted:
            self.stats.wasted_s += dt
        else:
            self.stats.open_work.append((epoch, pos, dt))

    def _sample_draft(self, h: torch.Tensor, pos: int) -> tuple[int | None, torch.Tensor | None]:
        """A draft for ``pos`` sampled from the warped EE head, and that distribution q
        ((None, None) if a rejection arrived during the head)."""
        logits = self.d.draft_logits(h, self.ee_head, self._poll)
        if logits is None:
            return None, None
        q = sampling.probs(logits, self.sampling)
        return sampling.draft_from(q, self.sampling.seed, pos), q

    def on_draft(self, epoch: int, pos: int, ee_token: int, q: torch.Tensor | None = None) -> None:
        """The exit stage's EE head proposed ``ee_token`` for ``pos`` (sampled from ``q`` when
        sampling): tell the controller."""
        self.t.send(0, Draft(epoch, pos, ee_token, q))

    # ---- loop ------------------------------------------------------------------------------------
    def step(self, block: float | None) -> bool:
        """Handle one message (waiting up to ``block`` seconds); False if none came."""
        if self._pending:
            msg = self._pending.pop(0)
        else:
            msg = self._wait(block)
            if msg is None:
                return False
        self.handle(msg)
        return True

    def _wait(self, block: float | None) -> StageMessage | None:
        """Receive, counting the time spent blocked as ``wait_s``."""
        t0 = time.perf_counter()
        msg = self.t.recv(block)
        self.stats.wait_s += time.perf_counter() - t0
        return msg

    def summary(self) -> dict[str, float]:
        st = self.stats
        return {
            "busy_s": st.busy_s,
            "wasted_s": st.wasted_s,
            "dropped": st.dropped,
            "abandoned": st.abandoned,
            "crops": st.crops,
            "crop_s": st.crop_s,
            "layers_s": st.layers_s,
            "heads_s": st.heads_s,
            "send_s": st.send_s,
            "wait_s": st.wait_s,
            "poll_s": st.poll_s,
            "steps": st.steps,
            "verdicts": st.verdicts,
            "verdict_lag_s": st.verdict_lag_s,
            "verdict_lag_max_s": st.verdict_lag_max_s,
        }


class Controller(Stage):
    """Stage 0: enters tokens, applies the drafter, judges drafts, commits, flushes."""

    def __init__(
        self,
        scheme: SchemeConfig,
        driver: LayerDriver,
        transport: Transport,
        drafter: Drafter,
        prompt: list[int],
        max_new_tokens: int,
        ee_head: torch.nn.Module | None = None,
        epoch0: int = 0,
        sampling: SamplingSpec = GREEDY,
        judge_rule: JudgeRule = sampling.judge,
    ) -> None:
        refuse_oracle(drafter.spec, sampling)
        super().__init__(scheme.stages()[0], driver, transport, ee_head, epoch0, sampling)
        self.judge_rule = judge_rule
        self.draft_q: dict[int, torch.Tensor] = {}  # sampling: each draft's q, by position
        self.expected: list[float] = []  # sampling: Σ min(p, q) of each judged draft
        self._held: Verdict | None = None  # sampling: a verdict that came before its draft
        self.k = scheme.n_stages
        self.drafter, self.prompt, self.n = drafter, list(prompt), max_new_tokens
        self.P = len(prompt)
        # tokens in flight after an entry (entered, verdict not committed): the scheme's limit
        self.inflight_limit = scheme.inflight_limit
        self.out: list[int] = []
        self.frontier = self.P  # next position to enter
        self.next_tok: tuple[int, bool] | None = None  # (token, is_draft)
        self.drafts: dict[int, int] = {}
        self.run_len = 0
        self.trace: list[int] = []
        self.positions: list[int] = []
        self.flushes = 0
        self.gaps: dict[str, list[float]] = {"accepted": [], "rejected": []}
        self._last_commit: float | None = None
        self._last_rejected = False

    def handle(self, msg: StageMessage) -> None:
        if isinstance(msg, Verdict):
            self._on_verdict(msg.epoch, msg.pos, msg.token, msg.sent, msg.probs)
        elif isinstance(msg, Draft):
            self._on_draft_msg(msg.epoch, msg.pos, msg.token, msg.probs)
        else:
            raise RuntimeError(f"controller: unexpected message {msg!r}")

    def on_draft(self, epoch: int, pos: int, ee_token: int, q: torch.Tensor | None = None) -> None:
        self._on_draft_msg(epoch, pos, ee_token, q)

    def summary(self) -> dict[str, float]:
        out = super().summary()
        for key, xs in self.gaps.items():
            out[f"{key}_gap_s"] = statistics.median(xs) if xs else 0.0
            out[f"{key}_gaps"] = len(xs)
        return out

    def _on_draft_msg(
        self, epoch: int, pos: int, ee_token: int, q: torch.Tensor | None = None
    ) -> None:
        if epoch != self.epoch or pos != self.frontier or self.next_tok is not None:
            return
        if pos - self.P >= self.n:
            return  # beyond the last token asked for: never needed
        self.next_tok = (self.drafter.draft(pos - self.P, ee_token), True)
        if q is not None:
            self.draft_q[pos] = q
        held = self._held
        if held is not None and held.epoch == epoch and held.pos == pos:
            self._held = None
            self._on_verdict(held.epoch, held.pos, held.token, held.sent, held.probs)

    def _on_verdict(
        self, epoch: int, pos: int, v: int, sent: float, p: torch.Tensor | None = None
    ) -> None:
        lag = time.perf_counter() - sent  # hop + how late stage 0 looked (monotonic clock)
        st = self.stats
        st.verdicts += 1
        st.verdict_lag_s += lag
        st.verdict_lag_max_s = max(st.verdict_lag_max_s, lag)
        if epoch != self.epoch or self.done:
            return
        assert pos == self.P + len(self.out), (pos, self.P, len(self.out))
        if (
            p is not None
            and self.next_tok is None
            and pos == self.frontier
            and pos not in self.drafts
        ):
            # sampling: the draft for pos is still on its way (the exit stage is not stage 0);
            # committing the sample of p instead would make the output depend on timing
            self._held = Verdict(epoch, pos, v, sent, p)
            return
        d = self.drafts.pop(pos, None)
        entered = d is not None
        if d is None and pos == self.frontier and self.next_tok is not None and self.next_tok[1]:
            d = self.next_tok[0]  # drafted but not yet entered: judge it all the same
        ok = d == v
        if d is not None and p is not None:
            q = self.draft_q.pop(pos)
            ok, v = self.judge_rule(d, p, q, self.sampling.seed, pos)
            self.expected.append(sampling.expected_acceptance(p, q))
        if d is not None and not entered:
            self.next_tok = (v, False)
        self.out.append(v)
        self._gap(sent, d is not None and not ok)
        if len(self.out) >= self.n:
            self.done = True
        if d is not None:
            self.trace.append(int(ok))
            self.positions.append(self.run_len + 1)
            self.run_len = self.run_len + 1 if ok else 0
            if not ok and pos < self.frontier:
                self._reject(pos, v)  # something was entered after the wrong draft: flush
        elif pos == self.frontier:
            self.next_tok = (v, False)  # the drafter lost the race: enter the verified token
        if self.done:
            self._broadcast(Stop())

    def _gap(self, sent: float, rejected: bool) -> None:
        """Commit-to-commit time (on the verdicts' send clock), filed under the kind of the
        previous commit: after a rejection the next verdict needs a full pipeline refill."""
        if self._last_commit is not None:
            key = "rejected" if self._last_rejected else "accepted"
            self.gaps[key].append(sent - self._last_commit)
        self._last_commit, self._last_rejected = sent, rejected

    def _reject(self, pos: int, v: int) -> None:
        self.flushes += 1
        self.epoch += 1
        t0 = time.perf_counter()
        self.d.crop(self.cache, self.start, self.stop, pos)
        self.stats.crops += 1
        self.stats.crop_s += time.perf_counter() - t0
        self.stats.settle(self.epoch, pos)
        self.drafts.clear()
        self.draft_q.clear()
        self.frontier = pos
        self.next_tok = None if self.done else (v, False)
        if not self.done:
            self._broadcast(Flush(self.epoch, pos))

    def _broadcast(self, msg: StageMessage) -> None:
        for s in range(1, self.k):
            self.t.send(s, msg)

    def can_enter(self) -> bool:
        inflight = self.frontier - (self.P + len(self.out)) + 1  # before this entry
        return not self.done and self.next_tok is not None and inflight < self.inflight_limit

    def enter(self) -> None:
        """Run the next token through stage 0 (abandoning it if a rejection arrives)."""
        assert self.next_tok is not None
        tok, is_draft = self.next_tok
        pos, epoch = self.frontier, self.epoch
        self.next_tok = None
        self.frontier += 1
        if is_draft:
            self.drafts[pos] = tok
        if pos >= self.P + self.n - 1:
            return  # the last token asked for: judged by its verdict, nothing runs after it
        if not self.run_token(epoch, pos, [tok], None) and epoch == self.epoch and not self.done:
            raise RuntimeError("controller: work abandoned without a rejection")

    def start_run(self) -> None:
        """Prefill: the prompt through stage 0; its EE head drafts the first token."""
        self.frontier = self.P
        self.run_token(self.epoch, 0, self.prompt, None)

    def step(self, block: float | None, enter_first: bool = False) -> bool:
        """One action. ``enter_first`` (sequential backend) runs ahead before reading verdicts,
        which exercises the flush path the way real overlap does."""
        if enter_first and self.can_enter():
            self.enter()
            return True
        if self._pending:
            self.handle(self._pending.pop(0))
            return True
        msg = self.t.recv(0.0)
        if msg is not None:
            self.handle(msg)
            return True
        if self.can_enter():
            self.enter()
            return True
        if block == 0.0:
            return False
        msg = self._wait(block)
        if msg is None:
            return False
        self.handle(msg)
        return True


def stage_work_summary(stages: list[Stage]) -> tuple[list[float], list[float], list[dict]]:
    """Per-stage busy and wasted seconds plus the raw counters."""
    sums = [s.summary() for s in stages]
    return [x["busy_s"] for x in sums], [x["wasted_s"] for x in sums], sums
