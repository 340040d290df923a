"""Batched PP-AR on real stage processes: every sequence's tokens equal its batch-1 AR tokens
under continuous batching (groups that shrink and refill), at 2 and 3 stages and uneven
splits; the schedule's invariants; a stage that dies mid-run is named; bad input refused."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

import pytest

from ppsd_real.backends.distributed import StageFailure
from ppsd_real.batched.decoders import BatchedAR, Request
from ppsd_real.batched.driver import BatchedDriver
from ppsd_real.batched.pipeline import BatchedPPAR
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig
from tests.arch_helpers import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.real_fixtures import TINY, max_seated, reference, tiny_driver

# as tests/test_batched.py: one request finishes at its prefill, short ones leave early and the
# queued ones join while the others run
MIX = [((1, 5, 7, 9, 11), 12), ((3,), 5), ((200, 17, 42, 99, 100, 101, 7, 8), 14), ((9, 9), 1)]
MIX += [((4, 3, 2), 9), ((250, 1, 2, 3, 4, 5, 6), 7), ((8, 8, 8), 3), ((77, 6), 10)]


@functools.cache
def batched() -> BatchedDriver:
    return BatchedDriver(tiny_driver())


def _requests(mix=MIX) -> list[Request]:
    return [Request(p, n) for p, n in mix]


def _refs(mix=MIX) -> list[list[int]]:
    return [list(reference(p, n)) for p, n in mix]


@pytest.mark.parametrize(
    ("bounds", "max_batch"),
    [((2, 4), 3), ((1, 4), 8), ((1, 2, 4), 5), ((3, 4), 1)],
    ids=["2 stages, batch 3", "uneven 1+3, batch 8", "3 stages", "batch 1"],
)
def test_pp_ar_is_lossless_per_sequence(bounds: tuple[int, ...], max_batch: int) -> None:
    scheme = SchemeConfig.pp_ar(bounds)
    with BatchedPPAR(batched(), TINY, scheme, max_batch) as pp:
        served = pp.run(_requests())
        again = pp.run(_requests()[:3])  # a second run on the same stages starts clean
    assert [r.tokens for r in served.results] == _refs()
    assert [r.tokens for r in again.results] == _refs()[:3]
    t = served.times
    for i, (_, n) in enumerate(MIX):
        assert 0.0 <= t.admitted[i] < t.first[i] <= t.finish[i] <= served.time_s
        assert len(served.results[i].tokens) == n
    # never more than max_batch sequences admitted and unfinished at once
    assert max_seated(t) <= max_batch
    # steps: one prefill per admission wave of a group plus one per decoded token of a group;
    # at least every token after the first of each request is one row of some decode step
    assert served.steps >= max(n for _, n in MIX)


def test_pp_ar_matches_batched_ar_tokens_and_fills_its_stages() -> None:
    """The same requests on batched AR and on PP-AR give the same tokens; with work for k
    groups, k groups are in the pipeline at once (one per stage); with one sequence, one."""
    reqs = _requests()
    ar = BatchedAR(batched(), 4).run(reqs)
    with BatchedPPAR(batched(), TINY, SchemeConfig.pp_ar((2, 4)), 4) as pp:
        served = pp.run(_requests())
    assert [r.tokens for r in served.results] == [r.tokens for r in ar.results]
    assert served.extra["groups_in_flight_peak"] == 2
    with BatchedPPAR(batched(), TINY, SchemeConfig.pp_ar((1, 2, 4)), 1) as pp:
        alone = pp.run(_requests()[:3])
    assert alone.extra["groups_in_flight_peak"] == 1
    assert [r.tokens for r in alone.results] == _refs()[:3]


def test_a_stage_killed_mid_run_is_named() -> None:
    mix = [((1, 2, 3), 400)] * 4
    pp = BatchedPPAR(batched(), TINY, SchemeConfig.pp_ar((1, 2, 4)), 4)
    victim = pp.pids[0]  # stage 1 of 3: stage 2 only loses its link to it

    def kill_mid_run() -> None:  # once the run is under way (of its ~800 steps), not by a clock
        deadline = time.monotonic() + 30
        while pp.steps < 20 and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(StageFailure) as err:
        pp.run(_requests(mix))
    killer.join()
    assert time.monotonic() - t0 < 30
    assert err.value.stages == (1,)
    assert "stage 1" in str(err.value) and "signal 9" in str(err.value)
    assert not pp.pids  # every stage process was stopped
    with pytest.raises(RuntimeError, match="closed"):
        pp.run(_requests())


@pytest.mark.parametrize(
    ("scheme", "max_batch", "field"),
    [
        (SchemeConfig.ar(), 4, "scheme"),
        (SchemeConfig.pp_ar((2, 9)), 4, None),  # beyond the model's 4 layers
        (SchemeConfig.pp_ar((2, 4)), 0, "max_batch"),
    ],
)
def test_bad_pp_ar_setups_are_refused_before_any_process_starts(
    scheme: SchemeConfig, max_batch: int, field: str | None
) -> None:
    with pytest.raises(ConfigError) as err:
        BatchedPPAR(batched(), TINY, scheme, max_batch)
    if field is not None:
        assert err.value.field == field


def test_bad_requests_are_refused() -> None:
    with BatchedPPAR(batched(), TINY, SchemeConfig.pp_ar((2, 4)), 2) as pp:
        with pytest.raises(ConfigError):
            pp.run([])
        with pytest.raises(ConfigError):
            pp.run([Request((), 3)])
        assert [r.tokens for r in pp.run(_requests()[:2]).results] == _refs()[:2]


def test_hand_offs_are_timed_between_the_stage_processes() -> None:
    """The hop probe: a trip round the k stages with no layer run, ÷ k; bigger messages take
    no less; the stages still decode afterwards (the probe leaves no state behind)."""
    with BatchedPPAR(batched(), TINY, SchemeConfig.pp_ar((1, 2, 4)), 2) as pp:
        one = pp.hop_samples(1, 60)
        many = pp.hop_samples(512, 60)
        served = pp.run(_requests()[:2])
    assert len(one) == len(many) == 60
    assert all(0 < x < 1.0 for x in one + many)  # sane, whatever else the machine runs
    assert sorted(many)[30] >= sorted(one)[30] * 0.8
    assert [r.tokens for r in served.results] == _refs()[:2]


def test_the_serving_profile_takes_the_pipeline_hop_when_pp_ar_is_measured() -> None:
    from calibration.serving import serving_profile
    from ppsd_real import runner

    m = runner.load(TINY)
    plain = serving_profile(m, 5, 2, 2)
    piped = serving_profile(m, 5, 2, 2, pp_stages=2)
    assert plain.hop.median == 0.0
    assert 0.0 < piped.hop.median < 1.0
    assert "batched PP-AR stage processes" in piped.provenance.notes
    assert piped.batched is not None
