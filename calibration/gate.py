"""The CI regression gate on measured speedup.

A baseline is a versioned JSON file per hardware class and model: for a small fixed set of
cells, the speedups measured over repeats. A fresh measurement fails the gate when a cell's
median speedup falls below the baseline's by more than a threshold derived from the spread of
both sets of repeats (not a guess):

    sd(x)     = 1.4826 · MAD(x) / median(x)                    (relative spread of one sample,
                                                               robust to outliers)
    se(x)     = 1.2533 · sd(x) / √n                            (standard error of a median)
    se_fresh  = 1.2533 · max(sd(fresh), sd(baseline)) / √n_fresh
    sd_run    = sample SD of the baseline's per-run medians / their median, taken at its
                upper 90% confidence bound: × √((r − 1) / χ²₀.₁₀(r − 1)) for r runs (five runs
                cannot pin a spread down, and an under-stated spread makes a flaky gate)
    spread    = z · √(se(baseline)² + se(fresh)² + sd_run²)         (z = 3; relative spreads,
                                                               i.e. SDs of log speedup)
    threshold = max(floor, 1 − exp(−spread))                  (the allowed drop, a fraction)

The comparison is made on the log of the speedup ratio, where the noise of a ratio is additive:
a wide spread allows a large drop but never one of 100% or more: with a spread of 1.5 the gate
still fails a 5× slowdown (allowed drop 78 %), where on a linear scale it would pass anything.

Speedups are ratios measured side by side with AR, so slow drift of the machine cancels within
a run. Between runs (fresh processes, minutes apart) the same ratio moves more than the repeats
of one run show (BENCHMARKS.md), so a baseline is recorded as several independent runs and their
spread, ``sd_run``, joins the threshold. Three fresh repeats cannot estimate their own spread
(their MAD is often near 0), so the fresh run is credited at least the baseline's per-sample
spread, learnt from many repeats. The floor (5%; 10% for the quick CI variant) is a last guard.

A failing run is measured again before the gate fails (``decide``): a drop must reproduce.
A speedup that needs two cores cannot be judged while other processes hold one, so when the
confirming run saw a busy machine (``machine_load``) the verdict is "inconclusive", not "fail".
``decide_runs`` holds that rule for every gate: where a baseline exists the model-relative gate
(``model_gate.py``, no baseline needed) judges the same measurement, and a drop in either
counts.
"""

from __future__ import annotations

import math
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ppsd_real.machine_load import BUSY, MachineLoad
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig, atomic_write_text, load_document, validate
from ppsd_sim.records.schema import open_record, tag

Z, FLOOR, QUICK_FLOOR = 3.0, 0.05, 0.10


def hardware_class() -> str:
    """Machines that should give comparable speedups: architecture, core count and CPU model
    (family/model numbers too, since a hypervisor may show only a generic name)."""
    import os
    import re

    name, family, model = "", "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and not name:
                name = value
            elif key == "cpu family" and not family:
                family = value
            elif key == "model" and not model:
                model = value
    except OSError:
        name = platform.processor()
    cpu = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    ids = f"-{family}-{model}" if family and model else ""
    return f"{platform.machine()}-{os.cpu_count()}core" + (f"-{cpu}{ids}" if cpu else "")


def rel_sd(samples: list[float]) -> float:
    """Robust relative spread of one sample (MAD scaled to a normal SD, over the median)."""
    med = statistics.median(samples)
    mad = statistics.median(abs(x - med) for x in samples)
    return 1.4826 * mad / med if med > 0 else math.inf


def rel_se(samples: list[float], spread: float | None = None) -> float:
    """Relative standard error of the median of ``samples`` (with ``spread``: at least that
    per-sample spread)."""
    sd = rel_sd(samples) if spread is None else max(rel_sd(samples), spread)
    return 1.2533 * sd / math.sqrt(len(samples))


def between_sd(medians: tuple[float, ...], upper: float | None = 0.90) -> float:
    """Relative spread between independent runs (0 with fewer than two runs); with ``upper``
    its one-sided upper confidence bound at that level (chi-square on r − 1 degrees of freedom)."""
    if len(medians) < 2:
        return 0.0
    sd = statistics.stdev(medians) / statistics.median(medians)
    if upper is None:
        return sd
    from scipy.stats import chi2

    dof = len(medians) - 1
    return sd * math.sqrt(dof / float(chi2.ppf(1.0 - upper, dof)))


