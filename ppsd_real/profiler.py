"""Measure a HardwareProfile: per-layer decode latency inside full-model steps, verify latency
for 1..16 tokens, heads, embedding, crop cost and (optionally) the inter-process hop."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from ppsd_real.measure import provenance
from ppsd_real.runner import Loaded
from ppsd_sim.records import HardwareProfile, Timing

VERIFY_TOKENS = (1, 2, 4, 8, 16)


def _samples(fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def profile(
    m: Loaded,
    repeats: int = 30,
    context_len: int = 64,
    hop: list[float] | None = None,
    threads: int = 1,
) -> HardwareProfile:
    """Latencies at a cache of ``context_len`` tokens; warm-up excluded, raw samples kept."""
    d, n_layers = m.driver, m.n_layers
    cache = d.new_cache()
    h0 = d.run_layers(d.embed(list(range(1, context_len + 1))), 0, n_layers, cache, 0)
    x1 = h0[:, -1:]
    layer = [
        Timing.of_samples(
            _samples(lambda i=i: d.run_layers(x1, i, i + 1, cache, context_len), repeats)
        )
        for i in range(n_layers)
    ]
    full = {
        n: statistics.median(
            _samples(
                lambda n=n: d.run_layers(h0[:, -n:], 0, n_layers, cache, context_len),
                max(5, repeats // 3),
            )
        )
        for n in VERIFY_TOKENS
    }
    head = Timing.of_samples(_samples(lambda: d.head(x1), repeats))
    embed = Timing.of_samples(_samples(lambda: d.embed([5]), repeats))

    def crop_once() -> None:
        d.run_layers(h0[:, -4:], 0, n_layers, cache, context_len)
        t0 = time.perf_counter()
        d.crop(cache, 0, n_layers, context_len)
        crops.append(time.perf_counter() - t0)

    crops: list[float] = []
    for _ in range(repeats // 3 + 2):
        crop_once()
    return HardwareProfile(
        layer_decode=tuple(layer),
        ee_head=head,
        final_head=head,
        embed=embed,
        hop=Timing.of_samples(hop) if hop else Timing(0.0),
        flush=Timing.of_samples(crops[2:]),
        verify_tokens=VERIFY_TOKENS,
        verify_factor=tuple(full[n] / full[1] for n in VERIFY_TOKENS),
        provenance=provenance(
            m.spec,
            threads,
            "full_model",
            notes="layer latency per layer with the whole model resident; tick "
            "not measured (0); hop = one-way pipe hand-off between two stage "
            "processes"
            if hop
            else "hop not measured",
        ),
    )
