"""The one measurement loop (``ppsd_real.bench``), the thread context manager and the stage
messages' wire codec, checked with scripted variants (no model: the loop's order and pairing
are what is under test)."""

from __future__ import annotations

import pytest
import torch

from ppsd_real.backends.messages import (
    Bye,
    Draft,
    Flush,
    Forward,
    Stop,
    Verdict,
    decode,
    encode,
)
from ppsd_real.bench import Measurement, NotLossless, Variant, blocks, measure, schedule
from ppsd_real.cli_run import _table
from ppsd_real.decoders import DecodeResult
from ppsd_real.machine_load import MachineLoad
from ppsd_real.threads import all_cores, check_threads, torch_threads
from ppsd_sim.errors import ConfigError

REF = [4, 5, 6]


def _scripted(name: str, times: dict[int, list[float]], log: list, tokens=REF, lossless=True):
    """A variant whose repeat ``rep`` takes ``times[rep]`` in turn; logs (name, rep)."""

    def run(rep: int) -> DecodeResult:
        log.append((name, rep))
        return DecodeResult(tokens=list(tokens), time_s=times[rep].pop(0))

    return Variant(name, run, lossless)


def test_schedule_warms_up_first_then_every_block_and_skips_the_done_ones() -> None:
    groups, plan = schedule(5, 2, group=2)
    assert [list(g) for g in groups] == [[0, 1], [2, 3], [4]]
    assert plan[:3] == [(0, 0), (0, 1), (0, 2)]
    assert plan[3:] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    _, plan = schedule(5, 2, group=2, skip={(1, 0), (2, 0), (1, 2)})
    assert plan == [(0, 1), (0, 2), (1, 1), (2, 1), (2, 2)]  # group 0 is done: no warm-up
    _, plan = schedule(3, 1, skip={(1, 0)})
    assert plan == []
    with pytest.raises(ConfigError, match="repeats"):
        schedule(3, 0)


def test_blocks_put_the_baseline_around_each_group_and_pair_speedups_by_repeat() -> None:
    log: list = []
    base = _scripted("ar", {0: [9.0, 9.0], 1: [1.0, 3.0], 2: [2.0, 2.0]}, log)
    fast = _scripted("fast", {0: [9.0], 1: [1.0], 2: [0.5]}, log)
    slow = _scripted("slow", {0: [9.0], 1: [4.0], 2: [8.0]}, log)
    got = measure([fast, slow], base, REF, repeats=2)
    assert log == [
        ("ar", 0), ("fast", 0), ("slow", 0), ("ar", 0),  # warm-up: measured, not kept
        ("ar", 1), ("fast", 1), ("slow", 1), ("ar", 1),
        ("ar", 2), ("fast", 2), ("slow", 2), ("ar", 2),
    ]  # fmt: skip
    # baseline of a repeat = mean of the AR before and after: 2.0 in repeat 1, 2.0 in repeat 2
    assert got.ratios("fast") == [2.0, 4.0] and got.speedup("fast") == 3.0
    assert got.ratios("slow") == [0.5, 0.25]
    assert got.ratios("fast", "slow") == [4.0, 16.0]  # paired in the same repeat
    assert got.ratios("ar", "fast") == [0.5, 0.25]
    assert got.speedup("ar") == 1.0 and got.median_s("ar") == 2.0
    assert got.series["fast"].times_s == [1.0, 0.5]  # the warm-up is excluded


def test_groups_share_the_baseline_between_them_within_a_repeat_only() -> None:
    log: list = []
    base = _scripted("ar", {r: [1.0] * 3 for r in range(3)}, log)
    vs = [_scripted(n, {r: [1.0] for r in range(3)}, log) for n in "abc"]
    got = list(blocks(vs, base, REF, repeats=2, group=2))
    runs = [x for x in log if x[1] == 1]
    assert runs == [("ar", 1), ("a", 1), ("b", 1), ("ar", 1), ("c", 1), ("ar", 1)]
    assert [(b.rep, b.group) for b in got] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert [len(b.baseline_runs) for b in got] == [2, 1, 2, 1]


def test_a_lossy_speculative_run_is_refused_and_a_differing_baseline_only_noted() -> None:
    log: list = []
    base = _scripted("ar", {r: [1.0, 1.0] for r in range(2)}, log)
    noted = _scripted("ar_all_cores", {r: [1.0] for r in range(2)}, log, [4, 7, 6], False)
    got = measure([noted], base, REF, repeats=1)
    assert got.series["ar_all_cores"].differs_at == 1
    lossy = _scripted("ppsd", {r: [1.0] for r in range(2)}, log, [4, 5])
    base = _scripted("ar", {r: [1.0, 1.0] for r in range(2)}, log)
    with pytest.raises(NotLossless, match="ppsd: output differs from AR at token 2"):
        measure([lossy], base, REF, repeats=1)


def test_torch_threads_sets_and_restores_even_on_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        with torch_threads(all_cores()):
            assert torch.get_num_threads() == all_cores()
            raise RuntimeError
    assert torch.get_num_threads() == before
    assert check_threads(all_cores()) == all_cores()
    for bad in (0, all_cores() + 1, True, 1.5):
        with pytest.raises(ConfigError, match="this machine's cores"):
            check_threads(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_stage_messages_round_trip_through_the_wire_codec(dtype: torch.dtype) -> None:
    h = torch.randn(1, 3, 24).to(dtype)
    msgs = [
        Forward(3, 17, [5, 6, 7], h),
        Forward(0, 0, [1], None),
        Draft(2, 9, 44),
        Verdict(2, 9, 45, 123.5),
        Flush(4, 10),
        Stop(),
        Bye(),
    ]
    for msg in msgs:
        got = decode(encode(msg))
        assert type(got) is type(msg)
        if isinstance(msg, Forward) and msg.hidden is not None:
            assert got.hidden.dtype == dtype and torch.equal(got.hidden, msg.hidden)
            assert (got.epoch, got.pos, got.tokens) == (msg.epoch, msg.pos, msg.tokens)
        else:
            assert got == msg


def _measurement(load: MachineLoad | None) -> Measurement:
    log: list = []
    base = _scripted("ar", {r: [2.0, 2.0] for r in range(2)}, log)
    vs = [
        _scripted("ppsd", {r: [1.0] for r in range(2)}, log),
        _scripted("ar_all_cores", {r: [1.5] for r in range(2)}, log, lossless=False),
        _scripted("generate", {r: [3.0] for r in range(2)}, log, lossless=False),
    ]
    got = measure(vs, base, REF, repeats=1)
    got.load = load
    return got


@pytest.mark.parametrize(
    ("load", "said"),
    [
        (MachineLoad(10.0, 0.30, 0.02), "WARNING: the machine was busy while measuring"),
        (MachineLoad(10.0, 0.001, 0.0), "machine load: quiet"),
        (None, "machine load: unknown"),
    ],
)
def test_the_run_table_warns_when_the_machine_was_busy(capsys, load, said) -> None:
    labels = {"ar": "AR (1 thread)", "ppsd": "PPSD", "ar_all_cores": "AR (7 threads: all cores)"}
    labels["generate"] = "generate"
    _table(_measurement(load), ["ar", "ppsd", "ar_all_cores", "generate"], labels, 3, 7)
    out = capsys.readouterr().out
    assert said in out and "vs AR 7 threads" in out
    assert out.count("AR (1 thread)") == 1
    ppsd_row = next(line for line in out.splitlines() if line.startswith("PPSD"))
    assert "2.00x" in ppsd_row and "1.50x" in ppsd_row and "3.00x" in ppsd_row
