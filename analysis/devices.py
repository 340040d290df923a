"""Device descriptions and model shapes shipped under ``analysis/data`` (each file cites its
sources), loaded into validated dataclasses for the profile synthesiser."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.io import load_document

DATA = Path(__file__).parent / "data"
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


@dataclass(frozen=True)
class DeviceSpec:
    """Datasheet figures (and labelled assumptions) for one compute unit per stage. The
    tensor-parallel fields are optional: ``tp_degrees`` (splits the synthesiser prices),
    ``tp_link_bandwidth_gb_s`` (one-way bandwidth each device has into the collective) and
    ``tp_allreduce_latency_s`` (fixed cost of one all-reduce); without them no TP costs are
    synthesised."""

    name: str
    description: str
    memory_bandwidth_gb_s: float
    peak_tflops: dict[str, float]
    kernel_launch_s: float
    kernels_per_layer: int
    step_overhead_s: float
    link_latency_s: float
    link_bandwidth_gb_s: float
    memory_gb: float
    memory_efficiency: float = 1.0
    compute_efficiency: float = 1.0
    tp_degrees: tuple[int, ...] = ()
    tp_link_bandwidth_gb_s: float | None = None
    tp_allreduce_latency_s: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in ("memory_bandwidth_gb_s", "link_bandwidth_gb_s", "memory_gb"):
            validate.number(f"device.{n}", getattr(self, n), lo=0.0, lo_open=True)
        for n in ("kernel_launch_s", "step_overhead_s", "link_latency_s"):
            validate.number(f"device.{n}", getattr(self, n), lo=0.0)
        for n in ("memory_efficiency", "compute_efficiency"):
            validate.number(f"device.{n}", getattr(self, n), lo=0.0, hi=1.0, lo_open=True)
        validate.integer("device.kernels_per_layer", self.kernels_per_layer, lo=0)
        for k, v in self.peak_tflops.items():
            validate.number(f"device.peak_tflops.{k}", v, lo=0.0, lo_open=True)
        degrees = tuple(
            validate.integer(f"device.tp_degrees[{i}]", d, lo=2, hi=4096)
            for i, d in enumerate(validate.sequence("device.tp_degrees", self.tp_degrees))
        )
        object.__setattr__(self, "tp_degrees", degrees)
        if degrees and (self.tp_link_bandwidth_gb_s is None or self.tp_allreduce_latency_s is None):
            raise ConfigError(
                "device.tp_degrees",
                "needs tp_link_bandwidth_gb_s and tp_allreduce_latency_s to price the all-reduces",
            )
        if self.tp_link_bandwidth_gb_s is not None:
            validate.number(
                "device.tp_link_bandwidth_gb_s", self.tp_link_bandwidth_gb_s, lo=0.0, lo_open=True
            )
        if self.tp_allreduce_latency_s is not None:
            validate.number("device.tp_allreduce_latency_s", self.tp_allreduce_latency_s, lo=0.0)

    def peak_flops(self, dtype: str) -> float:
        if dtype not in self.peak_tflops:
            raise ConfigError(
                "dtype",
                f"device {self.name!r} lists no peak for {dtype!r} ({', '.join(self.peak_tflops)})",
            )
        return self.peak_tflops[dtype] * 1e12


@dataclass(frozen=True)
class ModelShape:
    """A Llama-family decoder's shape (what the roofline needs)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        for n in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"):
            validate.integer(f"model.{n}", getattr(self, n), lo=1)
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ConfigError("model.heads", "hidden must divide by heads, heads by kv_heads")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_params(self) -> int:
        """q, k, v, o projections + gate/up/down MLP + two RMSNorm weights."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        return 2 * h * h + 2 * h * kv + 3 * h * self.intermediate + 2 * h

    @property
    def head_params(self) -> int:
        """Final RMSNorm + LM head."""
        return self.hidden * self.vocab + self.hidden

    @property
    def params(self) -> int:
        emb = 0 if self.tied_embeddings else self.hidden * self.vocab
        return self.layers * self.layer_params + self.head_params + emb


def _load(kind: str, name: str, cls: type, field_name: str) -> Any:
    path = DATA / kind / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in (DATA / kind).glob("*.json")))
        raise ConfigError(field_name, f"unknown {kind[:-1]} {name!r} (known: {known})")
    d = dict(load_document(path, field_name))
    d.pop("record", None)
    try:
        return cls(**d)
    except TypeError as err:
        raise ConfigError(field_name, f"{path.name}: {err}") from None


def load_device(name: str, field_name: str = "device") -> DeviceSpec:
    """A shipped device description by name (file stem under data/devices)."""
    return _load("devices", name, DeviceSpec, field_name)


def load_model(name: str, field_name: str = "model") -> ModelShape:
    """A shipped model shape by name (file stem under data/models)."""
    return _load("models", name, ModelShape, field_name)


#: families whose MLP has two matrices (up, down) rather than three (gate, up, down)
_UNGATED_MLP = (
    "gpt2",
    "gpt_neo",
    "gpt_neox",
    "gptj",
    "opt",
    "bloom",
    "falcon",
    "phi",
    "codegen",
    "gpt_bigcode",
    "starcoder2",
    "mpt",
    "biogpt",
    "xglm",
)


def shape_from_config(path: str | Path, field_name: str = "model") -> ModelShape:
    """A model's shape read from its ``config.json`` (a model folder or the file itself), in
    the Llama-family terms the roofline uses. Other families are mapped, and the mapping is
    stated in ``source``: a two-matrix MLP of width I counts as a gated one of width 2I/3 (the
    same weights); a mixture of experts counts its active experts per token (what a decode
    step reads; its memory footprint is larger); a head_dim other than hidden/heads is noted."""
    p = Path(path)
    file = p / "config.json" if p.is_dir() else p
    if not file.is_file():
        raise ConfigError(field_name, f"{p} is not a model folder (no config.json)")
    cfg = load_document(file, field_name)
    if not isinstance(cfg, dict):
        raise ConfigError(field_name, f"{file}: must be a JSON object")
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg, **cfg["text_config"]}

    def first(*names: str, default: Any = None) -> Any:
        for n in names:
            if cfg.get(n) is not None:
                return cfg[n]
        if default is None:
            raise ConfigError(field_name, f"{file}: none of {', '.join(names)}")
        return default

    kind = str(cfg.get("model_type", "unknown"))
    hidden = int(first("hidden_size", "n_embd", "d_model"))
    heads = int(first("num_attention_heads", "n_head", "num_heads"))
    kv = int(
        first("num_key_value_heads", "num_kv_heads", default=1 if cfg.get("multi_query") else heads)
    )
    width = int(first("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden))
    notes = [f"{file} (model_type {kind})"]
    experts = cfg.get("num_experts_per_tok")
    if experts:
        per = int(cfg.get("moe_intermediate_size") or width)
        shared = int(cfg.get("shared_expert_intermediate_size") or 0)
        width = int(experts) * per + shared
        notes.append(f"MoE: {experts} active experts × {per} + shared {shared} per token")
    if kind in _UNGATED_MLP:
        width = round(2 * width / 3)
        notes.append("two-matrix MLP counted as a gated one of 2/3 its width")
    head_dim = cfg.get("head_dim")
    if head_dim and int(head_dim) * heads != hidden:
        notes.append(f"head_dim {head_dim} ≠ hidden/heads: attention weights approximated")
    return ModelShape(
        name=p.name if p.is_dir() else p.parent.name,
        layers=int(first("num_hidden_layers", "n_layer", "num_layers")),
        hidden=hidden,
        heads=heads,
        kv_heads=kv,
        intermediate=width,
        vocab=int(first("vocab_size")),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        source="; ".join(notes),
    )


def list_devices() -> list[str]:
    return sorted(p.stem for p in (DATA / "devices").glob("*.json"))


def list_models() -> list[str]:
    return sorted(p.stem for p in (DATA / "models").glob("*.json"))
