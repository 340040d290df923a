"""Batched real runner: the ragged cache against the library's attention, batched AR and EESD
lossless per sequence under continuous batching, the scheduler's invariants, bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from ppsd_real.arch import zoo
from ppsd_real.batched.decoders import BatchedAR, BatchedEESD, Request
from ppsd_real.batched.driver import BatchedDriver
from ppsd_real.decoders import ARDecoder, EESDDecoder
from ppsd_real.drafters import Drafter, DrafterSpec
from ppsd_real.layers import LayerDriver, ModelParts
from ppsd_sim.errors import ConfigError
from tests.arch_helpers import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.real_fixtures import reference, tiny_driver, tiny_model

# mixed prompt lengths and output lengths: one finishes at its prefill (1 token), the short
# ones leave early and the queued ones join (continuous batching at max_batch < requests)
MIX = [((1, 5, 7, 9, 11), 12), ((3,), 5), ((200, 17, 42, 99, 100, 101, 7, 8), 14), ((9, 9), 1)]
MIX += [((4, 3, 2), 9), ((250, 1, 2, 3, 4, 5, 6), 7)]


@functools.cache
def batched() -> BatchedDriver:
    return BatchedDriver(tiny_driver())


def _requests(alpha: float | None, mix=MIX) -> list[Request]:
    out = []
    for i, (p, n) in enumerate(mix):
        dr = None if alpha is None else Drafter(DrafterSpec("oracle", alpha, i), 256, ref(p, n))
        out.append(Request(p, n, dr))
    return out


def ref(prompt: tuple[int, ...], n: int) -> list[int]:
    return list(reference(prompt, n))


def _logits(bd: BatchedDriver, h: torch.Tensor) -> torch.Tensor:
    return bd.parts.lm_head(bd.parts.norm(h))


# ---- the ragged cache against the library's own attention ------------------------------------
def test_ragged_cache_matches_the_library_forward_on_each_row() -> None:
    """Prefill rows of different lengths, a 3-token step per row at its own positions, a crop
    of each row by a different amount and a step after it: every row's logits equal the model's
    own forward (DynamicCache, its own masks) over the tokens that row holds."""
    bd, model = batched(), tiny_model()
    prompts = [[1, 5, 7, 9, 11], [3], [200, 17, 42, 99, 100, 101, 7, 8]]
    lens = [len(p) for p in prompts]
    width = max(lens)
    cache = bd.new_cache(3)
    padded = [p + [0] * (width - len(p)) for p in prompts]
    with torch.inference_mode():
        h = bd.run_layers(bd.embed(padded), 0, bd.n_layers, cache, 0, valid=lens)
        got = _logits(bd, h)
        rows = [list(p) for p in prompts]

        def own(seq: list[int], n: int) -> torch.Tensor:
            return model(torch.tensor([seq])).logits[0, -n:]

        for b, p in enumerate(prompts):
            torch.testing.assert_close(got[b, : len(p)], own(p, len(p)), atol=1e-5, rtol=1e-4)
        new = [[10, 11, 12], [20, 21, 22], [30, 31, 32]]
        h = bd.run_layers(bd.embed(new), 0, bd.n_layers, cache, lens)
        got = _logits(bd, h)
        for b in range(3):
            rows[b] += new[b]
            torch.testing.assert_close(got[b], own(rows[b], 3), atol=1e-5, rtol=1e-4)
        # row 0 drops 2 of its 3 new entries, row 1 none, row 2 all 3: one more step each
        keep = [1, 3, 0]
        for b, k in enumerate(keep):
            cache.crop_row(b, 0, bd.n_layers, lens[b] + k)
            rows[b] = rows[b][: lens[b] + k]
        assert [cache.lengths(0)[b] for b in range(3)] == [len(r) for r in rows]
        step = [[40, 41], [50, 51], [60, 61]]
        h = bd.run_layers(bd.embed(step), 0, bd.n_layers, cache, [len(r) for r in rows])
        got = _logits(bd, h)
        for b in range(3):
            rows[b] += step[b]
            torch.testing.assert_close(got[b], own(rows[b], 2), atol=1e-5, rtol=1e-4)


def test_ragged_cache_matches_the_library_batched_left_padded_forward() -> None:
    """The library's own batching (left padding, attention mask, DynamicCache) on the same
    prompts gives the same next-token logits as the ragged cache's right-padded prefill."""
    bd, model = batched(), tiny_model()
    prompts = [[7, 8, 9, 10], [3, 4], [11, 12, 13, 14, 15, 16]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        lib = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        cache = bd.new_cache(3)
        padded = [p + [0] * (width - len(p)) for p in prompts]
        h = bd.run_layers(bd.embed(padded), 0, bd.n_layers, cache, 0, [len(p) for p in prompts])
        ours = torch.stack([_logits(bd, h)[b, len(p) - 1] for b, p in enumerate(prompts)])
    torch.testing.assert_close(ours, lib, atol=1e-5, rtol=1e-4)


def test_rows_leave_and_join_without_touching_the_others() -> None:
    bd = batched()
    a, b = bd.new_cache(2), bd.new_cache(1)
    with torch.inference_mode():
        bd.run_layers(bd.embed([[1, 2, 3], [4, 5, 6]]), 0, bd.n_layers, a, 0, [3, 2])
        bd.run_layers(bd.embed([[7] * 9]), 0, bd.n_layers, b, 0)
    keys = a.layers[1].keys[1, :, :2].clone()
    a.keep_rows([1])
    a.append(b)
    assert a.rows == 2 and a.lengths(1) == [2, 9]
    torch.testing.assert_close(a.layers[1].keys[0, :, :2], keys)
    # a write past a row's end is refused
    with pytest.raises(RuntimeError, match="gap"), torch.inference_mode():
        bd.run_layers(bd.embed([[1], [1]]), 0, 1, a, [3, 9])


# ---- lossless per sequence -------------------------------------------------------------------
@pytest.mark.parametrize("max_batch", [1, 3, 6])
def test_batched_ar_equals_batch1_ar(max_batch: int) -> None:
    got = BatchedAR(batched(), max_batch).run(_requests(None))
    for r, (p, n) in zip(got.results, MIX, strict=True):
        assert r.tokens == ref(p, n)


# (max_batch, exit, gamma, alpha, cache_reuse): rejections everywhere (0), never (1), mixed,
# the exit head's own drafts (None), exits 1 and L-1, no cache reuse
EESD_CASES = [
    (2, 2, 3, 0.5, True),
    (3, 1, 2, 0.0, True),
    (4, 3, 4, 1.0, True),
    (2, 2, 3, None, True),
    (6, 2, 2, 0.7, False),
]


@pytest.mark.parametrize("case", EESD_CASES)
def test_batched_eesd_equals_batch1_ar(case: tuple) -> None:
    max_batch, e, g, alpha, reuse = case
    got = BatchedEESD(batched(), max_batch, e, g, reuse).run(_requests(alpha))
    for r, (p, n) in zip(got.results, MIX, strict=True):
        assert r.tokens == ref(p, n)
        assert len(r.trace) == len(r.positions)
        if alpha == 0.0:
            assert sum(r.trace) == 0
        if alpha == 1.0:
            assert all(r.trace)
    pooled = got.result()
    assert pooled.tokens == [t for p, n in MIX for t in ref(p, n)]
    assert sum(pooled.histogram) == sum(sum(r.histogram) for r in got.results)


def test_batched_eesd_alone_observes_what_batch1_eesd_observes() -> None:
    """One request at batch 1: the same drafts, verdicts and bookkeeping as EESDDecoder."""
    p, n = MIX[2]
    dr = Drafter(DrafterSpec("oracle", 0.6, 3), 256, ref(p, n))
    one = EESDDecoder(tiny_driver(), 2, 3, dr).decode(list(p), n)
    got = BatchedEESD(batched(), 1, 2, 3).run([Request(p, n, dr)]).results[0]
    assert (got.tokens, got.trace, got.positions) == (one.tokens, one.trace, one.positions)
    assert (got.histogram, got.rounds, got.flushes) == (one.histogram, one.rounds, one.flushes)


@pytest.mark.parametrize("model_type", ["mistral", "gpt2"])
def test_other_families_lossless(model_type: str) -> None:
    """A sliding window (8 tokens, passed here) and learned absolute positions."""
    d = LayerDriver(ModelParts.of(zoo.tiny_model(model_type)))
    mix = [((1, 5, 7, 9, 11, 2, 3), 12), ((3,), 9), ((4, 3, 2), 11)]
    refs = [ARDecoder(d).decode(list(p), n).tokens for p, n in mix]
    bd = BatchedDriver(d)
    reqs = [
        Request(p, n, Drafter(DrafterSpec("oracle", 0.6, i), 256, r))
        for i, ((p, n), r) in enumerate(zip(mix, refs, strict=True))
    ]
    assert BatchedAR(bd, 2).run(reqs).tokens == [t for r in refs for t in r]
    assert BatchedEESD(bd, 2, 2, 3).run(reqs).tokens == [t for r in refs for t in r]


def test_recurrent_layers_refused() -> None:
    d = LayerDriver(ModelParts.of(zoo.tiny_model("qwen3_next"), verify=False))
    with pytest.raises(ConfigError, match="attention layers only"):
        BatchedDriver(d)


# ---- the scheduler ---------------------------------------------------------------------------
@pytest.mark.parametrize("arrivals", ["batch", "closed"])
def test_continuous_batching_times(arrivals: str) -> None:
    got = BatchedAR(batched(), 2, arrivals).run(_requests(None))
    t = got.times
    arr, adm, first, fin = (np.asarray(x) for x in (t.arrival, t.admitted, t.first, t.finish))
    assert (arr <= adm).all() and (adm <= first).all() and (first <= fin).all()
    assert list(np.argsort(adm, kind="stable")) == list(range(len(MIX)))  # FIFO
    for x in adm:  # never more than max_batch sequences admitted and unfinished
        assert ((adm <= x) & (fin > x)).sum() <= 2
    assert fin.max() == pytest.approx(got.time_s, abs=1e-3)
    if arrivals == "closed":  # a request arrives when a user's previous one finished
        assert all(a == 0.0 or a in set(fin) for a in arr)
        assert (arr[2:] > 0).all()
    else:
        assert (arr == 0.0).all()


def test_bad_input_refused() -> None:
    with pytest.raises(ConfigError, match="max_batch"):
        BatchedAR(batched(), 0)
    with pytest.raises(ConfigError, match="arrivals"):
        BatchedAR(batched(), 2, "poisson")
    with pytest.raises(ConfigError, match="exit_layer"):
        BatchedEESD(batched(), 2, 4, 3)
    with pytest.raises(ConfigError, match=r"requests\[0\].new_tokens"):
        BatchedAR(batched(), 2).run([Request((1, 2), 0)])
    with pytest.raises(ConfigError, match=r"requests\[1\].prompt"):
        BatchedAR(batched(), 2).run([Request((1,), 2), Request((), 2)])