def threshold(
    base: list[float],
    fresh: list[float],
    z: float = Z,
    floor: float = FLOOR,
    between: float = 0.0,
) -> float:
    """The allowed drop of the median speedup, as a fraction (see the module docstring)."""
    se_f = rel_se(fresh, spread=rel_sd(base))
    spread = z * math.sqrt(rel_se(base) ** 2 + se_f**2 + between**2)
    return max(floor, 1.0 - math.exp(-spread))


@dataclass(frozen=True)
class GateCell:
    label: str
    scheme: SchemeConfig
    alpha: float | None
    speedups: tuple[float, ...]
    run_medians: tuple[float, ...] = ()  # one per independent run of the baseline

    @property
    def median(self) -> float:
        return statistics.median(self.speedups)

    @property
    def between_runs(self) -> float:
        return between_sd(self.run_medians)


class RecordedCell(Protocol):
    """What every recorded gate cell (a baseline's, a tolerance's) is named by."""

    @property
    def label(self) -> str: ...
    @property
    def scheme(self) -> SchemeConfig: ...
    @property
    def alpha(self) -> float | None: ...


def cell_identity_dict(c: RecordedCell) -> dict[str, Any]:
    """A recorded cell's label, scheme and α as its record writes them."""
    return {"label": c.label, "scheme": c.scheme.to_dict(), "alpha": c.alpha}


def cell_identity(c: dict[str, Any], where: str) -> tuple[str, SchemeConfig, float | None]:
    """A recorded cell's label, scheme and α read back (errors name the field under
    ``where``): the reading of ``cell_identity_dict``."""
    alpha = c.get("alpha")
    return (
        str(c["label"]),
        SchemeConfig.from_dict(c["scheme"], f"{where}.scheme"),
        None if alpha is None else validate.probability(f"{where}.alpha", alpha),
    )


def positive_numbers(field: str, value: Any, *, min_len: int = 0) -> tuple[float, ...]:
    """A recorded list of numbers > 0 (speedups, run medians, ratios), each named on error."""
    return tuple(
        validate.number(f"{field}[{j}]", x, lo=0.0, lo_open=True)
        for j, x in enumerate(validate.sequence(field, value, min_len=min_len))
    )


@dataclass(frozen=True)
class Baseline:
    hardware: str
    model: str
    tokens: int
    cells: tuple[GateCell, ...]
    created: str
    provenance: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            **tag("SpeedBaseline"),
            "hardware": self.hardware,
            "model": self.model,
            "tokens": self.tokens,
            "created": self.created,
            "provenance": self.provenance,
            "cells": [
                {
                    **cell_identity_dict(c),
                    "speedups": list(c.speedups),
                    "run_medians": list(c.run_medians),
                    "median": c.median,
                }
                for c in self.cells
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Baseline:
        """A record file (``where`` empty) must carry its tag; errors name the field."""
        d = open_record(
            data,
            "SpeedBaseline",
            where,
            ("hardware", "model", "tokens", "created", "provenance", "cells"),
            ("hardware", "model", "tokens", "cells"),
        )
        cells = []
        for i, c in enumerate(
            validate.sequence(validate.join(where, "cells"), d["cells"], min_len=1)
        ):
            w = validate.join(where, f"cells[{i}]")
            c = validate.mapping(
                w,
                c,
                ("label", "scheme", "alpha", "speedups", "run_medians", "median"),
                ("label", "scheme", "speedups"),
            )
            sp = positive_numbers(f"{w}.speedups", c["speedups"], min_len=2)
            runs = positive_numbers(f"{w}.run_medians", c.get("run_medians", []))
            cells.append(GateCell(*cell_identity(c, w), sp, runs))
        return cls(
            str(d["hardware"]),
            str(d["model"]),
            validate.integer(validate.join(where, "tokens"), d["tokens"], lo=1),
            tuple(cells),
            str(d.get("created", "")),
            dict(d.get("provenance") or {}),
        )


def load_baseline(path: str | Path) -> Baseline:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            "--baseline", f"no baseline at {p}: record one with `ppsd calibrate baseline`"
        )
    return Baseline.from_dict(load_document(p, "--baseline"))


