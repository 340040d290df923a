"""The synthesiser reads a model's shape from its config.json (analysis.devices.shape_from_config),
checked against the real model's own parameter count and the shipped shape files."""

from __future__ import annotations

import pytest

from analysis.devices import load_model, shape_from_config
from analysis.synth import parse_synth, synthesise
from ppsd_real.arch import zoo
from ppsd_sim.errors import ConfigError
from tests.arch_helpers import SHIPPED, scratch


def test_a_llama_folder_gives_its_exact_shape() -> None:
    folder = zoo.save_tiny("llama", scratch("shape") / "llama")
    shape = shape_from_config(folder)
    shipped = load_model("tiny")  # the same shape, typed by hand from presets.py
    for f in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab", "tied_embeddings"):
        assert getattr(shape, f) == getattr(shipped, f), f
    model = zoo.tiny_model("llama")
    assert shape.layer_params == sum(p.numel() for p in model.model.layers[0].parameters())
    assert shape.params == sum(p.numel() for p in model.parameters())


def test_other_families_are_mapped_and_say_how() -> None:
    gpt2 = shape_from_config(zoo.save_tiny("gpt2", scratch("shape") / "gpt2"))
    assert (gpt2.layers, gpt2.hidden, gpt2.heads, gpt2.intermediate) == (
        4,
        64,
        4,
        round(2 * 128 / 3),
    )
    assert "two-matrix MLP" in gpt2.source
    moe = shape_from_config(zoo.save_tiny("qwen3_moe", scratch("shape") / "moe") / "config.json")
    assert moe.intermediate == 2 * 32 and "active experts" in moe.source


def test_plan_synth_takes_a_model_folder() -> None:
    model, device, dtype = parse_synth(f"{SHIPPED}@h100-sxm", "--synth")
    assert (model.name, model.layers, model.hidden, model.vocab) == ("stdlib-lm", 6, 256, 2048)
    prof = synthesise(model, device, dtype)
    assert len(prof.layer_decode) == 6 and prof.provenance.model == "stdlib-lm"
    with pytest.raises(ConfigError, match=r"--synth: .* is not a model folder"):
        parse_synth("/no/such/model@h100-sxm", "--synth")
