"""Shared helpers for the real-runner tests (tiny preset, one model per session)."""

from __future__ import annotations

import functools

import torch

from ppsd_real.decoders import ARDecoder
from ppsd_real.layers import LayerDriver, ModelParts
from ppsd_real.model_loading import ModelSpec, load_model

TINY = ModelSpec("tiny", seed=0)


@functools.cache
def tiny_model() -> torch.nn.Module:
    return load_model(TINY)


@functools.cache
def tiny_driver() -> LayerDriver:
    return LayerDriver(ModelParts.of(tiny_model()))


@functools.cache
def reference(prompt: tuple[int, ...], n: int) -> tuple[int, ...]:
    return tuple(ARDecoder(tiny_driver()).decode(list(prompt), n).tokens)


def max_seated(times) -> int:
    """The most requests admitted and not finished at once in a batched run's ``times``."""
    events = sorted([(a, 1) for a in times.admitted] + [(f, -1) for f in times.finish])
    seated = peak = 0
    for _, d in events:
        seated += d
        peak = max(peak, seated)
    return peak
