"""How many KV-cache tokens a configuration's devices hold once its weights are placed.

At batch 1 the KV cache is small beside the weights (``analysis.memory`` counts weights only);
under load it is not: 64 sequences of 2,000 tokens of Llama-2-7B (MHA, 32 layers, bf16) hold
64 · 2,000 · 32 · 2 · 4,096 · 2 bytes ≈ 67 GB. A device's KV room is its memory less the
weights the scheme puts on it (``WeightBudget.per_device_gb``); a token costs, on each device,
2 (K and V) · KV heads held · head_dim · dtype bytes for every layer the device runs:

- AR, EESD: all layers, all KV heads on one device;
- PP-AR, PPSD: each stage its own layers (stages that share a device add up);
- TP-AR(k): all layers, ⌈kv_heads / k⌉ heads per device (at least one each, as the
  synthesiser's shards).

The capacity of a configuration is the smallest over its devices, in tokens: what the serving
model's ``kv_budget`` means. Activations, fragmentation and the runtime's own reserve are not
counted (an upper bound on what a real server fits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.devices import DTYPE_BYTES, ModelShape
from analysis.memory import WeightBudget
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.scheme import SchemeConfig


@dataclass(frozen=True)
class KVRoom:
    """The weight budget plus the KV shape of the model: what the load planner needs to turn
    device memory into a KV budget per configuration."""

    weights: WeightBudget
    kv_heads: int
    head_dim: int
    dtype_bytes: float

    def __post_init__(self) -> None:
        if not isinstance(self.weights, WeightBudget):
            raise ConfigError("memory", "must be a WeightBudget")

    @property
    def token_layer_bytes(self) -> float:
        """One token's K and V in one layer, all KV heads."""
        return 2 * self.kv_heads * self.head_dim * self.dtype_bytes

    def capacity_tokens(self, scheme: SchemeConfig) -> int:
        """KV tokens the scheme's devices hold after its weights (0 when a device's weights
        alone overflow it)."""
        cap_b = self.weights.device_gb * 1e9
        per_stage = self.weights.per_device_gb(scheme)
        if scheme.kind == "tp_ar":
            k = scheme.n_devices  # TP-AR: its tp_degree
            heads = -(-self.kv_heads // k)
            n = self.weights.n_layers
            loads = [(g, n * 2 * heads * self.head_dim * self.dtype_bytes) for g in per_stage]
        elif scheme.kind in ("ppsd", "pp_ar"):
            used: dict[int, list[float]] = {}
            for st, g in zip(scheme.stages(), per_stage, strict=True):
                acc = used.setdefault(st.device, [0.0, 0.0])
                acc[0] += g
                acc[1] += st.n_layers * self.token_layer_bytes
            loads = [(g, b) for g, b in used.values()]
        else:
            loads = [(per_stage[0], self.weights.n_layers * self.token_layer_bytes)]
        room = min((cap_b - g * 1e9) / per_token for g, per_token in loads)
        return max(0, math.floor(room))

    def describe(self) -> str:
        """The weights and the KV model in one line (replaces ``WeightBudget.describe``,
        which says the KV cache is not counted)."""
        w = self.weights
        return (
            f"weights {w.model_gb:.1f} GB (+{w.ee_head_gb:.1f} GB early-exit head) vs "
            f"{w.device_gb:g} GB per device; KV cache "
            f"{self.token_layer_bytes * w.n_layers / 1e6:.3g} MB per token (all layers) in the "
            "memory the weights leave; activations not counted"
        )


def kv_room_of(model: ModelShape, weights: WeightBudget, dtype: str) -> KVRoom:
    """The KV room of a shipped model shape in ``dtype`` within ``weights``' devices."""
    if weights.n_layers != model.layers:
        raise ConfigError(
            "memory", f"describes {weights.n_layers} layers, the model {model.layers}"
        )
    return KVRoom(weights, model.kv_heads, model.head_dim, DTYPE_BYTES[dtype])
