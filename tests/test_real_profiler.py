"""The profiler produces a plausible HardwareProfile with honest provenance (not exact numbers:
timings depend on the machine)."""

from __future__ import annotations

import json

import pytest

from ppsd_real import runner
from ppsd_real.backends.distributed import DistributedBackend, PipelineSpec
from ppsd_real.profiler import profile
from ppsd_sim.records import SchemeConfig
from tests.real_fixtures import TINY


def _plausible(t, hi: float = 0.05) -> None:
    assert 0 < t.lo <= t.median <= t.hi < hi
    assert t.samples and all(s > 0 for s in t.samples)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["pipe", "gloo"])
def test_profile_with_stage_processes_is_per_stage_and_complete(transport: str) -> None:
    m = runner.load(TINY)
    with DistributedBackend(
        PipelineSpec(TINY, SchemeConfig.ppsd((2, 4)), transport=transport)
    ) as be:
        prof = profile(m, repeats=5, backend=be, window_s=0.1, rounds=1)
    assert prof.provenance.latency_context == "per_stage"
    assert prof.provenance.source == "measured" and prof.provenance.threads == 1
    assert prof.n_layers == 4
    for t in (*prof.layer_decode, prof.ee_head, prof.final_head, prof.hop, prof.tick):
        _plausible(t)
    assert 1.0 <= prof.concurrency_slowdown < 5.0
    notes = json.loads(prof.provenance.notes)
    assert notes["transport"] == transport
    assert 0 < notes["c_full_model"] < 1 and 0 < notes["c_per_stage"] < 1
    assert len(notes["full_model_layer_median_s"]) == 4
    assert len(notes["tick_per_stage_median_s"]) == 2


def test_profile_without_stage_processes_says_full_model_and_no_tick() -> None:
    prof = profile(runner.load(TINY), repeats=5)
    assert prof.provenance.latency_context == "full_model"
    assert prof.tick.median == 0.0 and prof.hop.median == 0.0
    for t in (*prof.layer_decode, prof.final_head, prof.flush):
        _plausible(t)
    assert "tick" in json.loads(prof.provenance.notes)
