"""Read a folder of records for a report, tolerating bad files.

A report must never crash half-written because one file is broken: every file is parsed and
validated on its own, and a file that cannot be used becomes a ``Skipped`` entry naming the
file and the reason, which the report prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.curves import AcceptanceCurve
from analysis.load_plan_record import LoadPlan
from analysis.plan_record import Plan
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_record import AcceptanceRecord
from ppsd_sim.records.calibration_report import CalibrationReport
from ppsd_sim.records.io import load_document
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.run_record import RunRecord
from ppsd_sim.records.span import Span

SUFFIXES = (".json", ".yaml", ".yml")


@dataclass(frozen=True)
class Timeline:
    """A recorded stage timeline (Chrome/Perfetto trace) and where it came from."""

    name: str
    spans: tuple[Span, ...]
    title: str
    origin: str  # measured | simulated


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass
class RecordSet:
    """Everything usable in a folder, each item with the file name it came from."""

    runs: list[tuple[str, RunRecord]] = field(default_factory=list)
    profiles: list[tuple[str, HardwareProfile]] = field(default_factory=list)
    plans: list[tuple[str, Plan]] = field(default_factory=list)
    load_plans: list[tuple[str, LoadPlan]] = field(default_factory=list)
    calibrations: list[tuple[str, CalibrationReport]] = field(default_factory=list)
    curves: list[tuple[str, AcceptanceCurve]] = field(default_factory=list)
    acceptance: list[tuple[str, AcceptanceRecord]] = field(default_factory=list)
    timelines: list[Timeline] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files: int = 0


def timeline_from_trace(data: dict[str, Any], name: str) -> Timeline:
    """Chrome trace JSON ('X' events, µs, one thread per stage) → spans in seconds. A trace
    counts as simulated when its process name says so (``ppsd sim`` traces are titled
    "ppsd: <scheme>" by default, so ``origin`` metadata or 'sim' in the title decides)."""
    events = data.get("traceEvents")
    if not isinstance(events, list):
        raise ConfigError("traceEvents", "must be a list of trace events")
    title, spans = "", []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise ConfigError(f"traceEvents[{i}]", "must be an object")
        if ev.get("ph") == "M" and ev.get("name") == "process_name":
            title = str((ev.get("args") or {}).get("name", ""))
        if ev.get("ph") != "X":
            continue
        try:
            start = float(ev["ts"]) * 1e-6
            spans.append(
                Span(
                    int(ev.get("tid", 0)),
                    start,
                    start + float(ev["dur"]) * 1e-6,
                    str(ev.get("name", "")),
                    str(ev.get("cat", "compute")),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"traceEvents[{i}]", "an 'X' event needs numeric ts and dur"
            ) from None
    if not spans:
        raise ConfigError("traceEvents", "holds no complete ('X') events")
    other = data.get("otherData")
    meta = other if isinstance(other, dict) else {}
    origin = str(meta.get("origin", ""))
    if origin not in ("measured", "simulated"):
        origin = "simulated" if "sim" in title.lower() else "measured"
    return Timeline(name, tuple(spans), title or name, origin)


def _add(rs: RecordSet, name: str, data: Any) -> None:
    if isinstance(data, list):
        if not data:
            raise ConfigError("", "empty list")
        for i, item in enumerate(data):
            _add(rs, f"{name}[{i}]", item)
        return
    if not isinstance(data, dict):
        raise ConfigError("", f"expected a JSON object, got {type(data).__name__}")
    if "traceEvents" in data:
        rs.timelines.append(timeline_from_trace(data, name))
        return
    kind = data.get("record")
    if kind == "RunRecord":
        rs.runs.append((name, RunRecord.from_dict(data)))
    elif kind == "HardwareProfile":
        rs.profiles.append((name, HardwareProfile.from_dict(data)))
    elif kind == "CapacityPlan":
        rs.plans.append((name, Plan.from_dict(data)))
    elif kind == "LoadPlan":
        rs.load_plans.append((name, LoadPlan.from_dict(data)))
    elif kind == "CalibrationReport":
        rs.calibrations.append((name, CalibrationReport.from_dict(data)))
    elif kind == "AcceptanceCurve":
        rs.curves.append((name, AcceptanceCurve.from_dict(data)))
    elif kind == "AcceptanceRecord":
        rs.acceptance.append((name, AcceptanceRecord.from_dict(data)))
    else:
        raise ConfigError("record", f"unrecognised record type {kind!r}")


def read_folder(folder: str | Path) -> RecordSet:
    """Load every JSON/YAML record under ``folder`` (recursively, sorted by path)."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError("records", f"not a folder: {root}")
    rs = RecordSet()
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES):
        if not path.is_file():
            continue
        rs.files += 1
        name = str(path.relative_to(root))
        one = RecordSet()  # all of a file or none of it
        try:
            _add(one, name, load_document(path, name))
            for attr in (
                "runs",
                "profiles",
                "plans",
                "load_plans",
                "calibrations",
                "curves",
                "acceptance",
                "timelines",
            ):
                getattr(rs, attr).extend(getattr(one, attr))
        except ConfigError as err:
            rs.skipped.append(Skipped(name, str(err)))
        except (RecursionError, MemoryError) as err:  # pathological files
            rs.skipped.append(Skipped(name, f"cannot be read: {type(err).__name__}"))
    return rs
