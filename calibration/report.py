"""The calibration report on disk: ``calibration.json`` (the versioned CalibrationReport record
that ``ppsd report`` reads), ``calibration.md`` with its predicted-vs-measured figure (the same
content ``ppsd report`` shows, from ``analysis.report_compare``) and the ``profile.json`` every
prediction came from: rendered in memory, then written all or none."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from analysis.report_compare import CALIBRATION_FIGURE, calibration_document
from analysis.report_write import report_files
from calibration.compare import Row
from ppsd_sim.records import HardwareProfile, check_writable, check_writable_dir, write_all
from ppsd_sim.records.calibration_report import CalibrationInfo, CalibrationReport
from ppsd_sim.records.io import dumps

JSON_NAME = "calibration.json"
MARKDOWN_NAME = "calibration.md"
PROFILE_NAME = "profile.json"


def build_record(
    rows: Iterable[Row],
    profile: HardwareProfile,
    info: Mapping[str, Any],
    findings: Iterable[str],
) -> CalibrationReport:
    """The record of one calibration (validated: a bad row or info field raises ConfigError)."""
    return CalibrationReport(CalibrationInfo.from_dict(info), tuple(rows), tuple(findings), profile)


def report_outputs(out: str | os.PathLike[str], rep: CalibrationReport) -> dict[str, Path]:
    """The files ``write_report`` writes under ``out``, by name."""
    out = Path(out)
    paths = {
        "json": out / JSON_NAME,
        "markdown": out / MARKDOWN_NAME,
        "plot": out / f"{CALIBRATION_FIGURE}.png",
    }
    if rep.profile is not None:
        paths["profile"] = out / PROFILE_NAME
    return paths


def check_outputs(out: str | os.PathLike[str], field: str = "--out") -> Path:
    """Refuse an output folder the report cannot be written into (call it before measuring:
    a refusal after the measurements would lose them)."""
    folder = check_writable_dir(out, field)
    for name in (JSON_NAME, MARKDOWN_NAME, PROFILE_NAME, f"{CALIBRATION_FIGURE}.png"):
        check_writable(folder / name, field)
    return folder


def write_report(out: str | os.PathLike[str], rep: CalibrationReport) -> dict[str, Path]:
    """Render everything in memory, then write all the files or none."""
    check_outputs(out)
    paths = report_outputs(out, rep)
    files: dict[str | os.PathLike[str], str | bytes] = dict(
        report_files(calibration_document(rep), out, markdown=MARKDOWN_NAME, html=None, fig_dir=".")
    )
    files[paths["json"]] = dumps(rep)
    if rep.profile is not None:
        files[paths["profile"]] = dumps(rep.profile)
    write_all(files)
    return paths
