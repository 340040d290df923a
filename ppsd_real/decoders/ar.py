"""Autoregressive decoding, layer by layer: the baseline every speedup divides by."""

from __future__ import annotations

import time

from ppsd_real import sampling
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.layers import LayerDriver
from ppsd_real.sampling import GREEDY, SamplingSpec


class ARDecoder:
    """One token at a time through all L layers and the final head: greedy (equals
    generate()), or sampled from the warped full model with the uniform keyed by the token's
    position (``sampling.target_from``)."""

    def __init__(self, driver: LayerDriver, spec: SamplingSpec = GREEDY) -> None:
        self.d, self.spec = driver, spec

    def decode(self, prompt: list[int], max_new_tokens: int) -> DecodeResult:
        d, n_layers = self.d, self.d.n_layers
        d.sync()  # a GPU's earlier work is not this run's; each token's argmax syncs the rest
        t0 = time.perf_counter()
        cache = d.new_cache()
        h = d.run_layers(d.embed(prompt), 0, n_layers, cache, 0)
        out = [self._pick(h[:, -1:], len(prompt))]
        while len(out) < max_new_tokens:
            pos = len(prompt) + len(out) - 1
            h = d.run_layers(d.embed(out[-1:]), 0, n_layers, cache, pos)
            out.append(self._pick(h, pos + 1))
        return DecodeResult(tokens=out[:max_new_tokens], time_s=time.perf_counter() - t0)

    def _pick(self, h, position: int) -> int:
        """The token for ``position`` from the last hidden state ``h``."""
        if self.spec.greedy:
            return int(self.d.head(h)[-1])
        p = sampling.probs(self.d.logits(h)[-1], self.spec)
        return sampling.target_from(p, self.spec.seed, position)
