"""Load a causal LM from a local directory or build a seeded random one from a preset.

A ``ModelSpec`` is small and picklable, so each stage process can rebuild exactly the same
weights (same seed, same torch) instead of receiving them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ppsd_real.presets import get_preset, llama_config
from ppsd_sim.errors import ConfigError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelSpec:
    """Which model: exactly one of ``preset`` (random weights from ``seed``) or ``path``."""

    preset: str | None = "tiny"
    path: str | None = None
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.path is None):
            raise ConfigError("model", "give exactly one of a preset name or a model directory")
        if self.preset is not None:
            get_preset(self.preset)
        if self.path is not None and not Path(self.path).is_dir():
            raise ConfigError("model.path", f"model directory not found: {self.path}")
        if self.dtype not in _DTYPES:
            raise ConfigError(
                "model.dtype", f"must be one of {', '.join(_DTYPES)}, got {self.dtype!r}"
            )
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError("model.device", f"must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    @property
    def name(self) -> str:
        return f"preset:{self.preset}(seed={self.seed})" if self.preset else f"dir:{self.path}"

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


def load_model(spec: ModelSpec) -> torch.nn.Module:
    """The model in eval mode on its device; random presets are deterministic in ``seed``."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if spec.path is not None:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                spec.path, local_files_only=True, dtype=spec.torch_dtype
            )
        except (OSError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError("model.path", f"cannot load {spec.path}: {first}") from None
    else:
        config = llama_config(get_preset(spec.preset or ""))
        if spec.device == "cpu":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(spec.seed)
                model = LlamaForCausalLM(config)
            model = model.to(spec.torch_dtype)
        else:  # built on the GPU in its dtype: a 7B shape in fp32 on the host takes minutes
            dev = torch.device(spec.device)
            default = torch.get_default_dtype()
            with torch.random.fork_rng(devices=[dev.index or 0]), dev:
                torch.manual_seed(spec.seed)
                torch.set_default_dtype(spec.torch_dtype)
                try:
                    model = LlamaForCausalLM(config)
                finally:
                    torch.set_default_dtype(default)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = None
    return model.to(spec.device).eval()
