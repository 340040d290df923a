"""Device selection and the prepared GPU check, exercised on the CPU.

CI has no GPU, so the script that a GPU-lent task runs is dry-run here end to end on the tiny
preset: if it breaks, it breaks here and not in a task's 15 minutes of device time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppsd_real.device import resolve
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, RunRecord
from ppsd_sim.records.io import read_record

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.long
def test_gpu_check_script_dry_run_on_cpu_writes_valid_records(tmp_path):
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "PRESETS": "tiny",
        "TOKENS": "16",
        "REPEATS": "1",
        "PROFILE_REPEATS": "5",
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
    }
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    dest = tmp_path / "gpu_check"
    prof = read_record(dest / "tiny" / "profile.json", HardwareProfile)
    assert prof.provenance.device.startswith("cpu") and prof.provenance.dtype == "float32"
    assert len(prof.layer_decode) == 4 and all(t.median > 0 for t in prof.layer_decode)
    for alpha in ("0.6", "0.9"):
        for scheme in ("eesd", "ppsd"):
            rec = read_record(dest / "tiny" / f"alpha{alpha}" / f"{scheme}.json", RunRecord)
            assert rec.scheme.kind == scheme and rec.tokens == 16
            assert rec.acceptance is not None and rec.acceptance.alpha == float(alpha)
            assert rec.speedups["ar_1thread"] > 0
        table = (dest / "tiny" / f"alpha{alpha}.txt").read_text()
        assert "PPSD(k=2, E=2) [sequential]" in table and "EESD(E=2, γ=4)" in table
    assert "torch" in (dest / "device.txt").read_text()
    assert "tiny done" in (dest / "timeline.txt").read_text()


def test_device_and_dtype_are_resolved_or_refused_by_name():
    assert resolve("cpu") == ("cpu", "float32")
    assert resolve("cpu", "bfloat16") == ("cpu", "bfloat16")
    with pytest.raises(ConfigError, match=r"--device.*cpu, cuda or cuda:N"):
        resolve("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"--device.*CUDA is not available"):
            resolve("cuda:0")


def _ppsd(*args):
    return subprocess.run(
        [sys.executable, "-m", "ppsd_sim.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine with no GPU")
def test_cuda_on_a_machine_without_one_is_one_line_exit_2():
    for cmd in (["run", "--preset", "tiny"], ["profile", "--preset", "tiny", "--no-stages"]):
        res = _ppsd(*cmd, "--device", "cuda")
        assert res.returncode == 2, res.stderr[-1500:]
        assert (
            res.stderr.strip().splitlines() == [res.stderr.strip().splitlines()[-1]]
            and "--device" in res.stderr
        )


def test_bf16_on_cpu_runs_losslessly_and_is_recorded(tmp_path):
    res = _ppsd(
        "run",
        "--preset",
        "tiny",
        "--dtype",
        "bfloat16",
        "--backend",
        "sequential",
        "--tokens",
        "16",
        "--repeats",
        "1",
        "--records",
        str(tmp_path),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads((tmp_path / "ppsd.json").read_text())
    assert doc["provenance"]["dtype"] == "bfloat16"
    assert (tmp_path / "eesd.json").is_file()
