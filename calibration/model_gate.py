"""The model-relative speed gate: measured speedup against the model's prediction, no baseline.

The baseline gate (``gate.py``) needs speedups recorded on the same hardware class. This gate
needs none of this machine: in the same run it profiles the gate's model, predicts each cell's
speedup from that profile with the simulator, measures the cells, and judges

    ratio = measured speedup ÷ predicted speedup

against a committed tolerance. A slowdown in code the profile also measures moves the
prediction with the run and cannot be seen; what the gate watches is what the profile does not
take from this run.

**What the profile absorbs, and what it must not.** The quick profile times, in this run, the
layers, heads and embedding inside the stage processes, the stages' contention, the KV crop and
the transport's one-way hop. It also measures ``tick``, the per-step control cost (a stage's
run time minus its layers, heads and blocked waits, in real runs). That is exactly where a
control-path slowdown lands (the test hook ``PPSD_TEST_TICK_DELAY_S`` spins inside every stage
step and every EESD draft step, outside the layers): a profile tick taken from this run would
rise by the same delay and the prediction would follow the slowed code. So the prediction uses
the control cost of unchanged code, taken from the tolerance record, scaled by how fast this
machine runs plain Python (``python_speed``: a fixed interpreter workload, no project code):

    tick_here = tick_recorded × python_speed(here) ÷ python_speed(recorded)

The tick this run measured is printed beside it, as a diagnosis (it rises with a control-path
slowdown), never used.

**Tolerance.** ``ppsd calibrate tolerance`` runs N independent gate readings of unchanged code
(profile + measure each, fresh stage processes) and records, per cell, the N ratios and the
machine they came from. For a cell with run ratios r₁…r_N:

    m         = median(rᵢ)                      (the model's own error there: 1 − m)
    sd_run    = SD(rᵢ) ÷ m at its upper 90% bound (``gate.between_sd``; the spread of one
                reading, profile noise included)
    reference = m on the hardware class that recorded it, 1 elsewhere (the model's claim)
    allowance = z · sd_run + (0 there, |ln m| elsewhere: the model's error, either sign)
    threshold = max(floor, 1 − exp(−allowance))  (the allowed drop of ratio ÷ reference)

judged, like the baseline gate, on the log scale. Decisions (confirm before failing, a busy
machine is inconclusive) are ``gate.decide_runs``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import timeit
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration import gate
from calibration.grid import Cell
from calibration.predict import predict
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, SchemeConfig, Timing, atomic_write_text, validate
from ppsd_sim.records import load_document as _load_document
from ppsd_sim.records.schema import open_record, tag

RECORD = "ModelGateTolerance"
SIM_TOKENS = 20_000  # as calibration predicts: the steady state of the replayed trace
MIN_RUNS = 3  # two runs bound their spread only within ×8 (as for a baseline)

SEES = (
    "a slowdown in the pipeline's control path (controller bookkeeping, the drafter, inbox "
    "polls, each step's message handling, EESD's draft loop), in the transport's per-message "
    "cost on a stage's critical path (encode, send, decode), or in the flush protocol after a "
    "rejection (verdict, flush message, abandoned work)"
)
BLIND = (
    "a slowdown that the profile measures in this run too, so it moves the prediction and the "
    "run alike: slower layers, heads or embedding, a slower KV crop, more contention between "
    "stages, and the share of a slower hop that the prediction charges after each rejection"
)


def _control_like_work() -> int:
    """A fixed slice of interpreter work shaped like a stage's control path: tuple messages,
    dict bookkeeping, list appends, small calls. No project code: a slowdown there must not
    move this reference."""
    seen: dict[int, tuple[Any, ...]] = {}
    out: list[int] = []
    for i in range(256):
        msg = ("fwd", i >> 3, i, [i], None)
        seen[i] = msg
        if msg[0] == "fwd" and (i - 1) in seen:
            out.append(len(msg[3]) + msg[2])
    return sum(out)


def python_speed(repeat: int = 200, number: int = 10) -> float:
    """Seconds per call of a fixed pure-Python workload: the least disturbed of ``repeat``
    short timings (the minimum, as ``timeit`` advises: noise only ever adds time; many short
    slices, so that on a busy machine some run undisturbed). About 0.1 s."""
    times = timeit.Timer(_control_like_work).repeat(repeat=repeat, number=number)
    return min(times) / number


@dataclass(frozen=True)
class ControlCost:
    """The per-step control cost of unchanged code, with the Python speed it was measured at."""

    tick_s: float
    python_s: float

    def scale(self, python_here_s: float) -> float:
        return python_here_s / self.python_s

    def here(self, python_here_s: float) -> float:
        return self.tick_s * self.scale(python_here_s)


@dataclass(frozen=True)
class CellReading:
    """One cell of one gate reading: its repeat speedups over AR (one fixed acceptance
    sequence) and that sequence, so the prediction replays what the run saw."""

    cell: Cell
    speedups: tuple[float, ...]
    trace: tuple[int, ...]

    @property
    def measured(self) -> float:
        return statistics.median(self.speedups)


@dataclass(frozen=True)
class Reading:
    """What the model-relative gate needs from one measurement: the profile taken in it, this
    machine's Python speed, and the measured cells."""

    profile: HardwareProfile
    python_s: float
    cells: tuple[CellReading, ...]


