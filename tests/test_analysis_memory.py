"""The planner's memory constraint: no configuration whose weights overflow a device, checked
against brute force over every split, and a 70B model that cannot sit on one 80 GB GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from analysis.curves import parse_curve
from analysis.memory import WeightBudget, budget_of
from analysis.planner import brute_force, enumerate_candidates, plan
from analysis.synth import parse_synth
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.scheme import SchemeConfig
from tests.test_analysis_planner import uneven_profile

LAYERS = [1e-3, 2e-3, 0.5e-3, 1.5e-3, 1e-3, 3e-3, 0.7e-3]
GB = [3.0, 1.0, 2.0, 2.0, 4.0, 1.0, 2.0]  # uneven weights per layer


def _budget(device_gb: float) -> WeightBudget:
    return WeightBudget(device_gb, tuple(GB), embed_gb=1.0, head_gb=1.5, ee_head_gb=1.5)


def test_weights_per_device_follow_each_scheme():
    m = _budget(100.0)
    assert m.per_device_gb(SchemeConfig.ar()) == (sum(GB) + 1.0 + 1.5,)
    assert m.per_device_gb(SchemeConfig.eesd(3, 4)) == (sum(GB) + 1.0 + 1.5 + 1.5,)
    # stage 1 = layers 0-1 + embedding + EE head; stage 2 = layers 2-4; stage 3 = 5-6 + head
    assert m.per_device_gb(SchemeConfig.ppsd((2, 5, 7))) == (3 + 1 + 1 + 1.5, 8.0, 3 + 1.5)
    # exit after stage 2: the EE head moves there
    assert m.per_device_gb(SchemeConfig.ppsd((2, 5, 7), exit_stage=2)) == (5.0, 9.5, 4.5)


@pytest.mark.parametrize(("device_gb", "devices"), [(9.0, 4), (8.0, 5), (10.5, 3), (30.0, 4)])
def test_memory_constrained_plan_equals_brute_force(device_gb, devices):
    prof = uneven_profile(LAYERS)
    c = parse_curve("1:0.3,3:0.6,6:0.9")
    m = _budget(device_gb)
    brute = brute_force(prof, c, devices, max_gamma=6, memory=m)
    cands = enumerate_candidates(prof, c, devices, max_gamma=6, memory=m)
    assert all(m.fits(x.scheme) for x in cands)  # nothing that overflows is ever proposed
    assert all(m.fits(s) for s, _ in brute)
    if not brute:
        assert not cands
        return
    for k in range(1, devices + 1):  # per device budget, the DP finds the best feasible split
        bk = [t for s, t in brute if s.n_stages <= k]
        pk = [x.tokens_per_s for x in cands if x.scheme.n_stages <= k]
        assert bool(bk) == bool(pk)
        if bk:
            assert max(pk) == pytest.approx(max(bk), rel=1e-12)


def test_tight_memory_forces_more_stages_and_no_single_device_scheme():
    prof = uneven_profile(LAYERS)
    c = parse_curve("1:0.3,3:0.6,6:0.9")
    free = plan(prof, c, 6, target="min_devices", min_tokens_per_s=1.0, sim_tokens=0)
    assert free.candidates[0].devices == 1 and not free.memory
    tight = plan(
        prof, c, 6, target="min_devices", min_tokens_per_s=1.0, sim_tokens=0, memory=_budget(9.0)
    )
    assert tight.met and tight.candidates[0].devices >= 2
    assert "9 GB per device" in tight.memory
    none = plan(prof, c, 6, sim_tokens=0, memory=_budget(2.0))  # one layer alone is 3-4 GB
    assert not none.met and "fits in memory" in none.message


def test_a_budget_for_another_model_is_refused():
    prof = uneven_profile(LAYERS[:5])
    with pytest.raises(ConfigError, match="memory"):
        enumerate_candidates(prof, parse_curve("1:0.5,3:0.8"), 3, memory=_budget(50.0))


def test_llama_70b_in_bf16_needs_two_h100s():
    m = budget_of(*parse_synth("llama-2-70b@h100-sxm"))
    assert 130 < m.model_gb < 145  # 69B parameters × 2 bytes
    assert not m.fits(SchemeConfig.ar()) and not m.fits(SchemeConfig.eesd(20, 4))
    assert m.fits(SchemeConfig.ppsd((40, 80)))
    assert not m.fits(SchemeConfig.ppsd((60, 80)))  # 60 layers ≈ 103 GB on stage 1


def _plan(*args):
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "plan", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def test_plan_cli_checks_memory_for_synthesised_profiles():
    common = ["--synth", "llama-2-70b@h100-sxm", "--devices", "8", "--sim-tokens", "0"]
    q = ["--target", "min-devices", "--min-tokens-per-s", "15", "--json"]
    res = _plan(*common, *q)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert "80 GB per device" in doc["memory"]
    assert min(c["devices"] for c in doc["candidates"]) == 2
    res = _plan(*common, *q, "--ignore-memory")
    doc = json.loads(res.stdout)
    assert doc["memory"] is None and doc["candidates"][0]["devices"] == 1


@pytest.mark.parametrize("seed", range(12))
def test_random_budgets_match_brute_force(seed):
    import random

    rng = random.Random(seed)
    n = rng.randint(4, 7)
    prof = uneven_profile(
        [rng.uniform(0.2e-3, 3e-3) for _ in range(n)], tick=rng.uniform(0, 0.5e-3)
    )
    weights = tuple(rng.uniform(0.5, 4.0) for _ in range(n))
    m = WeightBudget(
        rng.uniform(max(weights) + 2.0, sum(weights)),
        weights,
        embed_gb=rng.uniform(0.0, 2.0),
        head_gb=rng.uniform(0.0, 2.0),
        ee_head_gb=rng.uniform(0.0, 2.0),
    )
    c = parse_curve(f"1:{rng.uniform(0.2, 0.6):.2f},{n - 1}:{rng.uniform(0.6, 0.99):.2f}")
    devices = rng.randint(2, 5)
    brute = brute_force(prof, c, devices, max_gamma=4, memory=m)
    cands = enumerate_candidates(prof, c, devices, max_gamma=4, memory=m)
    for k in range(1, devices + 1):
        bk = [t for s, t in brute if s.n_stages <= k]
        pk = [x.tokens_per_s for x in cands if x.scheme.n_stages <= k]
        assert bool(bk) == bool(pk), k
        if bk:
            assert max(pk) == pytest.approx(max(bk), rel=1e-12)


def test_plan_cli_memory_for_a_given_profile_and_a_smaller_device(tmp_path):
    prof = tmp_path / "p.json"
    res = _plan("--write-profile", str(prof), "--sim-tokens", "0")  # the 32-layer example
    assert res.returncode == 0 and prof.is_file()
    q = ["--profile", str(prof), "--sim-tokens", "0", "--json", "--devices", "6"]
    q += ["--target", "min-devices", "--min-tokens-per-s", "1"]
    doc = json.loads(_plan(*q, "--memory", "llama-2-7b@h100-sxm").stdout)
    assert "80 GB per device" in doc["memory"] and doc["candidates"][0]["devices"] == 1
    # 13.5 GB of weights on 6 GB devices: at least three stages, none over 6 GB
    doc = json.loads(_plan(*q, "--memory", "llama-2-7b@h100-sxm", "--device-memory-gb", "6").stdout)
    assert "6 GB per device" in doc["memory"]
    assert min(c["devices"] for c in doc["candidates"]) >= 3
    for bad, field in (
        (["--memory", "llama-2-70b@h100-sxm"], "--memory"),  # 80 layers vs 32
        (["--device-memory-gb", "6"], "--device-memory-gb"),  # no weights known
        (["--memory", "llama-2-7b@h100-sxm", "--ignore-memory"], "--ignore-memory"),
        (["--memory", "llama-2-7b@h100-sxm", "--device-memory-gb", "0"], "--device-memory-gb"),
    ):
        res = _plan("--profile", str(prof), *bad)
        assert res.returncode == 2, (bad, res.stderr)
        assert res.stderr.strip().splitlines()[-1].startswith(f"ppsd: error: {field}")
