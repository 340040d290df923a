"""Load a causal LM from a local directory or build a seeded random one from a preset.

A ``ModelSpec`` is small and picklable, so each stage process can rebuild exactly the same
weights (same seed, same torch) instead of receiving them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ppsd_real.presets import get_preset, llama_config
from ppsd_sim.errors import ConfigError

#: the project's own trained model (``ppsd_real.lm``), shipped with its early-exit heads
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "stdlib-lm"

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


#: a checkpoint's own weight files (what its fingerprint covers; heads saved beside are not)
WEIGHT_PREFIXES = ("model", "pytorch_model")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
#: files larger than this are fingerprinted by sampled blocks (a fine-tune changes them all)
_FULL_HASH_BYTES = 256 << 20
_BLOCKS, _BLOCK = 64, 64 << 10


def read_config(path: str | Path, field: str = "model.path") -> Any:
    """The transformers config of a model folder; ConfigError if the folder is not a model."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ConfigError(field, f"{folder} is not a model folder (no config.json)")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ConfigError(field, f"{folder}/config.json: {first}") from None


def model_fingerprint(spec: ModelSpec) -> str:
    """A stable id of the model's exact weights: sha256 over config.json and every weight
    file's (``model*.safetensors``, ``pytorch_model*.bin``) name and bytes (files over 256 MiB: their size and 64 evenly spaced 64 KiB
    blocks); a preset is named by its shape and seed. Heads trained for one model are
    refused for another by this."""
    if spec.path is None:
        return "preset:" + hashlib.sha256(spec.name.encode()).hexdigest()[:16]
    folder = Path(spec.path)
    h = hashlib.sha256((folder / "config.json").read_bytes())
    files = sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith(WEIGHT_PREFIXES) and p.suffix in WEIGHT_SUFFIXES and p.is_file()
    )
    if not files:
        raise ConfigError("model.path", f"{folder} holds no weight files (model*.safetensors)")
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.name}:{size}:".encode())
        with p.open("rb") as fh:
            if size <= _FULL_HASH_BYTES:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(block)
            else:
                for i in range(_BLOCKS):
                    fh.seek(i * (size - _BLOCK) // (_BLOCKS - 1))
                    h.update(fh.read(_BLOCK))
    return "sha256:" + h.hexdigest()


@contextlib.contextmanager
def _quiet_loader() -> Iterator[None]:
    """The library's per-tensor progress bar and load report off while it loads: what they
    say is checked (``_check_weights``) and reported in one line instead."""
    from transformers.utils import logging as tlog

    bars, level = tlog.is_progress_bar_enabled(), tlog.get_verbosity()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


def _check_weights(info: dict[str, Any], folder: str, arch: str) -> None:
    """Refuse a checkpoint whose weights do not all load into its architecture (a missing
    weight would be newly initialised, an unexpected one silently dropped)."""
    for key, what in (
        ("missing_keys", "missing"),
        ("unexpected_keys", "not used by the architecture"),
        ("mismatched_keys", "of the wrong shape"),
    ):
        keys = sorted(str(k if isinstance(k, str) else k[0]) for k in info.get(key) or ())
        if keys:
            more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
            raise ConfigError(
                "model.path",
                f"{folder}: weights {what} for {arch}: {keys[0]}{more}; refusing a model "
                "that would not be the checkpoint",
            )


def load_model(spec: ModelSpec) -> torch.nn.Module:
    """The model in eval mode on its device; random presets are deterministic in ``seed``.
    A folder is checked before its weights load (a model folder, an architecture the runner
    drives: ``arch.support``) and after (every weight loaded, none dropped)."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from ppsd_real.arch.support import check_config

    if spec.path is not None:
        config = read_config(spec.path)
        check_config(config)
        try:
            with _quiet_loader():
                model, info = AutoModelForCausalLM.from_pretrained(
                    spec.path,
                    local_files_only=True,
                    dtype=spec.torch_dtype,
                    output_loading_info=True,
                )
        except (OSError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError("model.path", f"cannot load {spec.path}: {first}") from None
        _check_weights(info, spec.path, str(config.model_type))
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
