"""Profiles for hardware we cannot reach: a roofline estimate of each layer, head, verify pass
and hop from a model's shape and a device's datasheet figures, written as a HardwareProfile
with ``provenance.source = "synthesised"``.

Per component and n tokens processed at once:
  time(n) = max(bytes / (bandwidth·mem_eff), flops(n) / (peak·compute_eff)) + kernels·launch
with bytes = weights + KV cache read (context × 2 × kv_dim) and flops(n) = 2·params·n +
4·n·context·hidden (attention scores and values). Decoding one token is bandwidth-bound on
GPUs, so the verify factor time(n)/time(1) stays near 1 until n reaches the device's
flops/byte ratio. ``compare_profiles`` reports how far such an estimate is from a measurement.

For the serving model the same roofline prices a batched step (``batched_costs``): T tokens
in the step and K cached KV tokens read by its sequences cost weights read once per step, the
KV read per sequence (2·K·kv_dim bytes), 2·params·T flops per token and 4·hidden·K for
attention (one query per cached token: exact for decode steps; a verification's γ+1 queries
per sequence are counted once). It is sampled on a grid (``STEP_TOKENS`` × ``STEP_KV``), which
the serving model interpolates bilinearly and extends linearly past its edges (the roofline is
linear there: compute-bound in T, memory-bound in K). Tensor parallelism over k devices
(``tensor_parallel``, Megatron-style) gives each device 1/k of every layer's weights, flops and
KV heads (at least one head each) and two all-reduces per layer (plus one after the
vocabulary-parallel embedding) of T hidden states, priced as the ring algebra NCCL's
performance notes use: latency + 2(k−1)/k · bytes / link bandwidth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.devices import (
    DTYPE_BYTES,
    DeviceSpec,
    ModelShape,
    load_device,
    load_model,
    shape_from_config,
)
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.load_cost import BatchedCosts, LoadCost, TensorParallel
from ppsd_sim.records.profile import HardwareProfile, Provenance
from ppsd_sim.records.timing import Timing

VERIFY_TOKENS = (1, 2, 4, 8, 16, 32)
#: grid of the batched step costs: tokens in a step (steps of ~1.5×) and KV tokens read
STEP_TOKENS = tuple(sorted({round(2 ** (i / 2)) for i in range(29)}))  # 1 … 16384
STEP_KV = (0, *(2**i for i in range(9, 22)))  # 0, 512 … 2M


@dataclass(frozen=True)
class Roofline:
    """One component's estimate: time and which limit set it."""

    seconds: float
    bytes: float
    flops: float
    bound: str  # memory | compute


def roofline(dev: DeviceSpec, dtype: str, bytes_: float, flops: float, kernels: int) -> Roofline:
    """max(memory time, compute time) + kernel launches."""
    t_mem = bytes_ / (dev.memory_bandwidth_gb_s * 1e9 * dev.memory_efficiency)
    t_cmp = flops / (dev.peak_flops(dtype) * dev.compute_efficiency)
    return Roofline(
        max(t_mem, t_cmp) + kernels * dev.kernel_launch_s,
        bytes_,
        flops,
        "memory" if t_mem >= t_cmp else "compute",
    )


