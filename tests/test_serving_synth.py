"""The synthesiser's load costs: a batched roofline (weights once per step, KV per sequence,
compute per token) and tensor-parallel costs from the devices' cited link figures."""

from __future__ import annotations

import pytest

from analysis.devices import DeviceSpec, ModelShape, list_devices, load_device
from analysis.synth import STEP_KV, STEP_TOKENS, allreduce_cost, synthesise, synthesise_named
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import AcceptanceSpec, SchemeConfig
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Workload
from ppsd_sim.serving import compare_serving
from ppsd_sim.serving.step_costs import device_steps

DEV = DeviceSpec(
    name="round",
    description="round-number test device",
    memory_bandwidth_gb_s=1000.0,  # 1e12 B/s
    peak_tflops={"bf16": 100.0},  # 1e14 FLOP/s
    kernel_launch_s=5e-6,
    kernels_per_layer=10,
    step_overhead_s=20e-6,
    link_latency_s=3e-6,
    link_bandwidth_gb_s=100.0,
    memory_gb=80.0,
    tp_degrees=(2, 4, 3),
    tp_link_bandwidth_gb_s=200.0,
    tp_allreduce_latency_s=7e-6,
)
MODEL = ModelShape("m", layers=4, hidden=1024, heads=8, kv_heads=8, intermediate=4096, vocab=32000)
PARAMS = 16_779_264  # per layer (see test_analysis_synth)


def test_batched_roofline_by_hand():
    p = synthesise(MODEL, DEV, "bf16", context=512)
    layer = p.batched.layers[0]
    assert layer.tokens == STEP_TOKENS and layer.kv == STEP_KV
    # batch 1 at the profile's context is the batch-1 layer latency exactly
    assert layer.time(1, 512) == p.layer_decode[0].median
    w = PARAMS * 2 / 1e12  # weights read once per step: 8 tokens cost what 1 does
    assert layer.time(8, 0) == pytest.approx(w + 50e-6, rel=1e-12)
    # the KV cache is read per sequence: 2 (K and V) × kv_dim × 2 bytes per cached token
    kv = 2 * 1024 * 2 / 1e12
    assert layer.time(8, 4096) - layer.time(8, 0) == pytest.approx(4096 * kv, rel=1e-9)
    # compute per token: at 16384 tokens the step is compute-bound, 2·params flops each
    assert layer.time(16384, 0) == pytest.approx(16384 * 2 * PARAMS / 1e14 + 50e-6, rel=1e-9)
    # past the grid the linear extension stays exact where the roofline is linear
    assert layer.time(30000, 0) == pytest.approx(30000 * 2 * PARAMS / 1e14 + 50e-6, rel=1e-9)
    assert p.batched.hop.time(10) == pytest.approx(3e-6 + 10 * 2048 / 100e9)
    assert p.batched.embed.time(1) == pytest.approx(p.embed.median)


def test_tensor_parallel_costs_by_hand():
    p = synthesise(MODEL, DEV, "bf16", context=0)
    assert [t.degree for t in p.tp] == [2, 4]  # 3 does not split 8 heads
    tp4 = p.tensor_parallel(4)
    # each device reads a quarter of the weights, launches as many kernels
    assert tp4.layers[0].time(1, 0) == pytest.approx(PARAMS * 2 / 4 / 1e12 + 50e-6, rel=1e-12)
    # one all-reduce of T hidden states: latency + 2(k−1)/k · T·hidden·2 bytes / link bandwidth
    assert tp4.allreduce.time(16) == pytest.approx(7e-6 + 1.5 * 16 * 2048 / 200e9)
    assert allreduce_cost(MODEL, DEV, "bf16", 2).time(1) == pytest.approx(7e-6 + 2048 / 200e9)
    st = device_steps(p, SchemeConfig.tp_ar(4))
    want = (
        tp4.embed.time(1)
        + 4 * (tp4.layers[0].time(1, 0) + 2 * tp4.allreduce.time(1))
        + tp4.final_head.time(1)
        + p.tick.median
    )
    assert st.decode(1, 0) == pytest.approx(want, rel=1e-12)
    assert synthesise(MODEL, DEV, "bf16", load=False).batched is None


def test_device_files_cite_their_tp_figures():
    for name in list_devices():
        d = load_device(name)
        if d.tp_degrees:
            for key in ("tp_link_bandwidth_gb_s", "tp_allreduce_latency_s", "tp_degrees"):
                assert key in d.sources, (name, key)
            assert "datasheet" in d.sources["tp_link_bandwidth_gb_s"] or "cpu" in name
    with pytest.raises(ConfigError, match=r"^device\.tp_degrees: needs tp_link"):
        DeviceSpec(**{**DEV.__dict__, "tp_link_bandwidth_gb_s": None})


def test_cpu_tp_is_close_to_the_measured_two_core_gain():
    """Issue 11 measured AR with both cores at 1.62× AR with one on this kind of machine."""
    p = synthesise_named("cpu-bench@cpu-2core-epyc")
    one = device_steps(p, SchemeConfig.ar()).decode(1, 512)
    two = device_steps(p, SchemeConfig.tp_ar(2)).decode(1, 512)
    assert one / two == pytest.approx(1.62, rel=0.1)


def test_speculation_pays_less_as_the_batch_grows_on_an_h100():
    """The shape public measurements show: EESD's speedup over AR falls with the batch."""
    p = synthesise_named("llama-2-7b@h100-sxm")
    gains = []
    for batch in (1, 16, 128):
        w = Workload(
            count=batch,
            prompt=LengthDist.fixed(256),
            output=LengthDist.fixed(96),
            arrivals=Arrivals.closed(batch),
            acceptance=AcceptanceSpec.iid(0.8),
        )
        (rec,) = compare_serving(p, [SchemeConfig.eesd(8, 4)], w, ServingSettings(max_batch=batch))
        gains.append(rec.speedups["ar_same_load"]["throughput"])
    assert gains[0] > gains[1] > gains[2] > 1.0
