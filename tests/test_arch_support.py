"""What cannot be driven is refused before any decoding, in one line naming the architecture
and why; a checkpoint whose weights do not all load into its architecture is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from ppsd_real import runner
from ppsd_real.arch import zoo
from ppsd_real.arch.support import check_config
from ppsd_real.model_loading import ModelSpec, load_model
from ppsd_sim.cli.main import main
from ppsd_sim.errors import ConfigError
from tests.arch_helpers import one_thread, scratch  # noqa: F401


def _save(model_type: str, folder: Path, **fields) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(model_type, **fields)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("model_type", "fields", "why"),
    [
        ("t5", {}, "t5: not a causal language model"),
        ("bart", {}, "bart: an encoder-decoder model"),
        (
            "llama4_text",
            {"attention_chunk_size": 8, "num_hidden_layers": 2},
            "llama4_text: chunked attention",
        ),
    ],
)
def test_refused_from_the_config_alone(model_type: str, fields: dict, why: str) -> None:
    from transformers import AutoConfig

    with pytest.raises(ConfigError, match=why):
        check_config(AutoConfig.for_model(model_type, **fields))


def test_refused_by_structure_before_decoding(capsys) -> None:
    """bloom adds ALiBi biases the model computes in its own forward: the observation sees a
    layer input it cannot reproduce, and the run stops there, one line, exit 2."""
    folder = _save(
        "bloom",
        scratch("bloom") / "m",
        hidden_size=32,
        n_layer=2,
        n_head=4,
        vocab_size=128,
    )
    with pytest.raises(ConfigError, match=r"bloom: layer 0 receives 'alibi'"):
        runner.load(ModelSpec(preset=None, path=str(folder)))
    capsys.readouterr()
    rc = main(["run", "--model-dir", str(folder), "--scheme", "ar", "--tokens", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "bloom" in err[0], err


def test_weights_that_do_not_load_are_refused() -> None:
    """A Qwen3 checkpoint labelled as Llama would lose its q_norm/k_norm silently; a missing
    tensor would be initialised at random. Both are refused by name."""
    folder = zoo.save_tiny("qwen3", scratch("qwen3-as-llama") / "m")
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"weights not used by the architecture for llama: .*k_norm"
    ):
        load_model(ModelSpec(preset=None, path=str(folder)))
    folder = zoo.save_tiny("qwen3", scratch("qwen3-missing") / "m")
    weights = load_file(str(folder / "model.safetensors"))
    weights.pop("model.layers.1.mlp.up_proj.weight")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=r"weights missing for qwen3: model.layers.1.mlp.up_proj"):
        load_model(ModelSpec(preset=None, path=str(folder)))


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a model folder"):
        load_model(ModelSpec(preset=None, path=str(tmp_path)))
    (tmp_path / "config.json").write_text('{"model_type": "no-such-model"}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"model.path: .*config.json"):
        load_model(ModelSpec(preset=None, path=str(tmp_path)))
