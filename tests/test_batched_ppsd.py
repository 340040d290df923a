"""Batched PPSD on real stage processes: every sequence's tokens equal its batch-1 AR tokens
whatever its drafts (right, wrong, the early exit's own), under continuous batching, at 2 and 3
stages, with the exit after stage 0 or a later stage; each request's every token after its
first is judged exactly once, in order, as the oracle drafter fixed it; no speculation is lost
or invented (α = 1: no flush, no dead step; α = 0: every judged draft flushed); a stage killed
mid-run is named; bad setups are refused before any process starts."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

import pytest

from ppsd_real.backends.distributed import StageFailure
from ppsd_real.batched.decoders import Request
from ppsd_real.batched.driver import BatchedDriver
from ppsd_real.batched.pipeline_ppsd import BatchedPPSD
from ppsd_real.drafters import Drafter, DrafterSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig
from tests.arch_helpers import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.real_fixtures import TINY, max_seated, reference, tiny_driver

# one request finishes at its prefill, one after a single judged token, short ones leave early
# and the queued ones join while the others run
MIX = [((1, 5, 7, 9, 11), 12), ((3,), 5), ((200, 17, 42, 99, 100, 101, 7, 8), 14), ((9, 9), 1)]
MIX += [((4, 3, 2), 9), ((250, 1, 2, 3, 4, 5, 6), 7), ((8, 8, 8), 2), ((77, 6), 10)]


@functools.cache
def batched() -> BatchedDriver:
    return BatchedDriver(tiny_driver())


def _refs() -> list[list[int]]:
    return [list(reference(p, n)) for p, n in MIX]


def _vocab() -> int:
    return int(batched().parts.config.vocab_size)


def _oracle(alpha: float) -> list[Request]:
    return [
        Request(p, n, Drafter(DrafterSpec("oracle", alpha, seed=i), _vocab(), ref))
        for i, ((p, n), ref) in enumerate(zip(MIX, _refs(), strict=True))
    ]


def _judged(served) -> list[int]:
    return [x for r in served.results for x in r.trace]


@pytest.mark.parametrize(
    ("bounds", "exit_stage", "max_batch"),
    [((2, 4), 1, 3), ((1, 2, 4), 2, 5), ((3, 4), 1, 1), ((1, 3, 4), 1, 8)],
    ids=["2 stages, batch 3", "3 stages, exit after stage 2", "batch 1", "3 stages, batch 8"],
)
def test_ppsd_is_lossless_per_sequence(
    bounds: tuple[int, ...], exit_stage: int, max_batch: int
) -> None:
    scheme = SchemeConfig.ppsd(bounds, exit_stage)
    refs = _refs()
    with BatchedPPSD(batched(), TINY, scheme, max_batch) as pp:
        own = pp.run([Request(p, n) for p, n in MIX])  # the early exit's own drafts
        runs = {a: pp.run(_oracle(a)) for a in (0.0, 0.5, 1.0)}
    for served in (own, *runs.values()):
        assert [r.tokens for r in served.results] == refs
        t = served.times
        for i, (_, n) in enumerate(MIX):
            assert 0.0 <= t.admitted[i] < t.first[i] <= t.finish[i] <= served.time_s
            # every token after the first is judged exactly once
            assert len(served.results[i].trace) == n - 1
        assert max_seated(t) <= max_batch
    # the oracle fixed each output position's fate up front: the trace is that, in order
    for a, served in runs.items():
        for i, res in enumerate(served.results):
            drafter = _oracle(a)[i].drafter
            assert drafter is not None
            assert res.trace == [int(x) for x in drafter._right[1 : len(res.tokens)]]
    assert runs[1.0].flushes == 0 and runs[1.0].extra["dead_steps"] == 0
    assert set(_judged(runs[1.0])) == {1}
    assert set(_judged(runs[0.0])) == {0}
    # α = 0: each judged draft is wrong; a flush is counted where a token was left to make
    assert runs[0.0].flushes == sum(max(0, n - 2) for _, n in MIX)
    assert runs[0.0].extra["dead_steps"] > 0  # rejections left whole steps useless
    assert all(r.positions == [1] * len(r.trace) for r in runs[0.0].results)


def test_drafts_in_flight_fill_an_idle_pipeline() -> None:
    """With one sequence and every draft right, a group has more than one step in the
    pipeline at once (what PP-AR cannot do) and never more than the in-flight limit."""
    scheme = SchemeConfig.ppsd((2, 4), 1)
    with BatchedPPSD(batched(), TINY, scheme, 1) as pp:
        served = pp.run(_oracle(1.0)[:1])
    assert [r.tokens for r in served.results] == _refs()[:1]
    assert 2 <= served.extra["steps_in_flight_peak"] <= scheme.inflight_limit


def test_a_killed_stage_is_named_and_every_process_stops() -> None:
    pp = BatchedPPSD(batched(), TINY, SchemeConfig.ppsd((1, 2, 4), 1), 4)
    victim = pp.pids[0]  # stage 1 of 3
    reqs = [Request((5, 6, 7), 400) for _ in range(4)]
    done = threading.Event()

    def kill_when_running() -> None:
        while not done.is_set() and pp.steps < 20:
            time.sleep(0.005)
        if not done.is_set():
            os.kill(victim, signal.SIGKILL)

    t = threading.Thread(target=kill_when_running)
    t.start()
    try:
        with pytest.raises(StageFailure, match=r"stage 1 \(pid \d+\) was killed by signal 9"):
            pp.run(reqs)
    finally:
        done.set()
        t.join()
        pp.close()
    assert pp.pids == []


@pytest.mark.parametrize(
    ("scheme", "max_batch", "field"),
    [
        (SchemeConfig.pp_ar((2, 4)), 2, "scheme"),
        (SchemeConfig.ppsd((2, 3), 1), 2, "scheme.stage_boundaries"),
        (SchemeConfig.ppsd((2, 4), 1), 0, "max_batch"),
    ],
    ids=["a PP-AR scheme", "stages not covering the model", "batch 0"],
)
def test_bad_setups_are_refused_before_any_process_starts(scheme, max_batch, field) -> None:
    with pytest.raises(ConfigError) as err:
        BatchedPPSD(batched(), TINY, scheme, max_batch)
    assert err.value.field == field


@pytest.mark.parametrize(("bounds", "exit_stage"), [((2, 4), 1), ((1, 2, 4), 2)])
def test_a_trained_head_drafts_wherever_the_exit_stage_runs(tmp_path, bounds, exit_stage) -> None:
    """``ee_head`` reaches the exit stage, in the parent (after stage 0) or in a stage process:
    a head of random weights drafts other tokens than the LM head (far fewer accepted) and the
    tokens stay every request's batch-1 AR tokens."""
    import torch
    from safetensors.torch import save_file

    lm = batched().parts.lm_head.weight
    gen = torch.Generator().manual_seed(7)
    path = tmp_path / "ee_head.safetensors"
    save_file({"weight": torch.randn(lm.shape, generator=gen, dtype=lm.dtype)}, str(path))
    scheme = SchemeConfig.ppsd(bounds, exit_stage)
    reqs = [Request(p, n) for p, n in MIX]
    with BatchedPPSD(batched(), TINY, scheme, 4) as pp:
        own = pp.run(reqs)
    with BatchedPPSD(batched(), TINY, scheme, 4, ee_head=str(path)) as pp:
        trained = pp.run(reqs)
    assert [r.tokens for r in trained.results] == _refs()
    assert _judged(trained) != _judged(own)
    assert sum(_judged(trained)) < sum(_judged(own))


def test_a_closed_loop_of_users_keeps_its_places_full() -> None:
    """``arrivals="closed"``: a request arrives when a place frees (the first ``max_batch`` at
    t = 0), is admitted at or after it and decodes losslessly."""
    with BatchedPPSD(batched(), TINY, SchemeConfig.ppsd((2, 4), 1), 3, arrivals="closed") as pp:
        served = pp.run(_oracle(0.5))
    assert [r.tokens for r in served.results] == _refs()
    t = served.times
    assert t.arrival[:3] == (0.0, 0.0, 0.0)
    finishes = sorted(t.finish)
    for i in range(3, len(MIX)):
        assert t.arrival[i] in finishes and t.arrival[i] <= t.admitted[i]
    assert max_seated(t) <= 3
