"""Stage faults, as a user meets them: a stage killed between runs, a stopped (hung) stage, a
stage killed under ``ppsd run``, and Ctrl-C. Each ends with one line naming what happened, and
no stage process is left behind.

Each test starts real stage processes on the tiny preset (~5 s on 2 cores: the processes load
torch and the model), which is why they are marked slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ppsd_real.backends.distributed import DistributedBackend, PipelineSpec, StageFailure
from ppsd_real.drafters import DrafterSpec
from ppsd_sim.records import SchemeConfig
from tests.real_fixtures import TINY, reference

PROMPT = (1, 5, 7, 9, 11)
ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:  # a zombie counts as gone
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stages_of(parent: int) -> dict[str, int]:
    """The stage processes (by the name they give themselves) among ``parent``'s children."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            comm = (d / "comm").read_text().strip()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and comm.startswith("ppsd-stage-"):
            out[comm] = int(d.name)
    return out


def _wait_generating(pid: int, timeout: float = 60.0) -> None:
    """Until stage ``pid`` computes (its CPU time grows by an eighth of a 0.4 s window): the
    stages sleep between runs and while the parent times AR (no CPU at all), and compute while
    generating, though on a machine other processes keep busy they get only part of a core."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c0 = _cpu_s(pid)
        time.sleep(0.4)
        if _cpu_s(pid) - c0 > 0.05:
            return
    raise AssertionError(f"stage pid {pid} never started generating")


@pytest.mark.slow
def test_a_stage_killed_between_runs_gives_a_stage_failure_naming_it() -> None:
    ref = list(reference(PROMPT, 8))
    be = DistributedBackend(PipelineSpec(TINY, SchemeConfig.ppsd((2, 4))), timeout_s=20)
    pids = list(be.pids)
    assert be.run(list(PROMPT), 8, DrafterSpec("oracle", 0.8, 0), ref).tokens == ref
    os.kill(pids[1], signal.SIGKILL)
    while _alive(pids[1]):
        time.sleep(0.02)
    with pytest.raises(StageFailure, match=r"^stage 1 \(pid \d+\) was killed by signal 9") as err:
        be.run(list(PROMPT), 8, DrafterSpec("oracle", 0.8, 0), ref)
    # whether the death is seen before the next job is sent or while it runs is a race
    # between the reaper and the send; either way the message says which it was
    assert err.value.stages == (1,)
    assert "idle between jobs" in str(err.value) or "while generating" in str(err.value)
    be.close()
    assert not any(_alive(p) for p in pids)


@pytest.mark.slow
def test_a_stopped_stage_is_found_by_its_heartbeat_within_seconds_and_named_alone() -> None:
    n = 3000
    ref = list(reference(PROMPT, n))
    be = DistributedBackend(PipelineSpec(TINY, SchemeConfig.ppsd((2, 4))), timeout_s=60)
    pids = list(be.pids)
    stopper = threading.Thread(
        target=lambda: (_wait_generating(pids[1]), os.kill(pids[1], signal.SIGSTOP))
    )
    stopper.start()
    try:
        with pytest.raises(StageFailure) as err:
            be.run(list(PROMPT), n, DrafterSpec("oracle", 0.8, 0), ref)
        t_stop = time.monotonic()
    finally:
        stopper.join()
        be.close()
    msg = str(err.value)
    assert err.value.stages == (1,), msg
    assert msg.startswith("stage 1 ") and "stopped responding" in msg and "stage 0" not in msg
    assert "stopped (SIGSTOP?)" in msg
    quiet = float(msg.split("no heartbeat for ")[1].split(" s")[0])
    assert quiet < be.hang_s + 2.0  # found within seconds, not after the 60 s silence timeout
    assert time.monotonic() - t_stop < 10
    time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def _ppsd_run(*extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ppsd_sim.cli.main", "run", "--preset", "tiny", "--scheme"]
    cmd += ["ppsd", "--tokens", "3000", "--repeats", "3", *extra]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    # A session of its own: Ctrl-C in a terminal signals the whole process group, stages too.
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stages_started(p: subprocess.Popen, k: int = 2, timeout: float = 60.0) -> dict[str, int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and p.poll() is None:
        got = _stages_of(p.pid)
        if len(got) == k:
            return got
        time.sleep(0.1)
    raise AssertionError(f"stage processes never started: {p.communicate()}")


@pytest.mark.slow
def test_ppsd_run_with_a_killed_stage_prints_one_line_naming_it_and_leaves_nothing() -> None:
    p = _ppsd_run()
    stages = _stages_started(p)
    _wait_generating(stages["ppsd-stage-1"])
    os.kill(stages["ppsd-stage-1"], signal.SIGKILL)
    _, err = p.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert p.returncode == 1, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("ppsd: error: stage 1 (pid ") and "SIGKILL" in lines[0]
    assert "stage 0" not in lines[0]
    assert not any(_alive(pid) for pid in stages.values())


@pytest.mark.slow
def test_ctrl_c_during_ppsd_run_is_quiet_exits_130_and_leaves_nothing() -> None:
    p = _ppsd_run()
    stages = _stages_started(p)
    _wait_generating(stages["ppsd-stage-0"])
    os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["ppsd: interrupted"], err
    assert not any(_alive(pid) for pid in stages.values())
