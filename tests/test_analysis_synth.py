"""The roofline synthesiser on a hand-checked case, the shipped data files, and the comparison
with a (hand-made) measured profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.devices import DeviceSpec, ModelShape, list_devices, list_models, load_device
from analysis.reproduction import prototype_profile
from analysis.synth import compare_profiles, synthesise, synthesise_named
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.profile import HardwareProfile

# A made-up device with round numbers so every figure below can be checked by hand.
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
)
MODEL = ModelShape("m", layers=4, hidden=1024, heads=8, kv_heads=8, intermediate=4096, vocab=32000)


def test_hand_checked_roofline():
    # layer params: 2·h² + 2·h·kv + 3·h·I + 2h = 2·1024² + 2·1024² + 3·1024·4096 + 2048
    params = 4 * 1024**2 + 3 * 1024 * 4096 + 2048
    assert MODEL.layer_params == params == 16_779_264
    p = synthesise(MODEL, DEV, "bf16", context=0)
    # memory-bound: 2 bytes/param / 1e12 B/s, + 10 launches × 5 µs
    layer = params * 2 / 1e12 + 50e-6
    assert p.layer_decode[0].median == pytest.approx(layer, rel=1e-12)
    head = (1024 * 32000 + 1024) * 2 / 1e12 + 10e-6
    assert p.final_head.median == pytest.approx(head) and p.ee_head.median == p.final_head.median
    assert p.hop.median == pytest.approx(3e-6 + 2048 / 100e9)
    assert p.tick.median == 20e-6 and p.flush.median == 10e-6
    # compute catches up at n tokens where 2·params·n / 1e14 > bytes / 1e12, i.e. n > 100:
    assert p.verify_factor == (1.0,) * 6
    # a slow-compute device turns the verify pass compute-bound: factor grows with n
    slow = synthesise(
        MODEL, DeviceSpec(**{**DEV.__dict__, "peak_tflops": {"bf16": 1.0}}), "bf16", context=0
    )
    f = dict(zip(slow.verify_tokens, slow.verify_factor, strict=True))
    t1 = 2 * params / 1e12 + 50e-6  # at n=1 compute (2·params/1e12) equals memory time
    assert f[32] == pytest.approx((32 * 2 * params / 1e12 + 50e-6) / t1)
    assert f[1] == 1.0 < f[2] < f[4] < f[32]
    assert p.provenance.source == "synthesised" and p.provenance.model == "m"


def test_kv_cache_adds_to_the_bytes():
    p0 = synthesise(MODEL, DEV, "bf16", context=0)
    p1 = synthesise(MODEL, DEV, "bf16", context=1000)
    kv = 2 * 1000 * 1024 * 2 / 1e12
    assert p1.layer_decode[0].median - p0.layer_decode[0].median == pytest.approx(kv)


def test_shipped_data_files_load_and_cite_sources():
    assert {"a100-80gb-sxm", "h100-sxm", "h200-sxm", "cpu-2core-epyc"} <= set(list_devices())
    assert {"llama-2-7b", "llama-3.2-1b", "llama-2-70b", "cpu-bench", "tiny"} <= set(list_models())
    for name in list_devices():
        d = load_device(name)
        assert d.sources and "memory_bandwidth_gb_s" in " ".join(d.sources)
    p = synthesise_named("llama-2-70b@h100-sxm")
    assert p.n_layers == 80 and "does not fit one device" in p.provenance.notes
    # a 7B decode step on an H100 is bandwidth-bound: T within 2× of weights / bandwidth
    t = synthesise_named("llama-2-7b@h100-sxm").ar_token_time()
    assert 13.5e9 / 3.35e12 < t < 2 * 13.5e9 / 3.35e12
    HardwareProfile.from_dict(json.loads(json.dumps(p.to_dict())))  # round-trips


def test_compare_with_a_measured_profile():
    syn = synthesise_named("cpu-bench@cpu-2core-epyc")
    rows = {r.component: r for r in compare_profiles(syn, prototype_profile())}
    assert rows["final_head"].ratio == pytest.approx(syn.final_head.median / 345e-6)
    assert rows["AR token T"].measured_s == pytest.approx(8 * 760e-6 + 345e-6)
    with pytest.raises(ConfigError):
        compare_profiles(syn, synthesise_named("tiny@cpu-2core-epyc"))


@pytest.mark.parametrize(
    "spec", ["nosuch@h100-sxm", "llama-2-7b@nosuch", "llama-2-7b", "tiny@h100-sxm:int3"]
)
def test_bad_names_are_config_errors(spec):
    with pytest.raises(ConfigError):
        synthesise_named(spec, "--synth")


def test_plan_cli_with_a_synthesised_profile(tmp_path: Path):
    out = tmp_path / "p.json"
    res = subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "plan", "--synth", "llama-2-70b@h100-sxm",
         "--devices", "8", "--sim-tokens", "0", "--write-profile", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "PPSD" in res.stdout and "synthesised" in res.stdout
    assert HardwareProfile.from_dict(json.loads(out.read_text())).provenance.source == "synthesised"
    bad = subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "plan", "--synth", "nosuch@h100-sxm"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