def predicted(profile: HardwareProfile, reading: CellReading, tick_s: float) -> float:
    """The simulator's speedup for a measured cell from ``profile`` with its control cost
    replaced by ``tick_s`` (the record's, not the one this run measured; see the module
    docstring), replaying the acceptance sequence the run saw."""
    prof = dataclasses.replace(profile, tick=Timing(tick_s))
    return predict(prof, reading.cell, tokens=SIM_TOKENS, trace=reading.trace or None).speedup


def ratios(reading: Reading, control: ControlCost) -> dict[str, tuple[float, float]]:
    """Per cell label: (measured, predicted) speedup."""
    tick = control.here(reading.python_s)
    return {c.cell.label: (c.measured, predicted(reading.profile, c, tick)) for c in reading.cells}


@dataclass(frozen=True)
class ToleranceCell:
    label: str
    scheme: SchemeConfig
    alpha: float | None
    ratios: tuple[float, ...]  # measured ÷ predicted, one per independent reading

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def between_runs(self) -> float:
        return gate.between_sd(self.ratios)

    def reference(self, same_class: bool) -> float:
        return self.median if same_class else 1.0

    def threshold(self, same_class: bool, z: float, floor: float) -> float:
        allowance = z * self.between_runs + (0.0 if same_class else abs(math.log(self.median)))
        return max(floor, 1.0 - math.exp(-allowance))


@dataclass(frozen=True)
class Tolerance:
    hardware: str  # the hardware class that recorded it
    model: str
    tokens: int
    repeats: int  # timed repeats per cell in each reading
    transport: str
    control: ControlCost
    cells: tuple[ToleranceCell, ...]
    created: str
    provisional: bool  # recorded on a busy machine: good enough to run, not to trust
    provenance: dict[str, Any]
    z: float = gate.Z
    floor: float = gate.FLOOR

    def allowed_drop(self, cell: ToleranceCell, same_class: bool) -> float:
        """The drop of measured ÷ predicted this record allows ``cell`` (on the class that
        recorded it, or elsewhere), with the record's own z and floor."""
        return cell.threshold(same_class, self.z, self.floor)

    def to_dict(self) -> dict[str, Any]:
        here = {}
        for same in (True, False):
            key = "this_class" if same else "other_classes"
            here[key] = {c.label: round(self.allowed_drop(c, same), 5) for c in self.cells}
        return {
            **tag(RECORD),
            "hardware": self.hardware,
            "model": self.model,
            "tokens": self.tokens,
            "repeats": self.repeats,
            "transport": self.transport,
            "created": self.created,
            "provisional": self.provisional,
            "z": self.z,
            "floor": self.floor,
            "control": {"tick_s": self.control.tick_s, "python_s": self.control.python_s},
            "cells": [
                {
                    **gate.cell_identity_dict(c),
                    "ratios": list(c.ratios),
                    "median_ratio": c.median,
                    "sd_run": c.between_runs,
                }
                for c in self.cells
            ],
            "allowed_drop": here,  # derived: recomputed from the ratios when read
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Tolerance:
        """A record file (``where`` empty) must carry its tag; errors name the field."""

        def f(name: str) -> str:
            return validate.join(where, name)

        d = open_record(
            data,
            RECORD,
            where,
            (
                "hardware",
                "model",
                "tokens",
                "repeats",
                "transport",
                "created",
                "provisional",
                "z",
                "floor",
                "control",
                "cells",
                "provenance",
            ),
            ("hardware", "model", "tokens", "repeats", "transport", "control", "cells"),
            derived=("allowed_drop",),
        )
        ctl = validate.mapping(f("control"), d["control"], ("tick_s", "python_s"))
        control = ControlCost(
            validate.number(f("control.tick_s"), ctl.get("tick_s"), lo=0.0),
            validate.number(f("control.python_s"), ctl.get("python_s"), lo=0.0, lo_open=True),
        )
        cells = []
        for i, c in enumerate(validate.sequence(f("cells"), d["cells"], min_len=1)):
            w = f(f"cells[{i}]")
            c = validate.mapping(
                w,
                c,
                ("label", "scheme", "alpha", "ratios", "median_ratio", "sd_run"),
                ("label", "scheme", "ratios"),
            )
            rs = gate.positive_numbers(f"{w}.ratios", c["ratios"], min_len=MIN_RUNS)
            cells.append(ToleranceCell(*gate.cell_identity(c, w), rs))
        return cls(
            hardware=str(d["hardware"]),
            model=str(d["model"]),
            tokens=validate.integer(f("tokens"), d["tokens"], lo=1),
            repeats=validate.integer(f("repeats"), d["repeats"], lo=1),
            transport=validate.choice(f("transport"), d["transport"], ("pipe", "gloo")),
            control=control,
            cells=tuple(cells),
            created=str(d.get("created", "")),
            provisional=validate.boolean(f("provisional"), d.get("provisional", False)),
            provenance=dict(d.get("provenance") or {}),
            z=validate.number(f("z"), d.get("z", gate.Z), lo=0.0, lo_open=True),
            floor=validate.number(
                f("floor"), d.get("floor", gate.FLOOR), lo=0.0, hi=1.0, hi_open=True
            ),
        )


def load_tolerance(path: str | Path, field: str = "--tolerance") -> Tolerance:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            field, f"no model-gate tolerance at {p}: record one with `ppsd calibrate tolerance`"
        )
    try:
        return Tolerance.from_dict(_load_document(p, field))
    except ConfigError as err:
        raise ConfigError(field, f"{p}: {err}") from None


