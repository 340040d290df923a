"""Sampled EESD and PPSD produce text distributed exactly as AR sampling's (chi-square), and the
same test rejects the two classic wrong decoders.

The model is a real Llama of 2 layers with a vocabulary of 8 (its LM head scaled so the
distributions are far from uniform) and an early-exit head after layer 1 that disagrees with
the full model (Σ min(p, q) ≈ 0.4-0.75), so drafts are often rejected and the residual matters.
Every decode below is the real decoder (``ARDecoder``, ``EESDDecoder``, PPSD's ``Controller``
and ``Stage`` on the sequential backend), one sequence per seed; the wrong decoders are the
real decoders with a wrong judging rule passed through their ``judge_rule`` parameter.

Significance: the hypothesis "same distribution as AR" is rejected when any of the three
tables (first token, first two tokens, all three) has a two-sample chi-square p-value below
SIGNIFICANCE / 3 (Bonferroni): a correct decoder fails with probability at most 1e-3 over the
choice of seeds. Seeds are fixed, so a run is reproducible. The long version (more sequences,
every wrong rule on every scheme, another warping) runs with ``PPSD_LONG_TESTS=1``.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

from ppsd_real import sampling
from ppsd_real.backends.sequential import run_sequential
from ppsd_real.decoders import ARDecoder, DecodeResult, EESDDecoder
from ppsd_real.drafters import Drafter, DrafterSpec
from ppsd_real.layers import LayerDriver, ModelParts
from ppsd_real.sampling import JudgeRule, SamplingSpec
from ppsd_sim.records import SchemeConfig
from tests.test_sampling_rule import _accept_if_equal_to_a_sample, _no_residual

VOCAB, HIDDEN, EXIT, GAMMA, TOKENS = 8, 16, 1, 2, 3
PROMPT = [1, 5, 7]
SIGNIFICANCE = 1e-3
TABLES = 3  # first token, first two, all three
N = 1000  # sequences per decoder (default run)
SPEC = {"temperature": 1.0, "top_p": 0.9}  # top-p cuts tokens: q may put mass where p has none
LONG = os.environ.get("PPSD_LONG_TESTS") == "1"


@functools.cache
def _micro() -> tuple[LayerDriver, torch.nn.Module]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(cfg).eval()
    ee = torch.nn.Linear(HIDDEN, VOCAB, bias=False)
    noise = torch.randn(VOCAB, HIDDEN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
        w = model.lm_head.weight
        ee.weight.copy_(w + float(w.std()) * noise)
    return LayerDriver(ModelParts.of(model)), ee.eval()


Decode = Callable[[SamplingSpec], DecodeResult]


def _ar(spec: SamplingSpec) -> DecodeResult:
    return ARDecoder(_micro()[0], spec).decode(PROMPT, TOKENS)


def _eesd(rule: JudgeRule = sampling.judge) -> Decode:
    d, ee = _micro()
    drafter = Drafter(DrafterSpec(), VOCAB)
    return lambda spec: EESDDecoder(d, EXIT, GAMMA, drafter, True, ee, spec, rule).decode(
        PROMPT, TOKENS
    )


def _ppsd(rule: JudgeRule = sampling.judge) -> Decode:
    d, ee = _micro()
    drafter, scheme = Drafter(DrafterSpec(), VOCAB), SchemeConfig.ppsd((EXIT, 2), exit_stage=1)
    return lambda spec: run_sequential(
        d, scheme, drafter, PROMPT, TOKENS, ee, True, spec, judge_rule=rule
    )


def _draw(decode: Decode, n: int, seed0: int, **spec) -> np.ndarray:
    """n sequences, seed0 .. seed0 + n - 1: an (n, TOKENS) array."""
    with torch.inference_mode():
        out = [decode(SamplingSpec(seed=seed0 + i, **spec)).tokens for i in range(n)]
    return np.asarray(out)


def _p_values(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Two-sample chi-square p-value of each table (prefixes of 1, 2, 3 tokens); bins with
    fewer than 10 sequences in both samples together are pooled into one."""
    out = []
    for k in range(1, TOKENS + 1):
        ca, cb = Counter(map(tuple, a[:, :k])), Counter(map(tuple, b[:, :k]))
        keys = sorted(set(ca) | set(cb))
        common = [x for x in keys if ca[x] + cb[x] >= 10]
        rare = [x for x in keys if ca[x] + cb[x] < 10]
        rows = [[ca[x] for x in common], [cb[x] for x in common]]
        if sum(ca[x] + cb[x] for x in rare) > 0:
            rows[0].append(sum(ca[x] for x in rare))
            rows[1].append(sum(cb[x] for x in rare))
        out.append(
            1.0 if len(rows[0]) < 2 else float(chi2_contingency(rows, correction=False).pvalue)
        )
    return out


