"""The small model's corpus, tokenizer and acceptance statistics (fast; no training)."""

from __future__ import annotations

import numpy as np
import pytest

from ppsd_real.lm.card import lag1, tau_from_trace
from ppsd_real.lm.corpus import HELD_OUT, load_corpus
from ppsd_real.lm.tokenizer import train_tokenizer


def test_corpus_split_is_pinned_disjoint_and_read_from_this_interpreter():
    c = load_corpus()
    held = {p.relative_to(c.root).as_posix() for p in c.held_out}
    assert held == set(HELD_OUT)  # every pinned module exists in this Python
    assert not held & {p.relative_to(c.root).as_posix() for p in c.train}
    assert len(c.train) > 200
    assert not any("test" in p.relative_to(c.root).parts[:-1] for p in c.train)
    assert load_corpus().train == c.train  # deterministic order


def test_byte_level_bpe_round_trips_any_text():
    c = load_corpus()
    tok = train_tokenizer(c.read("train")[:40], vocab_size=400)
    assert tok.get_vocab_size() == 400
    for text in (c.read("held_out")[0][:2000], "def f(x):\n    return 'ü€' * x  # ☃\n"):
        assert tok.decode(tok.encode(text).ids) == text


def test_acceptance_statistics_of_a_trace():
    assert tau_from_trace(np.array([1, 1, 1, 1, 1, 0]), gamma=4) == pytest.approx((4 + 1) / 2)
    assert tau_from_trace(np.zeros(5, dtype=int), gamma=4) == 0.0
    assert lag1(np.ones(10)) is None
    alternating = np.tile([1, 0], 50)
    assert lag1(alternating) == pytest.approx(-1.0, abs=0.03)
    blocks = np.repeat([1, 0] * 10, 10)
    assert lag1(blocks) > 0.8  # clustered rejections
