"""Named LlamaConfig shapes, so tests, CPU benchmarks and GPU runs name a model in one word."""

from __future__ import annotations

from dataclasses import dataclass

from ppsd_sim.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """A Llama shape. ``purpose`` says what the shape is for (shown by ``--help``)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    purpose: str


#: tiny: a few MB, for tests. cpu-bench: chosen by measurement on a 2-core CPU (see
#: BENCHMARKS.md): hidden 384 keeps one layer near 0.5-0.8 ms on one thread and two
#: single-thread stage processes beat one two-thread process. The last two are real shapes.
PRESETS: dict[str, Preset] = {
    "tiny": Preset(64, 4, 4, 2, 128, 256, "tests (a few MB)"),
    "cpu-bench": Preset(384, 8, 6, 6, 1024, 4096, "2-core CPU benchmarks"),
    "llama-3.2-1b": Preset(2048, 16, 32, 8, 8192, 128256, "GPU runs (Llama-3.2-1B shape)"),
    "llama-2-7b": Preset(4096, 32, 32, 32, 11008, 32000, "GPU runs (Llama-2-7B shape)"),
}

DEFAULT_CPU_PRESET = "cpu-bench"


def get_preset(name: str) -> Preset:
    """The preset of that name, or a ConfigError listing the known ones."""
    if name not in PRESETS:
        raise ConfigError("model.preset", f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]


def llama_config(preset: Preset):
    """A LlamaConfig of that shape. EOS is disabled so runs always produce the asked length."""
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=preset.hidden,
        num_hidden_layers=preset.layers,
        num_attention_heads=preset.heads,
        num_key_value_heads=preset.kv_heads,
        intermediate_size=preset.intermediate,
        vocab_size=preset.vocab,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=None,
        pad_token_id=None,
    )
