"""The model card's acceptance runs: pinned prompts (so the card reproduces on any Python patch
release, whose stdlib text differs) and the greedy table measured by ``ppsd accept``'s code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppsd_real.lm import card, card_eval
from ppsd_real.prompts import Prompt
from ppsd_sim.errors import ConfigError
from tests.arch_helpers import SHIPPED, one_thread  # noqa: F401

CARD = json.loads((SHIPPED / "card.json").read_text(encoding="utf-8"))


def test_the_pinned_prompts_are_the_cards_protocol() -> None:
    g = CARD["greedy_eval"]
    assert g["prompt_file"] == card_eval.FILE
    got = card_eval.pinned(SHIPPED, g["prompts"], g["prompt_len"])
    vocab = json.loads((SHIPPED / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    assert len({p.ids for p in got}) == g["prompts"]  # distinct windows
    assert all(0 <= t < vocab for p in got for t in p.ids)
    with pytest.raises(ConfigError, match=r"holds 16 prompts of \[64\] tokens, not 16 of 32"):
        card_eval.pinned(SHIPPED, g["prompts"], 32)


@pytest.mark.slow
def test_the_cards_greedy_table_is_ppsd_accepts_measurement() -> None:
    """~12 s: ``ppsd accept``'s code on the pinned prompts gives the card's greedy figures (α,
    ρ, τ and the judged-draft α and ρ) at the first and last exit: here exactly; the bound
    allows the odd argmax tie that another CPU's kernels may break the other way (one flipped
    outcome of 2,048 moves α by 0.0005)."""
    g = CARD["greedy_eval"]
    prompts = card_eval.pinned(SHIPPED, g["prompts"], g["prompt_len"])
    rec = card_eval.acceptance_record(SHIPPED, prompts, g["new_tokens"], exits=(1, 5))
    for row in (CARD["exits"][0], CARD["exits"][-1]):
        for head in ("shared", "trained"):
            got = card.position_statistics(list(rec.of(row["exit"], head).traces)).card_fields()
            want = {k: row[head][k] for k in got}
            assert _flat(got) == pytest.approx(_flat(want), abs=2e-3), (row["exit"], head)


def _flat(fields: dict) -> dict:
    """The card's figures as one flat dict (its judged-draft pair nested one level down)."""
    out = {}
    for k, v in fields.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def test_prompts_round_trip_and_bad_files_are_refused(tmp_path: Path) -> None:
    ps = [Prompt((1, 2, 3), "a@0"), Prompt((4, 5, 6), "a@9")]
    card_eval.record(tmp_path, ps)
    assert card_eval.load(tmp_path) == ps
    assert card_eval.pinned_or_new(tmp_path, 2, 3) == ps  # pinned: not rebuilt, not rewritten
    f = card_eval.path(tmp_path)
    for text, msg in (
        ("{", "is not a prompts file"),
        ('{"prompts": [{"ids": [1]}]}', "is not a prompts file"),
        ('{"prompts": []}', "holds no prompts"),
        ('{"prompts": [{"source": "x", "ids": []}]}', "holds no prompts"),
    ):
        f.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=msg):
            card_eval.load(tmp_path)
    f.unlink()
    with pytest.raises(ConfigError, match=r"is missing: run python -m ppsd_real\.lm\.card"):
        card_eval.load(tmp_path)


@pytest.mark.slow
def test_card_measure_pins_new_prompts_and_keeps_pinned_ones(tmp_path: Path) -> None:
    """~10 s: ``card.measure`` on a copy of the shipped folder: with the card's protocol it
    measures on the pinned prompts (the file untouched), with another shape it pins new ones."""
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(SHIPPED, folder)
    before = card_eval.path(folder).read_bytes()
    got = card.measure(folder, 16, 64, 16, max_windows=2, threads=1)
    assert card_eval.path(folder).read_bytes() == before
    assert got["greedy_eval"] == {**CARD["greedy_eval"], "new_tokens": 16}
    assert [r["exit"] for r in got["exits"]] == [1, 2, 3, 4, 5]
    small = card.measure(folder, 3, 20, 8, max_windows=2, threads=1)
    pinned = card_eval.load(folder)
    assert len(pinned) == 3 and {len(p.ids) for p in pinned} == {20}
    assert small["greedy_eval"]["prompts"] == 3
    assert card_eval.pinned(folder, 3, 20) == pinned  # the next run reads them back
