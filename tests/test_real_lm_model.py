"""The shipped small model (ppsd_real/models/stdlib-lm): it loads, scores the documented
held-out loss, decodes losslessly with its trained early-exit heads, and its acceptance by exit
layer matches its model card. Held-out text comes from this interpreter's stdlib, which may
differ slightly between Python versions: tolerances allow for that."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from ppsd_real import runner
from ppsd_real.drafters import DrafterSpec
from ppsd_real.lm.card import held_out_windows, load, score_held_out, trained_heads
from ppsd_real.model_loading import SHIPPED_MODEL, ModelSpec
from ppsd_real.threads import torch_threads
from ppsd_sim.records import SchemeConfig

CARD = json.loads((SHIPPED_MODEL / "card.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def shipped():
    with torch_threads(1):
        model, tok = load(SHIPPED_MODEL)
        yield model, tok, trained_heads(SHIPPED_MODEL, model.config.num_hidden_layers - 1)


def test_weights_are_small_enough_to_ship():
    total = sum(p.stat().st_size for p in SHIPPED_MODEL.glob("*.safetensors"))
    assert total <= 16 * 2**20
    assert len(list(SHIPPED_MODEL.glob("ee_head_exit*.safetensors"))) == 5


@pytest.mark.long
def test_held_out_loss_is_the_documented_one(shipped):
    model, tok, _ = shipped
    loss, _ = score_held_out(model, held_out_windows(tok, 200), {})
    assert loss == pytest.approx(CARD["held_out_loss_nats"], rel=0.03)
    assert loss < 5.0  # far below the uniform 7.62 nats of a 2,048-token vocabulary: it learned


def test_acceptance_by_exit_matches_the_card_and_grows_with_depth(shipped):
    model, tok, heads = shipped
    _, forced = score_held_out(model, held_out_windows(tok, 24), heads)
    alpha = {
        int(k.split("/")[1]): float(np.concatenate(v, axis=None).mean())
        for k, v in forced.items()
        if k.startswith("trained/")
    }
    for row in CARD["exits"]:
        assert alpha[row["exit"]] == pytest.approx(row["trained"]["alpha_held_out"], abs=0.06)
    exits = sorted(alpha)
    assert alpha[exits[-1]] > alpha[exits[0]] + 0.1
    assert all(alpha[b] >= alpha[a] - 0.03 for a, b in itertools.pairwise(exits))
    shared = {
        int(k.split("/")[1]): float(np.concatenate(v, axis=None).mean())
        for k, v in forced.items()
        if k.startswith("shared/")
    }
    assert sum(alpha.values()) > sum(shared.values())  # self-distillation helped overall


@pytest.mark.parametrize("exit_layer", (1, 3, 5))
def test_decoding_with_the_trained_head_is_lossless_on_held_out_prompts(exit_layer, shipped):
    _, tok, _ = shipped
    m = runner.load(ModelSpec(preset=None, path=str(SHIPPED_MODEL)))
    head = DrafterSpec(
        "early-exit", head_path=str(SHIPPED_MODEL / f"ee_head_exit{exit_layer}.safetensors")
    )
    batch = held_out_windows(tok, 40)
    L = m.n_layers
    for w in (0, 17, 39):
        prompt = batch[w, :48].tolist()
        ar = runner.run_local(m, SchemeConfig.ar(), head, prompt, 40, None)
        gen = m.model.generate(
            torch.tensor([prompt]), max_new_tokens=40, min_new_tokens=40, do_sample=False
        )
        assert ar.tokens == gen[0, len(prompt) :].tolist()
        eesd = runner.run_local(m, SchemeConfig.eesd(exit_layer, 4), head, prompt, 40, ar.tokens)
        ppsd = runner.run_local(m, SchemeConfig.ppsd((exit_layer, L)), head, prompt, 40, ar.tokens)
        assert eesd.tokens == ar.tokens and ppsd.tokens == ar.tokens
        assert ppsd.trace and sum(ppsd.trace) > 0  # the real head's drafts do get accepted
        if exit_layer == 1:
            assert sum(ppsd.trace) < len(ppsd.trace)  # ... and a shallow exit's get rejected too


def test_ppsd_distributed_with_the_trained_head_is_lossless(shipped):
    spec = ModelSpec(preset=None, path=str(SHIPPED_MODEL))
    m = runner.load(spec)
    head = DrafterSpec("early-exit", head_path=str(SHIPPED_MODEL / "ee_head_exit3.safetensors"))
    scheme = SchemeConfig.ppsd((3, m.n_layers))
    _, tok, _ = shipped
    prompt = held_out_windows(tok, 8)[5, :48].tolist()
    ref = runner.run_local(m, SchemeConfig.ar(), head, prompt, 48, None).tokens
    be = runner.open_distributed(spec, scheme, m.n_layers, head)
    try:
        assert be.run(prompt, 48, head, ref).tokens == ref
    finally:
        be.close()