def _same(p_values: list[float]) -> bool:
    return min(p_values) > SIGNIFICANCE / TABLES


@functools.cache
def _ar_sample(n: int, key: tuple) -> np.ndarray:
    return _draw(_ar, n, 0, **dict(key))


def _check(n: int, spec: dict, right: dict[str, Decode], wrong: dict[str, Decode]) -> None:
    ar = _ar_sample(n, tuple(sorted(spec.items())))
    seed0 = 1
    for name, dec in {**right, **wrong}.items():
        seed0 += 1_000_000  # each decoder its own seeds
        t0 = time.perf_counter()
        pv = _p_values(ar, _draw(dec, n, seed0, **spec))
        verdict = "same" if _same(pv) else "DIFFERENT"
        print(
            f"{name}: chi-square p-values (1, 2, 3 tokens) "
            f"{', '.join(f'{p:.3g}' for p in pv)} -> {verdict} ({time.perf_counter() - t0:.1f} s)"
        )
        assert _same(pv) == (name in right), (name, pv)


def test_ar_sampling_matches_the_exact_distribution():
    """The reference itself: AR's first two tokens against p enumerated from the model (one
    forward per first token), so the two-sample tests compare against the right thing."""
    d, _ = _micro()
    spec = SamplingSpec(**SPEC)
    ar = _ar_sample(N, tuple(sorted(SPEC.items())))

    def dist(prefix: list[int]) -> np.ndarray:
        h = d.run_layers(d.embed(prefix), 0, d.n_layers, d.new_cache(), 0)
        return sampling.probs(d.logits(h[:, -1:])[-1], spec).numpy()

    with torch.inference_mode():
        p1 = dist(PROMPT)
        joint = np.concatenate([p1[t] * dist([*PROMPT, t]) for t in range(VOCAB)])
    counts = np.bincount(ar[:, 0] * VOCAB + ar[:, 1], minlength=VOCAB * VOCAB)
    exp = joint * len(ar)
    assert counts[exp == 0].sum() == 0, "a token outside top-p was sampled"
    big = exp >= 5
    f_obs, f_exp = list(counts[big]), list(exp[big])
    if exp[~big].sum() > 0:  # the rare pairs pooled into one bin
        f_obs.append(counts[~big].sum())
        f_exp.append(exp[~big].sum())
    pv = float(chisquare(f_obs, f_exp).pvalue)
    print(f"AR vs exact p(t1, t2): chi-square p-value {pv:.3g}")
    assert pv > SIGNIFICANCE


def test_eesd_and_ppsd_sample_as_ar_and_wrong_rules_are_rejected():
    _check(
        N,
        SPEC,
        right={"EESD": _eesd(), "PPSD": _ppsd()},
        wrong={
            "PPSD accepting when the draft equals a sample of p": _ppsd(
                _accept_if_equal_to_a_sample
            ),
            "EESD without the residual": _eesd(_no_residual),
        },
    )


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="long version: PPSD_LONG_TESTS=1")
@pytest.mark.parametrize("spec", [SPEC, {"temperature": 0.7, "top_k": 5}])
def test_sampling_exact_long(spec):
    _check(
        4 * N,
        spec,
        right={"EESD": _eesd(), "PPSD": _ppsd()},
        wrong={
            "EESD accepting when the draft equals a sample of p": _eesd(
                _accept_if_equal_to_a_sample
            ),
            "PPSD accepting when the draft equals a sample of p": _ppsd(
                _accept_if_equal_to_a_sample
            ),
            "EESD without the residual": _eesd(_no_residual),
            "PPSD without the residual": _ppsd(_no_residual),
        },
    )
