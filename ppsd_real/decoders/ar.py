"""Autoregressive greedy decoding, layer by layer: the baseline every speedup divides by."""

from __future__ import annotations

import time

from ppsd_real.decoders.result import DecodeResult
from ppsd_real.layers import LayerDriver


class ARDecoder:
    """One token at a time through all L layers and the final head (equals generate())."""

    def __init__(self, driver: LayerDriver) -> None:
        self.d = driver

    def decode(self, prompt: list[int], max_new_tokens: int) -> DecodeResult:
        d, n_layers = self.d, self.d.n_layers
        d.sync()  # a GPU's earlier work is not this run's; each token's argmax syncs the rest
        t0 = time.perf_counter()
        cache = d.new_cache()
        h = d.run_layers(d.embed(prompt), 0, n_layers, cache, 0)
        out = [int(d.head(h[:, -1:])[-1])]
        while len(out) < max_new_tokens:
            pos = len(prompt) + len(out) - 1
            h = d.run_layers(d.embed(out[-1:]), 0, n_layers, cache, pos)
            out.append(int(d.head(h)[-1]))
        return DecodeResult(tokens=out[:max_new_tokens], time_s=time.perf_counter() - t0)
