"""Greedy AR equals generate(); EESD and PPSD (sequential backend) equal AR token for token."""

from __future__ import annotations

import pytest
import torch

from ppsd_real.backends.sequential import run_sequential
from ppsd_real.decoders import EESDDecoder
from ppsd_real.drafters import Drafter, DrafterSpec
from ppsd_sim.records import SchemeConfig
from tests.real_fixtures import reference, tiny_driver, tiny_model

PROMPTS = [(1, 5, 7, 9, 11), (3,), (200, 17, 42, 99, 100, 101, 7, 8)]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_ar_equals_generate(prompt: tuple[int, ...]) -> None:
    n = 30
    got = reference(prompt, n)
    gen = tiny_model().generate(
        torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False
    )
    assert list(got) == gen[0, len(prompt) :].tolist()


def _drafter(alpha: float | None, seed: int, ref: tuple[int, ...]) -> Drafter:
    if alpha is None:
        return Drafter(DrafterSpec("early-exit"), 256)
    return Drafter(DrafterSpec("oracle", alpha, seed), 256, list(ref))


# (prompt index, exit layer, gamma, alpha, seed, n, cache_reuse): exits 1 and L-1, rejections
# everywhere (alpha 0), never (alpha 1), and n not a multiple of gamma+1 (ends mid-round).
EESD_CASES = [
    (0, 1, 3, 0.0, 0, 23, True),
    (0, 3, 3, 1.0, 0, 23, True),
    (1, 2, 4, 0.5, 1, 30, True),
    (2, 2, 2, 0.8, 2, 17, False),
    (1, 1, 5, 0.9, 3, 41, False),
    (0, 3, 1, 0.3, 4, 12, True),
    (2, 2, 4, None, 0, 25, True),
    (0, 1, 4, None, 0, 12, False),
]


@pytest.mark.parametrize("case", EESD_CASES)
def test_eesd_equals_ar(case: tuple) -> None:
    pi, e, g, alpha, seed, n, reuse = case
    prompt = PROMPTS[pi]
    ref = reference(prompt, n)
    res = EESDDecoder(tiny_driver(), e, g, _drafter(alpha, seed, ref), reuse).decode(
        list(prompt), n
    )
    assert res.tokens == list(ref)
    assert len(res.trace) == len(res.positions)
    if alpha == 0.0:
        assert sum(res.trace) == 0 and all(p == 1 for p in res.positions)
    if alpha == 1.0:
        assert all(res.trace) and res.histogram[-1] == sum(res.histogram) > 0


# (prompt index, bounds, exit stage, alpha, seed, n)
PPSD_CASES = [
    ((0, (1, 4), 1, 0.0, 0, 20)),
    ((0, (3, 4), 1, 1.0, 0, 20)),
    ((1, (2, 4), 1, 0.5, 1, 33)),
    ((2, (1, 2, 3, 4), 1, 0.7, 2, 29)),
    ((2, (1, 2, 3, 4), 2, 0.7, 3, 29)),
    ((0, (1, 2, 3, 4), 3, 0.9, 4, 31)),
    ((1, (1, 3, 4), 2, 0.2, 5, 18)),
    ((0, (2, 4), 1, None, 0, 27)),
    ((1, (1, 2, 3, 4), 1, None, 0, 27)),
    ((2, (2, 4), 1, 0.5, 6, 1)),
]


@pytest.mark.parametrize("case", PPSD_CASES)
@pytest.mark.parametrize("run_ahead", [True, False])
def test_ppsd_sequential_equals_ar(case: tuple, run_ahead: bool) -> None:
    pi, bounds, es, alpha, seed, n = case
    prompt = PROMPTS[pi]
    ref = reference(prompt, n)
    scheme = SchemeConfig.ppsd(bounds, exit_stage=es)
    res = run_sequential(
        tiny_driver(), scheme, _drafter(alpha, seed, ref), list(prompt), n, run_ahead=run_ahead
    )
    assert res.tokens == list(ref)
    assert len(res.trace) == n  # every output position's draft is judged exactly once
    if alpha == 0.0:
        assert sum(res.trace) == 0
        if run_ahead:
            assert res.flushes > 0
    if alpha == 1.0:
        assert all(res.trace) and res.flushes == 0


def test_rejection_at_first_and_last_position() -> None:
    prompt, n = PROMPTS[0], 15
    ref = reference(prompt, n)
    dr = Drafter(DrafterSpec("oracle", 1.0, 0), 256, list(ref))
    dr._tokens[0] = (ref[0] + 1) % 256  # wrong first draft
    dr._tokens[n - 1] = (ref[n - 1] + 1) % 256  # wrong last draft
    res = run_sequential(tiny_driver(), SchemeConfig.ppsd((2, 4)), dr, list(prompt), n)
    assert res.tokens == list(ref)
    assert res.trace[0] == 0 and res.trace[-1] == 0 and sum(res.trace) == n - 2
    # EESD's first token comes from the prefill, so its first draft is output position 1.
    dr._tokens[1] = (ref[1] + 1) % 256
    eesd = EESDDecoder(tiny_driver(), 2, 3, dr).decode(list(prompt), n)
    assert eesd.tokens == list(ref) and eesd.trace[0] == 0 and eesd.positions[0] == 1


@pytest.mark.parametrize("alpha", [0.3, 0.8])
def test_oracle_acceptance_matches_alpha(alpha: float) -> None:
    prompt, n = PROMPTS[1], 400
    ref = reference(prompt, n)
    res = run_sequential(
        tiny_driver(), SchemeConfig.ppsd((2, 4)), _drafter(alpha, 7, ref), list(prompt), n
    )
    rate = sum(res.trace) / len(res.trace)
    sigma = (alpha * (1 - alpha) / len(res.trace)) ** 0.5
    assert abs(rate - alpha) < 4 * sigma
    eesd = EESDDecoder(tiny_driver(), 2, 3, _drafter(alpha, 8, ref)).decode(list(prompt), n)
    rate = sum(eesd.trace) / len(eesd.trace)
    assert abs(rate - alpha) < 4 * (alpha * (1 - alpha) / len(eesd.trace)) ** 0.5
