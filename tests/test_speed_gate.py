"""The speed gate's decision: a drop must reproduce, and a busy machine is not a regression.

The decision logic runs on scripted measurements (plain data, so every branch is reached);
the load meter and the CLI run for real, with a real busy process beside them.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibration import gate
from ppsd_real.machine_load import BUSY, PROC_STAT, LoadMeter, MachineLoad
from ppsd_real.test_hooks import TICK_DELAY_ENV
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig

LABEL = "PPSD α=0.9"
QUIET = MachineLoad(30.0, 0.003, 0.0)
BUSY_LOAD = MachineLoad(30.0, 0.30, 0.0)
GOOD = [1.50, 1.52, 1.49, 1.51, 1.50]
SLOW = [1.10, 1.12, 1.09, 1.11, 1.10]


def _base(samples=(1.50, 1.51, 1.49, 1.50, 1.52), runs=()):
    cell = gate.GateCell(LABEL, SchemeConfig.ppsd((4, 8)), 0.9, tuple(samples), tuple(runs))
    return gate.Baseline("x86_64-2core", "preset:cpu-bench(seed=0)", 128, (cell,), "now", {})


def _scripted(*runs):
    """A measure function that returns the given (samples, load) pairs in turn and records
    how many repeats each call asked for."""
    asked: list[int] = []
    it = iter(runs)

    def measure(n):
        asked.append(n)
        samples, load = next(it)
        return {LABEL: list(samples)}, load

    return measure, asked


def test_a_passing_run_is_not_measured_again():
    measure, asked = _scripted((GOOD, QUIET))
    d = gate.decide(_base(), measure, 3, 5)
    assert (d.status, d.exit_code, asked) == ("pass", 0, [3])


def test_a_drop_that_does_not_reproduce_passes():
    measure, asked = _scripted((SLOW, QUIET), (GOOD, QUIET))
    d = gate.decide(_base(), measure, 3, 5)
    assert d.status == "pass" and asked == [3, 5]
    assert not d.runs[0].ok and d.runs[1].ok
    assert "did not reproduce" in d.reason


def test_a_drop_that_reproduces_on_a_quiet_machine_fails():
    measure, _ = _scripted((SLOW, QUIET), (SLOW, QUIET))
    d = gate.decide(_base(), measure, 3, 5)
    assert (d.status, d.exit_code) == ("fail", 1)
    assert d.runs[1].verdicts[0].change == pytest.approx(1.10 / 1.50 - 1)


def test_a_drop_on_a_busy_machine_is_inconclusive_not_a_failure():
    measure, _ = _scripted((SLOW, BUSY_LOAD), (SLOW, BUSY_LOAD))
    d = gate.decide(_base(), measure, 3, 5)
    assert (d.status, d.exit_code) == ("inconclusive", 3)
    assert "30%" in d.reason
    # only the confirming run's load decides: busy first, quiet second is a failure
    measure, _ = _scripted((SLOW, BUSY_LOAD), (SLOW, QUIET))
    assert gate.decide(_base(), measure, 3, 5).status == "fail"
    # a machine whose load cannot be read is judged as if quiet (never a silent pass)
    measure, _ = _scripted((SLOW, None), (SLOW, None))
    assert gate.decide(_base(), measure, 3, 5).status == "fail"


def test_the_spread_between_baseline_runs_widens_the_threshold():
    tight = _base(runs=(1.50, 1.50, 1.50))
    loose = _base(runs=(1.30, 1.50, 1.70))
    assert tight.cells[0].between_runs == 0.0
    sd = loose.cells[0].between_runs
    # the sample SD (0.2 / 1.5) at its upper 90% bound: × √(2 / χ²₀.₁₀(2)) = × √(2 / 0.2107)
    assert gate.between_sd((1.30, 1.50, 1.70), upper=None) == pytest.approx(0.2 / 1.5)
    assert sd == pytest.approx(0.2 / 1.5 * math.sqrt(2 / 0.210721), rel=1e-4)
    fresh = [1.05, 1.06, 1.04, 1.05, 1.05]  # -30%: fails the tight baseline, passes the loose
    (t,) = gate.judge(tight, {LABEL: fresh})
    (lo,) = gate.judge(loose, {LABEL: fresh})
    assert not t.ok and lo.ok
    base = list(loose.cells[0].speedups)
    se_b = gate.rel_se(base)
    se_f = 1.2533 * max(gate.rel_sd(fresh), gate.rel_sd(base)) / math.sqrt(len(fresh))
    assert lo.threshold == pytest.approx(1 - math.exp(-3 * math.sqrt(se_b**2 + se_f**2 + sd**2)))
    # one run says nothing about the spread between runs
    assert gate.between_sd((1.5,)) == 0.0


def test_run_medians_round_trip_and_are_checked(tmp_path):
    base = _base(runs=(1.4, 1.5, 1.6))
    path = gate.save_baseline(tmp_path / "b.json", base)
    assert gate.load_baseline(path) == base
    data = json.loads(path.read_text())
    data["cells"][0]["run_medians"] = [1.4, -1.0]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"cells\[0\]\.run_medians\[1\]"):
        gate.load_baseline(path)
    # a baseline written before run medians existed still loads (no spread term)
    del data["cells"][0]["run_medians"]
    path.write_text(json.dumps(data))
    assert gate.load_baseline(path).cells[0].between_runs == 0.0


def test_hardware_class_names_the_cpu_and_is_a_safe_file_name():
    hw = gate.hardware_class()
    assert hw.startswith(f"{os.uname().machine}-{os.cpu_count()}core")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", hw)
    if Path("/proc/cpuinfo").is_file():
        assert len(hw) > len(f"{os.uname().machine}-{os.cpu_count()}core")  # the CPU is in it


def _hog(seconds: float) -> subprocess.Popen:
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


needs_proc = pytest.mark.skipif(not PROC_STAT.is_file(), reason="needs Linux /proc/stat")


@needs_proc
def test_load_meter_tells_other_processes_from_our_own():
    meter = LoadMeter()
    hog = _hog(2.0)  # not reaped before the meter stops: someone else's work
    time.sleep(2.0)
    other = meter.stop()
    hog.wait()
    assert other is not None and other.foreign > 0.6 / os.cpu_count() and other.busy

    meter = LoadMeter()
    child = _hog(1.0)
    child.wait()  # reaped: our own work, as the gate's stage processes are
    own = meter.stop()
    assert own is not None and own.foreign < BUSY and not own.busy


def _calibrate(args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", "calibrate", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TQDM_DISABLE": "1", **(env or {})},
    )


@pytest.mark.long
@needs_proc
def test_gate_on_a_busy_machine_says_inconclusive_and_baseline_refuses_to_record(tmp_path):
    common = ["--preset", "tiny", "--tokens", "16", "--repeats", "2"]
    path = tmp_path / "b.json"
    res = _calibrate(["baseline", *common, "--runs", "3", "--baseline", str(path)])
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(gate.load_baseline(path).cells[0].run_medians) == 3
    before = path.read_bytes()
    hogs = [_hog(120.0) for _ in range(os.cpu_count() or 1)]
    try:
        res = _calibrate(
            ["regress", *common, "--floor", "0.5", "--baseline", str(path)],
            {TICK_DELAY_ENV: "0.02"},
        )
        assert res.returncode == 3, res.stdout + res.stderr[-2000:]
        assert "INCONCLUSIVE" in res.stderr and "other processes used" in res.stderr
        res = _calibrate(["baseline", *common, "--runs", "3", "--baseline", str(path)])
        assert res.returncode == 3 and "baseline not written" in res.stderr
        assert path.read_bytes() == before  # the committed baseline is untouched
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def test_bad_runs_is_refused_in_one_line(tmp_path):
    res = _calibrate(
        ["baseline", "--preset", "tiny", "--runs", "2", "--baseline", str(tmp_path / "b.json")]
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("ppsd: error: --runs")
    assert not (tmp_path / "b.json").exists()