def layer_roofline(
    m: ModelShape,
    dev: DeviceSpec,
    dtype: str,
    n_tokens: int,
    context: int,
    *,
    attention_pairs: int | None = None,
    shard: int = 1,
) -> Roofline:
    """One decoder layer processing ``n_tokens`` new tokens against ``context`` cached ones
    (KV entries read). ``attention_pairs`` (query, cached key) pairs cost attention flops
    (default n_tokens × context: one sequence); ``shard`` = k: one device's 1/k of a
    tensor-parallel layer (1/k of the weights and flops, its share of the KV heads)."""
    b = DTYPE_BYTES[dtype]
    kv_heads = -(-m.kv_heads // shard)  # each device holds at least one KV head
    kv_dim = kv_heads * m.head_dim
    weights = m.layer_params * b / shard
    kv_read = 2 * context * kv_dim * b
    pairs = n_tokens * context if attention_pairs is None else attention_pairs
    flops = (2 * m.layer_params * n_tokens + 4 * pairs * m.hidden) / shard
    return roofline(dev, dtype, weights + kv_read, flops, dev.kernels_per_layer)


def head_roofline(
    m: ModelShape, dev: DeviceSpec, dtype: str, n_tokens: int, shard: int = 1
) -> Roofline:
    """Final norm + LM head over ``n_tokens`` tokens (2 kernels); ``shard``: one device's
    slice of a vocabulary-parallel head."""
    b = DTYPE_BYTES[dtype]
    return roofline(dev, dtype, m.head_params * b / shard, 2 * m.head_params * n_tokens / shard, 2)


def _embed_cost(m: ModelShape, dev: DeviceSpec, dtype: str) -> LoadCost:
    """Embedding lookup: one kernel plus each token's row read from memory."""
    return LoadCost(
        a=dev.kernel_launch_s, b=m.hidden * DTYPE_BYTES[dtype] / (dev.memory_bandwidth_gb_s * 1e9)
    )


def _hop_cost(m: ModelShape, dev: DeviceSpec, dtype: str) -> LoadCost:
    """Sending T hidden states to the next stage: link latency + bytes / link bandwidth."""
    return LoadCost(
        a=dev.link_latency_s, b=m.hidden * DTYPE_BYTES[dtype] / (dev.link_bandwidth_gb_s * 1e9)
    )


def _grid(fn) -> LoadCost:
    return LoadCost(
        tokens=STEP_TOKENS,
        kv=STEP_KV,
        table=tuple(tuple(fn(t, k) for k in STEP_KV) for t in STEP_TOKENS),
    )


def _head_grid(fn) -> LoadCost:
    return LoadCost(tokens=STEP_TOKENS, kv=(0,), table=tuple((fn(t),) for t in STEP_TOKENS))


def batched_costs(m: ModelShape, dev: DeviceSpec, dtype: str) -> BatchedCosts:
    """The roofline of a batched step on one device, on the ``STEP_TOKENS × STEP_KV`` grid."""
    layer = _grid(lambda t, k: layer_roofline(m, dev, dtype, t, k, attention_pairs=k).seconds)
    head = _head_grid(lambda t: head_roofline(m, dev, dtype, t).seconds)
    return BatchedCosts(
        layers=(layer,),
        embed=_embed_cost(m, dev, dtype),
        ee_head=head,
        final_head=head,
        hop=_hop_cost(m, dev, dtype),
        notes=f"roofline on {dev.description} ({dtype}); every layer alike",
    )


def allreduce_cost(m: ModelShape, dev: DeviceSpec, dtype: str, degree: int) -> LoadCost:
    """One all-reduce of T hidden states over ``degree`` devices: latency + 2(k−1)/k ·
    T·hidden·bytes / link bandwidth (the ring algebra of NCCL's bus bandwidth)."""
    if dev.tp_link_bandwidth_gb_s is None or dev.tp_allreduce_latency_s is None:
        raise ConfigError("device", f"{dev.name!r} lists no tensor-parallel link figures")
    per_token = m.hidden * DTYPE_BYTES[dtype] * 2 * (degree - 1) / degree
    return LoadCost(a=dev.tp_allreduce_latency_s, b=per_token / (dev.tp_link_bandwidth_gb_s * 1e9))


def tensor_parallel(m: ModelShape, dev: DeviceSpec, dtype: str, degree: int) -> TensorParallel:
    """Costs of a degree-k tensor-parallel split (see the module docstring)."""
    ar = allreduce_cost(m, dev, dtype, degree)
    shard = _grid(
        lambda t, k: layer_roofline(m, dev, dtype, t, k, attention_pairs=k, shard=degree).seconds
    )
    return TensorParallel(
        degree=degree,
        layers=(shard,),
        embed=LoadCost.total([_embed_cost(m, dev, dtype), ar]),
        final_head=_head_grid(lambda t: head_roofline(m, dev, dtype, t, degree).seconds),
        allreduce=ar,
        allreduces_per_layer=2,
        notes=f"roofline shard 1/{degree} on {dev.description} ({dtype}) + ring all-reduces",
    )


def tp_degrees(m: ModelShape, dev: DeviceSpec) -> tuple[int, ...]:
    """The device's TP degrees that split this model's heads and MLP evenly."""
    return tuple(k for k in dev.tp_degrees if m.heads % k == 0 and m.intermediate % k == 0)


def synthesise(
    model: ModelShape,
    device: DeviceSpec,
    dtype: str = "bf16",
    *,
    context: int = 512,
    concurrency_slowdown: float = 1.0,
    load: bool = True,
) -> HardwareProfile:
    """A synthesised HardwareProfile (one device per stage; the EE head is a copy of the
    final head, LayerSkip-style). ``load`` adds the batched step costs and the device's
    tensor-parallel splits for the serving model (the batch-1 numbers do not depend on it)."""
    if dtype not in DTYPE_BYTES:
        raise ConfigError("dtype", f"must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if not isinstance(context, int) or context < 0:
        raise ConfigError("context", f"must be an integer >= 0, got {context!r}")
    b = DTYPE_BYTES[dtype]
    layer = [layer_roofline(model, device, dtype, n, context) for n in VERIFY_TOKENS]
    head = head_roofline(model, device, dtype, 1)
    factors = tuple(round(r.seconds / layer[0].seconds, 6) for r in layer)
    factors = (1.0, *(max(f, 1.0) for f in factors[1:]))
    embed = model.hidden * b / (device.memory_bandwidth_gb_s * 1e9) + device.kernel_launch_s
    hop = device.link_latency_s + model.hidden * b / (device.link_bandwidth_gb_s * 1e9)
    weights_gb = model.params * b / 1e9
    notes = [
        f"roofline estimate at context {context}: layer {layer[0].bound}-bound, head "
        f"{head.bound}-bound; verify factors from the layer roofline",
        f"weights {weights_gb:.1f} GB vs {device.memory_gb:g} GB per device",
    ]
    if weights_gb > device.memory_gb:
        notes.append(
            f"the whole model does not fit one device: AR/EESD numbers are hypothetical; PPSD "
            f"needs ≥ {math.ceil(weights_gb / device.memory_gb)} stages"
        )
    return HardwareProfile(
        layer_decode=tuple(Timing(layer[0].seconds) for _ in range(model.layers)),
        ee_head=Timing(head.seconds),
        final_head=Timing(head.seconds),
        embed=Timing(embed),
        hop=Timing(hop),
        tick=Timing(device.step_overhead_s),
        flush=Timing(2 * device.kernel_launch_s),
        verify_tokens=VERIFY_TOKENS,
        verify_factor=factors,
        concurrency_slowdown=concurrency_slowdown,
        batched=batched_costs(model, device, dtype) if load else None,
        tp=tuple(tensor_parallel(model, device, dtype, k) for k in tp_degrees(model, device))
        if load
        else (),
        provenance=Provenance(
            source="synthesised",
            device=device.description,
            dtype=dtype,
            model=model.name,
            latency_context="per_stage",
            notes="; ".join(notes),
        ),
    )


def parse_synth(spec: str, field: str = "synth") -> tuple[ModelShape, DeviceSpec, str]:
    """``"MODEL@DEVICE"`` or ``"MODEL@DEVICE:DTYPE"`` → the model (a shipped shape, or a model
    folder / config.json path: its own shape), the shipped device and the dtype."""
    if "@" not in spec:
        raise ConfigError(field, f"must look like MODEL@DEVICE[:DTYPE], got {spec!r}")
    model_name, dev = spec.split("@", 1)
    dev_name, _, dtype = dev.partition(":")
    is_path = "/" in model_name or model_name.endswith(".json")  # a folder or a config file
    model = shape_from_config(model_name, field) if is_path else load_model(model_name, field)
    device = load_device(dev_name, field)
    dtype = dtype or ("fp32" if "fp32" in device.peak_tflops and "cpu" in dev_name else "bf16")
    return model, device, dtype


def synthesise_named(spec: str, field: str = "synth") -> HardwareProfile:
    """``"MODEL@DEVICE"`` or ``"MODEL@DEVICE:DTYPE"`` using the shipped data files."""
    return synthesise(*parse_synth(spec, field))


@dataclass(frozen=True)
class ComponentError:
    component: str
    synthesised_s: float
    measured_s: float

    @property
    def ratio(self) -> float:
        """synthesised / measured (1 = exact)."""
        return self.synthesised_s / self.measured_s if self.measured_s > 0 else math.inf


def compare_profiles(synth: HardwareProfile, measured: HardwareProfile) -> list[ComponentError]:
    """Component-by-component error of a synthesised profile against a measured one (same
    layer count); the last row is the AR token time, the number that matters most."""
    if synth.n_layers != measured.n_layers:
        raise ConfigError(
            "measured", f"has {measured.n_layers} layers, the synthesised one {synth.n_layers}"
        )
    n = synth.n_layers
    rows = [
        ComponentError("mean layer", synth.layers_time(0, n) / n, measured.layers_time(0, n) / n)
    ]
    for name in ("final_head", "ee_head", "embed", "hop", "tick", "flush"):
        s, m = getattr(synth, name).median, getattr(measured, name).median
        if m > 0:
            rows.append(ComponentError(name, s, m))
    rows.append(ComponentError("AR token T", synth.ar_token_time(), measured.ar_token_time()))
    return rows
