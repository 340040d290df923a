"""Every supported architecture, as a user's checkpoint (tiny, random, written by transformers'
own save_pretrained): greedy AR equals ``model.generate``, and EESD and PPSD equal AR token for
token, past the sliding window where the model has one (window 8, 34 tokens of context)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
import torch

from ppsd_real import runner
from ppsd_real.arch import zoo
from ppsd_real.arch.cache import CropError
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.records import SchemeConfig
from tests.arch_helpers import one_thread  # noqa: F401 (autouse fixture)

PROMPT = [1, 5, 7, 9, 11, 13, 17, 19, 23, 29]
N = 24
_ROOT = Path(tempfile.mkdtemp(prefix="ppsd-arch-zoo-"))


@functools.cache
def checkpoint(model_type: str) -> ModelSpec:
    folder = zoo.save_tiny(model_type, _ROOT / model_type)
    return ModelSpec(preset=None, path=str(folder))


@functools.cache
def loaded(model_type: str) -> runner.Loaded:
    return runner.load(checkpoint(model_type))


@functools.cache
def reference(model_type: str) -> list[int]:
    m = loaded(model_type)
    return runner.run_local(m, SchemeConfig.ar(), DrafterSpec(), PROMPT, N, None).tokens


@pytest.mark.parametrize("model_type", list(zoo.TINY))
def test_every_scheme_equals_generate(model_type: str) -> None:
    m = loaded(model_type)
    ref = reference(model_type)
    gen = m.model.generate(
        torch.tensor([PROMPT]), max_new_tokens=N, min_new_tokens=N, do_sample=False
    )
    assert ref == gen[0, len(PROMPT) :].tolist(), "AR differs from generate"
    L = m.n_layers
    oracle = DrafterSpec("oracle", 0.6, 1)
    cases = [
        (SchemeConfig.eesd(1, 3), oracle),
        (SchemeConfig.eesd(L - 1, 2, cache_reuse=False), DrafterSpec("early-exit")),
        (SchemeConfig.eesd(2, 5), DrafterSpec("oracle", 0.9, 2)),
        (SchemeConfig.ppsd_split(L, 3, 1), oracle),
        (SchemeConfig.ppsd_split(L, 2, 2), DrafterSpec("early-exit")),
    ]
    for scheme, drafter in cases:
        got = runner.run_local(m, scheme, drafter, PROMPT, N, ref)
        assert got.tokens == ref, scheme.label()


# Distributed: one architecture per thing a stage process rebuilds on its own: learned absolute
# positions added at stage 1 (gpt2), sliding-window crops past the window in every stage
# (mistral), recurrent-state snapshots restored in several stages (qwen3_next).
@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["gpt2", "mistral", "qwen3_next"])
def test_distributed_ppsd_equals_ar(model_type: str) -> None:
    spec = checkpoint(model_type)
    ref = reference(model_type)
    scheme = SchemeConfig.ppsd_split(4, 2, 1)
    with runner.open_distributed(spec, scheme, 4, DrafterSpec(), timeout_s=60) as be:
        for drafter in (DrafterSpec("oracle", 0.5, 3), DrafterSpec("early-exit")):
            assert be.run(PROMPT, N, drafter, ref).tokens == ref


def test_sliding_window_cache_stays_bounded_and_refuses_deep_crops() -> None:
    """A sliding layer keeps window - 1 + rollback entries, however long the context; a crop
    deeper than the rollback is refused, not silently wrong."""
    m = loaded("mistral")
    d = m.driver
    keep = d.rollback
    cache = d.new_cache()
    d.rollback = cache.rollback = 3
    try:
        h = d.run_layers(d.embed(list(range(1, 41))), 0, d.n_layers, cache, 0)
        assert h is not None
        assert cache.layers[0].keys.shape[-2] == 8 - 1 + 3
        assert d.cache_len(cache, 0) == 40
        assert d.crop(cache, 0, d.n_layers, 37) == 3 * d.n_layers
        with pytest.raises(CropError, match="exceeds the 3"):
            d.crop(cache, 0, 1, 30)
    finally:
        d.rollback = keep
