"""Every command shown in the README (lines starting with "$ " in console blocks) and its
Python example run, and succeed, exactly as a user would type them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


#: each console block is a sequence (a later command may read what an earlier one wrote)
SEQUENCES = [
    cmds
    for block in _blocks("console")
    if (cmds := [ln[2:].strip() for ln in block.splitlines() if ln.startswith("$ ")])
]
COMMANDS = [c for seq in SEQUENCES for c in seq]


def test_readme_shows_commands_for_every_subcommand():
    shown = {c.split()[1] for c in COMMANDS if c.startswith("ppsd ")}
    assert {"sim", "run", "profile", "sweep", "plan", "report"} <= shown


@pytest.mark.parametrize("sequence", SEQUENCES, ids=[seq[0][:60] for seq in SEQUENCES])
def test_readme_commands_run_in_order(sequence, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for command in sequence:
        _run(command, tmp_path)


def _run(command: str, workdir: Path) -> None:
    argv = shlex.split(command)
    if argv[0] == "ppsd":
        argv = [sys.executable, "-m", "ppsd_sim.cli.main", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    res = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, f"{command}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    assert res.stdout.strip(), f"{command} printed nothing"


def test_readme_python_example_runs(capsys):
    (code,) = _blocks("python")
    exec(compile(code, "README.md", "exec"), {})  # the README's own example
    out = capsys.readouterr().out.split()
    speed, closed_form, break_even = (float(x) for x in out[:3])
    assert speed == pytest.approx(closed_form, rel=0.02)
    assert 0 < break_even < 1
