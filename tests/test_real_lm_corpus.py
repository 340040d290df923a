"""The small model's corpus, tokenizer and acceptance statistics (fast; no training)."""

from __future__ import annotations

import numpy as np
import pytest

from ppsd_real.lm.card import position_statistics
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


def test_card_statistics_state_their_chain_and_skip_the_bonus_position():
    # positions 0-3 accepted (a round of 4), 4 is the bonus token's (never drafted, though its
    # bit is 1), 5 rejected (a round of 0): τ = (4 + 0) / 2, not (4 + 1) / 2 as counting the
    # bonus position as the next round's first draft would give
    st = position_statistics([np.array([1, 1, 1, 1, 1, 0])], gamma=4)
    assert st.tau == pytest.approx(2.0)
    assert st.alpha == pytest.approx(5 / 6)  # over output positions
    assert st.judged_alpha == pytest.approx(4 / 5)  # over the 5 drafts EESD judged
    assert position_statistics([np.zeros(5, dtype=int)]).tau == 0.0
    assert position_statistics([np.ones(10, dtype=int)]).burstiness is None  # constant
    alternating = np.tile([1, 0], 50)
    assert position_statistics([alternating]).burstiness == pytest.approx(-1.0, abs=0.03)
    blocks = np.repeat([1, 0] * 10, 10)
    assert position_statistics([blocks]).burstiness > 0.8  # clustered rejections
    # two continuations: no neighbour pair across the end of one and the start of the next
    split = position_statistics([np.array([1, 1, 1]), np.array([0, 0, 0])])
    assert split.burstiness == pytest.approx(1.0)
    assert set(position_statistics([blocks]).card_fields()) == {
        "alpha_greedy",
        "tau_gamma4",
        "burstiness_lag1",
        "eesd_gamma4_judged",
    }


def test_the_card_figures_are_what_the_simulator_takes():
    # A position chain with known (α, ρ): the card's estimates of it, fed back to the
    # simulator as `--burstiness-over positions` (or the judged figures as `judged`), give
    # back the EESD rounds the card saw. An oracle for "the card's figures are the ones the
    # simulator takes".
    from ppsd_sim.acceptance import AcceptanceSampler
    from ppsd_sim.records import AcceptanceSpec

    truth = AcceptanceSpec.markov(0.7, 0.35, chain="positions")
    runs = AcceptanceSampler(truth, seed=11).runs(60_000)
    bits = np.concatenate([np.r_[np.ones(r, dtype=int), 0] for r in runs])
    st = position_statistics(np.array_split(bits, 40))  # 40 "continuations"
    assert st.alpha == pytest.approx(0.7, abs=0.01)
    assert st.burstiness == pytest.approx(0.35, abs=0.02)
    as_positions = AcceptanceSpec.markov(st.alpha, st.burstiness, chain="positions")
    rounds = AcceptanceSampler(as_positions, seed=3).rounds(100_000, 4)
    assert float(rounds.mean()) == pytest.approx(st.tau, rel=0.02)
    as_judged = AcceptanceSpec.markov(st.judged_alpha, st.judged_burstiness)
    rounds = AcceptanceSampler(as_judged, seed=3).rounds(100_000, 4)
    assert float(rounds.mean()) == pytest.approx(st.tau, rel=0.02)
    # the chain matters: the position figures read as judged ones overstate τ
    naive = AcceptanceSampler(AcceptanceSpec.markov(st.alpha, st.burstiness), seed=3)
    assert float(naive.rounds(100_000, 4).mean()) > st.tau * 1.03
