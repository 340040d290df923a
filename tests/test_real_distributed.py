"""PPSD over real stage processes: lossless, and a killed stage fails fast leaving nothing."""

from __future__ import annotations

import os
import threading
import time

import pytest

from ppsd_real.backends.distributed import DistributedBackend, PipelineSpec, StageFailure
from ppsd_real.drafters import DrafterSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig
from tests.real_fixtures import TINY, reference

PROMPTS = [(1, 5, 7, 9, 11), (3,), (200, 17, 42, 99)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie counts as gone
        return fh.read().split()[2] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bounds", "exit_stage", "transport"),
    [
        ((2, 4), 1, "pipe"),
        ((1, 2, 3, 4), 1, "pipe"),
        ((1, 3, 4), 2, "pipe"),
        ((2, 4), 1, "gloo"),
        ((1, 3, 4), 2, "gloo"),
    ],
)
def test_ppsd_distributed_equals_ar(
    bounds: tuple[int, ...], exit_stage: int, transport: str
) -> None:
    cases = [(0, 0.0, 0, 25), (1, 0.6, 1, 31), (2, 1.0, 2, 19), (0, None, 0, 22)]
    spec = PipelineSpec(TINY, SchemeConfig.ppsd(bounds, exit_stage=exit_stage), transport=transport)
    with DistributedBackend(spec, timeout_s=60) as be:
        pids = list(be.pids)
        for pi, alpha, seed, n in cases:
            prompt = PROMPTS[pi]
            ref = reference(prompt, n)
            spec = (
                DrafterSpec("early-exit") if alpha is None else DrafterSpec("oracle", alpha, seed)
            )
            res = be.run(list(prompt), n, spec, list(ref))
            assert res.tokens == list(ref), (pi, alpha)
            assert len(res.trace) <= n and len(res.stage_busy_s) == len(bounds)
            if alpha == 0.0:
                assert sum(res.trace) == 0
            if alpha == 1.0:
                assert all(res.trace) and res.flushes == 0
    assert not any(_alive(p) for p in pids)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["pipe", "gloo"])
def test_killing_a_stage_fails_fast_and_leaves_no_process(transport: str) -> None:
    be = DistributedBackend(
        PipelineSpec(TINY, SchemeConfig.ppsd((2, 4)), transport=transport), timeout_s=20
    )
    pids = list(be.pids)
    ref = reference(PROMPTS[0], 3000)
    killer = threading.Timer(0.5, os.kill, (pids[1], 9))
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(StageFailure, match=r"stage 1 .*killed by signal 9 \(SIGKILL\)"):
        be.run(list(PROMPTS[0]), 3000, DrafterSpec("oracle", 0.8, 0), list(ref))
    assert time.monotonic() - t0 < 15
    killer.join()
    be.close()
    time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
    with pytest.raises(StageFailure):
        be.run(list(PROMPTS[0]), 5, DrafterSpec("oracle", 0.8, 0), list(ref[:5]))


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["pipe", "gloo"])
def test_hop_latency_is_measured_over_each_transport(transport: str) -> None:
    with DistributedBackend(
        PipelineSpec(TINY, SchemeConfig.ppsd((2, 4)), transport=transport)
    ) as be:
        hops = be.hop_latency(30)
    assert len(hops) == 30 and all(0 < h < 0.05 for h in hops)


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        PipelineSpec(TINY, SchemeConfig.ppsd((2, 4)), transport="carrier-pigeon")
    assert err.value.field == "transport"
