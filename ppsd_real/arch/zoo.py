"""Tiny random checkpoints of every architecture family the runner supports.

Each entry is a ``model_type`` and the few config fields that make it small (hidden 64, 4
layers, vocabulary 256). Sliding windows are 8 tokens, so a test passes the window within a
few dozen tokens (real windows are 4096: the crop past the window is what this exercises).
``save_tiny`` writes a folder with transformers' own ``save_pretrained``, exactly what a user's
checkpoint looks like to the loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_COMMON: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": None,
    "pad_token_id": None,
}
_MOE = {"moe_intermediate_size": 32, "num_experts_per_tok": 2}
_WINDOW = 8

#: model_type -> config fields beyond _COMMON (None removes a common field)
TINY: dict[str, dict[str, Any]] = {
    "llama": {},
    "qwen2": {},
    "qwen3": {"head_dim": 16},
    "mistral": {"sliding_window": _WINDOW},
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16, "sliding_window": _WINDOW},
    "gemma3_text": {"head_dim": 16, "sliding_window": _WINDOW, "sliding_window_pattern": 2},
    "phi3": {"pad_token_id": 0},
    "olmo2": {},
    "granite": {"embedding_multiplier": 2.0, "logits_scaling": 1.5, "residual_multiplier": 0.5},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": _WINDOW},
    "qwen2_moe": {
        **_MOE,
        "num_experts": 4,
        "shared_expert_intermediate_size": 32,
    },
    "qwen3_moe": {**_MOE, "num_experts": 4, "head_dim": 16},
    "gpt2": {"n_embd": 64, "n_layer": 4, "n_head": 4, "n_inner": 128, "n_positions": 512},
    "gpt_neox": {"rotary_pct": 0.5},
    "opt": {"ffn_dim": 128, "word_embed_proj_dim": 64, "pad_token_id": 0},
    "qwen3_next": {
        **_MOE,
        "num_experts": 4,
        "shared_expert_intermediate_size": 32,
        "head_dim": 16,
        "linear_num_value_heads": 4,
        "linear_num_key_heads": 2,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 16,
        "full_attention_interval": 2,
    },
    "qwen3_5_text": {
        "head_dim": 16,
        "linear_num_value_heads": 4,
        "linear_num_key_heads": 2,
        "linear_key_head_dim": 16,
        "linear_value_head_dim": 16,
        "full_attention_interval": 2,
    },
}

#: fields of _COMMON that a config class names differently (it takes its own, above)
_RENAMED = {
    "gpt2": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"),
    "opt": ("intermediate_size", "num_key_value_heads"),
}


def tiny_config(model_type: str, **overrides: Any) -> Any:
    """The tiny config of ``model_type`` (KeyError for a type not in ``TINY``)."""
    from transformers import AutoConfig

    fields = {**_COMMON, **TINY[model_type], **overrides}
    for name in _RENAMED.get(model_type, ()):
        fields.pop(name, None)
    if model_type == "gpt2":
        fields.pop("max_position_embeddings")
    return AutoConfig.for_model(model_type, **fields)


def tiny_model(model_type: str, seed: int = 0, **overrides: Any) -> Any:
    """A seeded random model of ``model_type``'s tiny config, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(model_type, **overrides))
    return model.eval()


def save_tiny(
    model_type: str,
    folder: str | Path,
    seed: int = 0,
    tokenizer_from: str | Path | None = None,
    **overrides: Any,
) -> Path:
    """Write a tiny random checkpoint of ``model_type`` to ``folder`` (save_pretrained), with
    the tokenizer of the model folder ``tokenizer_from`` when given (its vocabulary size then
    becomes the model's)."""
    folder = Path(folder)
    if tokenizer_from is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tokenizer_from), local_files_only=True)
        overrides = {"vocab_size": len(tok), **overrides}
        tok.save_pretrained(folder)
    tiny_model(model_type, seed, **overrides).save_pretrained(folder)
    return folder
