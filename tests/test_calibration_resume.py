"""``ppsd calibrate run`` keeps what it measured: each block of cells is saved as it is measured,
an interrupted run resumes when the same call comes again, and a folder measured with other
settings is refused by name."""

from __future__ import annotations

import json

import pytest

from calibration.loop import run_calibration
from calibration.measure import PROFILE_FILE, PROGRESS_FILE, Progress
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import read_record
from ppsd_sim.records.calibration_report import CalibrationReport

SETTINGS = {"model": "tiny", "tokens": 16, "repeats": 1, "transport": "pipe", "quick": True}


class Interrupt(Exception):
    """Stands for the user's Ctrl-C in the middle of a calibration."""


@pytest.mark.slow
def test_an_interrupted_calibration_resumes_where_it_stopped(tmp_path):
    out, spec = tmp_path / "cal", ModelSpec("tiny")
    calls: list[tuple[int, int]] = []

    def stop_in_second_block(done: int, total: int) -> None:
        calls.append((done, total))
        # 7 quick cells in groups of 4: warm-up 4 + 3 runs, block (1, 0) 4 runs, then (1, 1)
        if done == 12:
            raise Interrupt

    kw = {"quick": True, "tokens": 16, "repeats": 1}
    with pytest.raises(Interrupt):
        run_calibration(spec, out, on_progress=stop_in_second_block, **kw)
    lines = (out / PROGRESS_FILE).read_text().splitlines()
    assert len(lines) == 2  # the settings, then the one finished block of 4 cells
    assert len(json.loads(lines[1])["cells"]) == 4 and (out / PROFILE_FILE).is_file()

    with pytest.raises(ConfigError, match=r"--tokens: 16 there, 32 now") as err:
        run_calibration(spec, out, quick=True, tokens=32, repeats=1)
    assert err.value.field == "--out"
    assert len((out / PROGRESS_FILE).read_text().splitlines()) == 2  # refused: nothing touched

    calls.clear()
    cal = run_calibration(spec, out, on_progress=lambda d, t: calls.append((d, t)), **kw)
    assert cal.resumed == 4 and cal.profile_resumed
    # only the unfinished block ran again: its warm-up (3 cells) and its timed repeat (3)
    assert calls[0] == (5, 10) and calls[-1] == (10, 10) and len(calls) == 6
    rep = read_record(out / "calibration.json", CalibrationReport)
    assert len(rep.rows) == 7 and all(r.measured > 0 for r in rep.rows)
    assert rep.profile == cal.profile
    assert not (out / PROGRESS_FILE).exists() and not (out / PROFILE_FILE).exists()


def test_progress_drops_a_torn_last_line_and_keeps_the_rest(tmp_path):
    Progress.open(tmp_path, SETTINGS)
    path = tmp_path / PROGRESS_FILE
    block = {
        "rep": 1,
        "group": 0,
        "base_s": 0.5,
        "cells": [{"label": "AR", "time_s": 0.5, "trace": []}],
    }
    with path.open("a") as fh:
        fh.write(json.dumps(block) + "\n" + '{"rep": 1, "gro')  # the process died mid-write
    got = Progress.open(tmp_path, SETTINGS)
    assert got.saved == [block]
    assert path.read_text().endswith("}\n")  # the torn line is gone from the file too


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"repeats": 5}, "--repeats: 1 there, 5 now"),
        ({"quick": False}, "--quick: True there, False now"),
        ({"model": "cpu-bench"}, "the model (--preset): 'tiny' there, 'cpu-bench' now"),
    ],
)
def test_progress_of_other_settings_is_refused_naming_what_differs(tmp_path, change, named):
    Progress.open(tmp_path, SETTINGS)
    with pytest.raises(ConfigError, match="measured with other settings") as err:
        Progress.open(tmp_path, {**SETTINGS, **change})
    assert named in str(err.value)


def test_a_file_that_is_not_a_progress_file_is_refused(tmp_path):
    (tmp_path / PROGRESS_FILE).write_text('{"record": "RunRecord"}\n')
    with pytest.raises(ConfigError, match="not a calibration progress file"):
        Progress.open(tmp_path, SETTINGS)