def save_tolerance(path: str | Path, tolerance: Tolerance) -> Path:
    text = json.dumps(tolerance.to_dict(), indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


def build_tolerance(
    readings: Sequence[Reading],
    *,
    hardware: str,
    model: str,
    tokens: int,
    repeats: int,
    transport: str,
    created: str,
    provisional: bool,
    provenance: dict[str, Any],
) -> Tolerance:
    """The record from N readings of unchanged code. The control cost is the median of their
    profiles' ticks (unchanged code: here the measured tick is the one to keep) at their median
    Python speed; every reading's ratio is then computed by the rule the gate applies later
    (``ratios`` with that control cost), so the recorded spread is the gate's own."""
    validate.integer("--runs", len(readings), lo=MIN_RUNS)
    control = ControlCost(
        statistics.median(r.profile.tick.median for r in readings),
        statistics.median(r.python_s for r in readings),
    )
    per = [ratios(r, control) for r in readings]
    cells = []
    for c in readings[0].cells:
        rs = tuple(p[c.cell.label][0] / p[c.cell.label][1] for p in per)
        cells.append(ToleranceCell(c.cell.label, c.cell.scheme, c.cell.alpha, rs))
    return Tolerance(
        hardware,
        model,
        tokens,
        repeats,
        transport,
        control,
        tuple(cells),
        created,
        provisional,
        provenance,
    )


@dataclass(frozen=True)
class ModelVerdict:
    label: str
    measured: float
    predicted: float
    reference: float  # the ratio unchanged code gives (m on the recording class, else 1)
    threshold: float
    ok: bool

    @property
    def ratio(self) -> float:
        return self.measured / self.predicted

    @property
    def change(self) -> float:
        return self.ratio / self.reference - 1.0

    def describe(self) -> str:
        return (
            f"{'ok  ' if self.ok else 'FAIL'} {self.label}: measured {self.measured:.3f} ÷ "
            f"predicted {self.predicted:.3f} = {self.ratio:.3f} vs {self.reference:.3f} "
            f"({self.change:+.1%}; allowed drop {self.threshold:.1%})"
        )


def judge(
    tolerance: Tolerance, reading: Reading, hardware: str, floor: float | None = None
) -> list[ModelVerdict]:
    """One verdict per tolerance cell; a cell missing from the reading is an error, not a pass."""
    fl = tolerance.floor if floor is None else floor
    validate.number("--floor", fl, lo=0.0, hi=1.0, hi_open=True)
    same = hardware == tolerance.hardware
    got = ratios(reading, tolerance.control)
    out = []
    for c in tolerance.cells:
        if c.label not in got:
            raise ConfigError("reading", f"no measurement for tolerance cell {c.label!r}")
        meas, pred = got[c.label]
        thr = c.threshold(same, tolerance.z, fl)
        ref = c.reference(same)
        out.append(ModelVerdict(c.label, meas, pred, ref, thr, meas / pred / ref - 1.0 >= -thr))
    return out


def control_note(tolerance: Tolerance, reading: Reading) -> str:
    """The control cost the prediction used, and the one this run's profile measured."""
    c = tolerance.control
    used = c.here(reading.python_s)
    live = reading.profile.tick.median
    note = (
        f"control cost per step: {used * 1e6:.0f} µs used ({c.tick_s * 1e6:.0f} µs recorded on "
        f"{tolerance.hardware} × {c.scale(reading.python_s):.2f} for this machine's Python "
        f"speed); this run's profile measured {live * 1e6:.0f} µs"
    )
    if live > 2.0 * used + 50e-6:
        note += " — the per-step control path looks slower than when the tolerance was recorded"
    return note
