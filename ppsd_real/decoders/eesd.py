"""Early-exit self-speculative decoding: draft γ tokens, verify them in one pass, crop."""

from __future__ import annotations

import time

import torch

from ppsd_real import sampling
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.drafters import Drafter, refuse_oracle
from ppsd_real.layers import LayerDriver
from ppsd_real.sampling import GREEDY, JudgeRule, SamplingSpec
from ppsd_real.test_hooks import spin, tick_delay


class EESDDecoder:
    """Draft γ tokens through layers[0:E] + the EE head, then run the remaining layers over
    the γ+1 new tokens at once (reusing the early layers' cache and hidden states; the last
    draft also goes through the early layers), accept the longest matching prefix, commit one
    more token from the full model and crop the cache. ``cache_reuse=False`` recomputes all
    layers over the γ+1 tokens instead.

    Sampling (``spec`` with temperature > 0): each draft is sampled from the warped EE head
    (q), the drafts are judged in order by ``judge_rule`` (exact speculative sampling; a
    parameter only so tests can show a wrong rule is caught) against the warped full model
    (p) until one is rejected (the rule's residual token is committed instead); when all γ are
    accepted the bonus token is sampled from p. The first token comes from p, as in AR."""

    def __init__(
        self,
        driver: LayerDriver,
        exit_layer: int,
        gamma: int,
        drafter: Drafter,
        cache_reuse: bool = True,
        ee_head: torch.nn.Module | None = None,
        spec: SamplingSpec = GREEDY,
        judge_rule: JudgeRule = sampling.judge,
    ) -> None:
        refuse_oracle(drafter.spec, spec)
        self.d, self.e, self.gamma, self.drafter = driver, exit_layer, gamma, drafter
        self.cache_reuse, self.ee_head = cache_reuse, ee_head
        self.spec, self.judge_rule = spec, judge_rule
        self._test_delay = tick_delay()

    def decode(self, prompt: list[int], max_new_tokens: int) -> DecodeResult:
        if not self.spec.greedy:
            return self._sample(prompt, max_new_tokens)
        d, e, n_layers, g = self.d, self.e, self.d.n_layers, self.gamma
        d.sync()  # as in ARDecoder: tokens read on the host sync the rest of the run
        t0 = time.perf_counter()
        cache = d.new_cache()
        h = d.run_layers(d.embed(prompt), 0, n_layers, cache, 0)
        out = [int(d.head(h[:, -1:])[-1])]
        res = DecodeResult(tokens=out, time_s=0.0, histogram=[0] * (g + 1), rounds=0)
        while len(out) < max_new_tokens:
            base = len(prompt) + len(out) - 1  # position of the pending token out[-1]
            drafts: list[int] = []
            hidden: list[torch.Tensor] = []
            tok = out[-1]
            for j in range(g):
                if self._test_delay:
                    spin(self._test_delay)
                hj = d.run_layers(d.embed([tok]), 0, e, cache, base + j)
                hidden.append(hj)
                tok = self.drafter.draft(len(out) + j, int(d.head(hj, self.ee_head)[-1]))
                drafts.append(tok)
            if self.cache_reuse:
                hidden.append(d.run_layers(d.embed([tok]), 0, e, cache, base + g))
                h = d.run_layers(torch.cat(hidden, dim=1), e, n_layers, cache, base)
            else:
                h = d.run_layers(d.embed([out[-1], *drafts]), 0, n_layers, cache, base)
            verified = d.head(h).tolist()
            a = 0
            while a < g and drafts[a] == verified[a]:
                a += 1
            room = max_new_tokens - len(out)
            judged = min(a + 1 if a < g else g, room)
            for j in range(judged):
                res.trace.append(1 if j < a else 0)
                res.positions.append(j + 1)
            if room >= g + 1:
                res.histogram[a] += 1
            out.extend(([*drafts[:a], verified[a]])[:room])
            d.crop(cache, 0, n_layers, base + a + 1)
            res.rounds = (res.rounds or 0) + 1
            res.flushes += 1 if a < g else 0
        res.time_s = time.perf_counter() - t0
        return res

    def _sample(self, prompt: list[int], max_new_tokens: int) -> DecodeResult:
        """``decode`` at temperature > 0 (see the class docstring); the same layer calls."""
        d, e, n_layers, g = self.d, self.e, self.d.n_layers, self.gamma
        spec, seed = self.spec, self.spec.seed
        d.sync()
        t0 = time.perf_counter()
        cache = d.new_cache()
        h = d.run_layers(d.embed(prompt), 0, n_layers, cache, 0)
        p0 = sampling.probs(d.logits(h[:, -1:])[-1], spec)
        out = [sampling.target_from(p0, seed, len(prompt))]
        res = DecodeResult(tokens=out, time_s=0.0, histogram=[0] * (g + 1), rounds=0)
        while len(out) < max_new_tokens:
            base = len(prompt) + len(out) - 1  # position of the pending token out[-1]
            room = max_new_tokens - len(out)
            drafts: list[int] = []
            qs: list[torch.Tensor] = []
            hidden: list[torch.Tensor] = []
            tok = out[-1]
            for j in range(g):
                if self._test_delay:
                    spin(self._test_delay)
                hj = d.run_layers(d.embed([tok]), 0, e, cache, base + j)
                hidden.append(hj)
                q = sampling.probs(d.logits(hj, self.ee_head)[-1], spec)
                tok = sampling.draft_from(q, seed, base + j + 1)
                drafts.append(tok)
                qs.append(q)
            if self.cache_reuse:
                hidden.append(d.run_layers(d.embed([tok]), 0, e, cache, base + g))
                h = d.run_layers(torch.cat(hidden, dim=1), e, n_layers, cache, base)
            else:
                h = d.run_layers(d.embed([out[-1], *drafts]), 0, n_layers, cache, base)
            ps = sampling.probs(d.logits(h), spec)  # row j: position base + 1 + j
            new: list[int] = []
            a = 0
            for j in range(min(g, room)):
                ok, t = self.judge_rule(drafts[j], ps[j], qs[j], seed, base + 1 + j)
                res.trace.append(int(ok))
                res.positions.append(j + 1)
                res.expected.append(sampling.expected_acceptance(ps[j], qs[j]))
                new.append(t)
                if not ok:
                    break
                a += 1
            if a == g and room > g:
                new.append(sampling.target_from(ps[g], seed, base + 1 + g))
            if room >= g + 1:
                res.histogram[a] += 1
            out.extend(new)
            d.crop(cache, 0, n_layers, base + a + 1)
            res.rounds = (res.rounds or 0) + 1
            res.flushes += 1 if a < g else 0
        res.time_s = time.perf_counter() - t0
        return res
