"""Which configurations fit in device memory: weights held per device against its capacity.

A planner that ranks by speed alone would happily put a 70B model in bf16 (138 GB) on one
80 GB GPU. Each scheme places weights differently:

- AR: every layer, the embedding and the final head on one device;
- EESD: the same plus the early-exit head;
- PPSD: stage 1 holds the embedding; the exit stage the early-exit head; the last stage the
  final head; every stage its own layers. PP-AR: the same without an early-exit head;
- TP-AR over k devices: 1/k of everything on each (Megatron-style shards).

The early-exit head is counted as a separate LM-head-sized matrix (a trained head, as the
project's own model ships; a shared head would need no second copy, so this is the
conservative side). Weights only: the KV cache and activations are not counted, which at batch
1 and a few thousand tokens of context are small beside the weights (stated in every note).
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.devices import DTYPE_BYTES, DeviceSpec, ModelShape
from ppsd_sim.records import validate
from ppsd_sim.records.scheme import SchemeConfig


@dataclass(frozen=True)
class WeightBudget:
    device_gb: float
    layer_gb: tuple[float, ...]
    embed_gb: float
    head_gb: float  # final norm + LM head
    ee_head_gb: float
    source: str = ""

    def __post_init__(self) -> None:
        validate.number("memory.device_gb", self.device_gb, lo=0.0, lo_open=True)
        for i, g in enumerate(self.layer_gb):
            validate.number(f"memory.layer_gb[{i}]", g, lo=0.0)
        for n in ("embed_gb", "head_gb", "ee_head_gb"):
            validate.number(f"memory.{n}", getattr(self, n), lo=0.0)

    @property
    def n_layers(self) -> int:
        return len(self.layer_gb)

    @property
    def model_gb(self) -> float:
        return sum(self.layer_gb) + self.embed_gb + self.head_gb

    def stage_gb(self, a: int, b: int, *, first: bool, exit_: bool, last: bool) -> float:
        """Weights of a stage running layers [a, b) with the parts its role adds."""
        return (
            sum(self.layer_gb[a:b])
            + (self.embed_gb if first else 0.0)
            + (self.ee_head_gb if exit_ and not last else 0.0)
            + (self.head_gb if last else 0.0)
        )

    def per_device_gb(self, scheme: SchemeConfig) -> tuple[float, ...]:
        """Weights on each device the scheme uses."""
        n = self.n_layers
        if scheme.kind == "ar":
            return (self.model_gb,)
        if scheme.kind == "eesd":
            return (self.model_gb + self.ee_head_gb,)
        if scheme.kind == "tp_ar":  # every layer, the embedding and the head split k ways
            k = scheme.n_devices  # TP-AR: its tp_degree
            return (self.model_gb / k,) * k
        return tuple(  # PPSD and PP-AR: each stage its layers and its role's parts
            self.stage_gb(st.start, st.stop, first=st.first, exit_=st.exit, last=st.stop == n)
            for st in scheme.stages()
        )

    def fits(self, scheme: SchemeConfig) -> bool:
        return max(self.per_device_gb(scheme)) <= self.device_gb

    def describe(self) -> str:
        return (
            f"weights {self.model_gb:.1f} GB (+{self.ee_head_gb:.1f} GB early-exit head) vs "
            f"{self.device_gb:g} GB per device; KV cache and activations not counted"
        )


def budget_of(model: ModelShape, device: DeviceSpec, dtype: str) -> WeightBudget:
    """From a shipped model shape and device description (``analysis.devices``)."""
    b = DTYPE_BYTES[dtype] / 1e9
    embed = 0 if model.tied_embeddings else model.hidden * model.vocab
    return WeightBudget(
        device_gb=device.memory_gb,
        layer_gb=tuple(model.layer_params * b for _ in range(model.layers)),
        embed_gb=embed * b,
        head_gb=model.head_params * b,
        ee_head_gb=model.head_params * b,
        source=f"{model.name} in {dtype} on {device.name}",
    )
