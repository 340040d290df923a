"""Bad input is refused with a ConfigError naming the field; via the CLI: one line, exit 2."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppsd_real.backends.distributed import PipelineSpec
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_real.runner import check_scheme, load, run_local
from ppsd_sim.cli.main import build_parser
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import RunRecord, SchemeConfig, read_record


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: check_scheme(SchemeConfig.eesd(4, 3), 4), "scheme.exit_layer"),
        (lambda: check_scheme(SchemeConfig.ppsd((1, 3)), 4), "scheme.stage_boundaries"),
        # simulator-only baselines: without the refusal PP-AR would run as PPSD, mislabelled
        (lambda: check_scheme(SchemeConfig.pp_ar((2, 4)), 4), "scheme.kind"),
        (lambda: check_scheme(SchemeConfig.tp_ar(2), 4), "scheme.kind"),
        (lambda: DrafterSpec("oracle", 1.5), "drafter.alpha"),
        (lambda: DrafterSpec("oracle", -0.1), "drafter.alpha"),
        (lambda: ModelSpec(preset=None, path="/nonexistent/model"), "model.path"),
        (lambda: ModelSpec("no-such-preset"), "model.preset"),
        (
            lambda: PipelineSpec(ModelSpec("tiny"), SchemeConfig("pp_ar", stage_boundaries=(2, 4))),
            "scheme.kind",
        ),
        (
            lambda: run_local(
                load(ModelSpec("tiny")),
                SchemeConfig("tp_ar", tp_degree=2),
                DrafterSpec(),
                [1],
                2,
                None,
            ),
            "scheme.kind",
        ),
    ],
)
def test_refused_with_field(make, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.field == field


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--preset", "no-such-preset"], "model.preset"),
        (["--model-dir", "/nonexistent/model"], "model.path"),
        (["--preset", "tiny", "--alpha", "2"], "drafter.alpha"),
        (["--preset", "tiny", "--exit", "4"], "exit"),
    ],
)
def test_cli_refuses_in_one_line(argv: list[str], needle: str) -> None:
    cmd = [sys.executable, "-m", "ppsd_sim.cli.main", "run", *argv, "--tokens", "4"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr


def _ppsd(*argv: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ppsd_sim.cli.main", *argv]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _read_only_folder(tmp_path: Path) -> Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root writes anywhere: a folder the kernel keeps read-only
        ro = Path("/proc/sys")
        if os.access(ro, os.W_OK):
            pytest.skip("no read-only folder to try")
    return ro


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--repeats", "0"], "--repeats: must be >= 1"),
        (["run", "--tokens", "1000000000000"], "--tokens: must be <= 1000000"),
        (["run", "--tokens", "0"], "--tokens: must be >= 1"),
        (["run", "--preset", "tiny", "--tokens", "5000"], "max_position_embeddings = 4096"),
        (["run", "--preset", "tiny", "--drafter", "early-exit", "--alpha", "0.5"], "--alpha"),
        (["run", "--preset", "tiny", "--model-dir", "."], "give --preset or --model-dir"),
        (["profile", "--threads", "1000"], "--threads: must be an integer in 1.."),
        (["profile", "--threads", "0"], "--threads"),
        (["profile", "--repeats", "2"], "--repeats: must be >= 5"),
    ],
)
def test_run_and_profile_refuse_bad_flags_in_one_line(argv: list[str], needle: str) -> None:
    p = _ppsd(*argv)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("command", "flag", "where"),
    [
        ("run", "--output", "folder"),
        ("run", "--output", "under_a_file"),
        ("run", "--output", "read_only"),
        ("run", "--records", "a_file"),
        ("profile", "--output", "read_only"),
    ],
)
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, command, flag, where):
    (tmp_path / "file.txt").write_text("x")
    target = {
        "folder": tmp_path,
        "a_file": tmp_path / "file.txt",
        "under_a_file": tmp_path / "file.txt" / "out.json",
        "read_only": _read_only_folder(tmp_path) / "out.json",
    }[where]
    t0 = time.monotonic()
    p = _ppsd(command, "--preset", "tiny", flag, str(target))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ppsd: error: {flag}"), p.stderr
    assert time.monotonic() - t0 < 30  # refused up front, not after measuring
    assert (tmp_path / "file.txt").read_text() == "x"


def test_profile_never_silently_replaces_the_default_output(tmp_path):
    (tmp_path / "profile.json").write_text("an earlier profile")
    p = _ppsd("profile", "--preset", "tiny", cwd=tmp_path)
    assert p.returncode == 2 and "--output" in p.stderr and "already exists" in p.stderr
    assert (tmp_path / "profile.json").read_text() == "an earlier profile"


@pytest.mark.slow
def test_run_scheme_ar_writes_the_ar_record_and_prints_ar_once(tmp_path):
    out = tmp_path / "a.json"
    p = _ppsd(
        "run",
        "--preset",
        "tiny",
        "--scheme",
        "ar",
        "--tokens",
        "8",
        "--repeats",
        "1",
        "--output",
        str(out),
    )
    assert p.returncode == 0, p.stderr
    rec = read_record(out, RunRecord)
    assert rec.scheme.kind == "ar" and rec.tokens == 8 and rec.origin == "measured"
    assert rec.speedups["ar_1thread"] == 1.0 and "ar_all_cores" in rec.speedups
    assert sum(line.startswith("AR (1 thread)") for line in p.stdout.splitlines()) == 1
    cores = os.cpu_count()
    assert f"AR ({cores} threads: all cores)" in p.stdout
    assert f"vs AR {cores} threads" in p.stdout


@pytest.mark.parametrize("command", ["run", "profile"])
def test_help_explains_every_option_and_shows_defaults(command: str) -> None:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [a for a in sub.choices[command]._actions if a.dest != "help"]
    assert options
    for a in options:
        assert a.help and len(a.help) > 15, a.option_strings
        if not isinstance(a, argparse._StoreTrueAction):
            assert "default" in a.help, (a.option_strings, a.help)