def save_baseline(path: str | Path, baseline: Baseline) -> Path:
    import json

    return atomic_write_text(path, json.dumps(baseline.to_dict(), indent=1, allow_nan=False) + "\n")


@dataclass(frozen=True)
class Verdict:
    label: str
    baseline: float
    fresh: float
    change: float  # fresh / baseline − 1
    threshold: float
    ok: bool

    def describe(self) -> str:
        return (
            f"{'ok  ' if self.ok else 'FAIL'} {self.label}: speedup {self.fresh:.3f} vs baseline "
            f"{self.baseline:.3f} ({self.change:+.1%}; allowed drop {self.threshold:.1%})"
        )


class Judged(Protocol):
    """One cell's verdict in either gate (``Verdict`` here, ``model_gate.ModelVerdict``)."""

    @property
    def label(self) -> str: ...

    @property
    def ok(self) -> bool: ...

    def describe(self) -> str: ...


def judge(baseline: Baseline, fresh: dict[str, list[float]], floor: float = FLOOR) -> list[Verdict]:
    """One verdict per baseline cell; a cell missing from ``fresh`` is an error, not a pass."""
    validate.number("--floor", floor, lo=0.0, hi=1.0, hi_open=True)
    out = []
    for c in baseline.cells:
        if c.label not in fresh:
            raise ConfigError("fresh", f"no fresh measurement for baseline cell {c.label!r}")
        f = fresh[c.label]
        thr = threshold(list(c.speedups), f, floor=floor, between=c.between_runs)
        change = statistics.median(f) / c.median - 1.0
        out.append(Verdict(c.label, c.median, statistics.median(f), change, thr, change >= -thr))
    return out


@dataclass(frozen=True)
class GateRun:
    """One measurement judged by every gate that ran: ``sections`` maps a gate's name to its
    verdicts (one gate: one section)."""

    sections: dict[str, Sequence[Judged]]
    load: MachineLoad | None
    notes: tuple[str, ...] = ()  # what a gate wants said about this run (printed with it)

    @property
    def verdicts(self) -> list[Judged]:
        return [v for vs in self.sections.values() for v in vs]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)


def describe_load(load: MachineLoad | None) -> str:
    return "machine load unknown" if load is None else load.describe()


@dataclass(frozen=True)
class Decision:
    status: str  # "pass" | "fail" | "inconclusive"
    runs: list[GateRun]
    reason: str

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1, "inconclusive": 3}[self.status]


def decide(
    baseline: Baseline,
    measure: Callable[[int], tuple[dict[str, list[float]], MachineLoad | None]],
    repeats: int,
    confirm_repeats: int,
    floor: float = FLOOR,
) -> Decision:
    """The baseline gate alone: ``decide_runs`` over ``judge`` of each measurement."""

    def run(n: int) -> GateRun:
        fresh, load = measure(n)
        return GateRun({"baseline": judge(baseline, fresh, floor)}, load)

    return decide_runs(run, repeats, confirm_repeats)


def decide_runs(run: Callable[[int], GateRun], repeats: int, confirm_repeats: int) -> Decision:
    """Measure and judge; a failing run is measured again with ``confirm_repeats`` and only a
    drop that reproduces fails. If the confirming run saw a busy machine the gate cannot tell
    slower code from a busy machine and says so ("inconclusive") instead of failing. Every
    gate that ran judges the same measurement; the decision covers all their cells."""
    first = run(repeats)
    if first.ok:
        return Decision("pass", [first], "no cell dropped beyond its threshold")
    second = run(confirm_repeats)
    runs = [first, second]
    if second.ok:
        return Decision("pass", runs, "the first run's drop did not reproduce in a second run")
    load = second.load
    if load is not None and load.busy:
        return Decision(
            "inconclusive",
            runs,
            f"the drop reproduced, but the machine was busy ({load.describe()}; "
            f"the gate needs under {BUSY:.0%})",
        )
    return Decision("fail", runs, "the drop reproduced in a second run on a quiet machine")
