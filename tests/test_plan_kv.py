"""KV-cache room per configuration (``analysis.kv_memory``), the k-device baselines' weights and
device counts, and a load plan whose KV room binds or cannot hold one request."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from analysis.curves import parse_curve
from analysis.kv_memory import kv_room_of
from analysis.load_plan import LoadSetup, parse_loads, plan_load
from analysis.memory import budget_of
from analysis.plan_record import Candidate
from analysis.synth import parse_synth, synthesise
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.workload import LengthDist

BATCH = 80


def room(spec: str, device_gb: float | None = None):
    model, dev, dtype = parse_synth(spec)
    w = budget_of(model, dev, dtype)
    if device_gb is not None:
        w = replace(w, device_gb=device_gb)
    return model, dev, dtype, w, kv_room_of(model, w, dtype)


def test_kv_capacity_by_hand_for_7b_and_70b():
    # Llama-2-7B, bf16: K and V of 32 heads × 128 dims × 2 bytes = 16,384 B per layer per token
    _, _, _, w, kv = room("llama-2-7b@h100-sxm")
    assert kv.token_layer_bytes == 16_384
    ar = math.floor((80e9 - w.model_gb * 1e9) / (32 * 16_384))
    assert kv.capacity_tokens(SchemeConfig.ar()) == ar
    eesd = math.floor((80e9 - (w.model_gb + w.ee_head_gb) * 1e9) / (32 * 16_384))
    assert kv.capacity_tokens(SchemeConfig.eesd(8, 4)) == eesd < ar
    # TP-2: half the weights and half the KV heads on each device → more than twice AR's room
    tp = math.floor((80e9 - w.model_gb / 2 * 1e9) / (32 * 8_192))
    assert kv.capacity_tokens(SchemeConfig.tp_ar(2)) == tp > 2 * ar
    # PPSD(2): each stage 16 layers; stage 1 also holds the embedding and the early-exit head
    s = SchemeConfig.ppsd_even(32, 2)
    per = w.per_device_gb(s)
    want = min(math.floor((80e9 - g * 1e9) / (16 * 16_384)) for g in per)
    assert kv.capacity_tokens(s) == want
    # Llama-2-70B (GQA, 8 KV heads): 4,096 B per layer per token; 138 GB of weights
    _, _, _, w70, kv70 = room("llama-2-70b@h100-sxm")
    assert kv70.token_layer_bytes == 4_096
    assert kv70.capacity_tokens(SchemeConfig.ar()) == 0  # its weights alone overflow 80 GB
    tp70 = math.floor((80e9 - w70.model_gb / 2 * 1e9) / (80 * 2 * 4 * 128 * 2))
    assert kv70.capacity_tokens(SchemeConfig.tp_ar(2)) == tp70


def test_stages_sharing_a_device_add_up():
    _, _, _, w, kv = room("llama-2-7b@h100-sxm")
    shared = SchemeConfig.ppsd((8, 20, 32), devices=(0, 1, 0))
    gb = w.per_device_gb(shared)
    dev0 = math.floor((80e9 - (gb[0] + gb[2]) * 1e9) / ((8 + 12) * 16_384))
    dev1 = math.floor((80e9 - gb[1] * 1e9) / (12 * 16_384))
    assert kv.capacity_tokens(shared) == min(dev0, dev1)


def test_k_device_baselines_hold_their_share_and_count_k_devices():
    _, _, _, w, _ = room("llama-2-7b@h100-sxm")
    assert w.per_device_gb(SchemeConfig.tp_ar(4)) == pytest.approx((w.model_gb / 4,) * 4)
    pp = w.per_device_gb(SchemeConfig.pp_ar((10, 20, 32)))
    assert sum(pp) == pytest.approx(w.model_gb)  # no early-exit head in PP-AR
    for scheme, k in ((SchemeConfig.tp_ar(4), 4), (SchemeConfig.pp_ar((10, 20, 32)), 3)):
        d = {"scheme": scheme.to_dict(), "devices": k, "tokens_per_s": 10.0, "speedup": 1.0}
        assert Candidate.from_dict(d, "c").devices == k
        with pytest.raises(ConfigError, match=r"c\.devices"):
            Candidate.from_dict({**d, "devices": 1}, "c")
        with pytest.raises(ConfigError, match=r"c\.alpha"):
            Candidate.from_dict({**d, "alpha": 0.5}, "c")


def test_a_binding_kv_room_limits_the_batch_and_one_that_cannot_hold_a_request_is_named():
    """7B on devices with 0.1 GB to spare beyond AR's weights: AR's room (≈ 190 tokens) cannot
    hold one 384-token request, EESD's weights do not fit at all; 2-stage pipelines hold
    13,000–26,000 tokens, so a batch of 80 binds them."""
    model, dev, dtype, w, _ = room("llama-2-7b@h100-sxm")
    tight = replace(w, device_gb=w.model_gb + 0.1)
    kv = kv_room_of(model, tight, dtype)
    prof = synthesise(model, dev, dtype)
    setup = LoadSetup(
        prompt=LengthDist.fixed(256),
        output=LengthDist.fixed(128),
        requests=96,
        policies=("real_first",),
        shortlist=1,
    )
    lp = plan_load(
        prof,
        parse_curve("8:0.6,16:0.8"),
        2,
        parse_loads("batch", [BATCH]),
        setup,
        kv=kv,
        max_gamma=2,
        exits=[16],
        sensitivity=False,
    )
    (p,) = lp.points
    kinds = {r.kind for r in p.rows}
    assert kinds == {"pp_ar", "ppsd", "tp_ar"}  # AR (KV) and EESD (weights) are left out
    assert any("AR: its devices' KV room" in n and "cannot hold one request" in n for n in p.notes)
    for r in p.rows:
        cap = kv.capacity_tokens(r.scheme)
        assert 384 * BATCH > cap > 384  # binds, yet holds one request
        assert r.kv_budget == cap
        need = 384 + (r.scheme.inflight_limit if r.kind == "ppsd" else 0)
        assert r.mean_batch <= cap // need + 1e-9  # never more sequences than the cache holds
        assert p.speedup(r, "ar") is None  # no AR to compare with: it does not fit
    assert "KV cache" in lp.memory
