"""CI's speed-gate step (.ci/speed_gate, called by .ci/run): never skipped, exit codes mapped.

The step is a real bash script run on real programs: the real CLI where the case is quick to
reach (nothing to judge against), a one-line Python program standing in for a gate that
finished with a given code (a real gate run takes minutes)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEP = ROOT / ".ci" / "speed_gate"
GATE_LINE = "bash .ci/speed_gate .venv/bin/ppsd calibrate regress --quick"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _step(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(STEP), *cmd], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def _exits(code: int) -> list[str]:
    return [sys.executable, "-c", f"import sys; print('gate ran'); sys.exit({code})"]


def test_ci_runs_the_gate_step_unconditionally_and_stops_on_its_failure():
    text = (ROOT / ".ci" / "run").read_text()
    lines = [ln.strip() for ln in text.splitlines()]
    assert "set -euo pipefail" in lines  # a failing step stops CI
    assert lines.count(GATE_LINE) == 1
    # not inside a conditional and not guarded by `||` (which would swallow its exit code)
    before = lines[: lines.index(GATE_LINE)]
    opened = sum(ln.startswith(("if ", "for ", "while ", "case ")) for ln in before)
    closed = sum(ln in ("fi", "done", "esac") or ln.startswith(("fi ", "done ")) for ln in before)
    assert opened == closed


@pytest.mark.parametrize(
    ("gate", "ci", "said"),
    [
        (0, 0, "speed gate passed"),
        (1, 1, "speed gate failed (exit 1)"),
        (2, 2, "speed gate failed (exit 2)"),
        (3, 0, "inconclusive (busy machine)"),
        (7, 7, "speed gate failed (exit 7)"),
    ],
)
def test_gate_exit_codes_become_cis_verdict(gate, ci, said):
    res = _step(*_exits(gate))
    assert "gate ran" in res.stdout  # the command was run, not skipped
    assert res.returncode == ci, res.stdout + res.stderr
    assert said in res.stdout + res.stderr


def test_a_machine_with_nothing_to_judge_against_fails_ci_not_skips_it(tmp_path):
    """The tiny preset has neither a baseline nor a tolerance committed anywhere: the gate must
    refuse in one line (exit 2) and the CI step must fail with it."""
    from calibration import cli

    assert not list(cli.BASELINES.glob(f"*__{cli.slug('preset:tiny(seed=0)')}*"))
    res = _step(
        sys.executable, "-m", "ppsd_sim.cli.main", "calibrate", "regress", "--preset", "tiny"
    )
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip().splitlines()
    assert err[0].startswith("ppsd: error: --mode: nothing to judge against"), res.stderr
    assert err[-1] == "ci: speed gate failed (exit 2)"
    assert "skipped" not in res.stdout + res.stderr


def test_the_step_refuses_to_run_without_a_gate_command():
    res = _step()
    assert res.returncode == 2 and "needs the gate command" in res.stderr
