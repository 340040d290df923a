"""The CI regression gate on measured speedup.

A baseline is a versioned JSON file per hardware class and model: for a small fixed set of
cells, the speedups measured over repeats. A fresh measurement fails the gate when a cell's
median speedup falls below the baseline's by more than a threshold derived from the spread of
both sets of repeats (not a guess):

    se(x)     = 1.2533 · 1.4826 · MAD(x) / median(x) / √n      (standard error of a median,
                                                               relative, robust to outliers)
    threshold = max(floor, z · √(se(baseline)² + se(fresh)²))  (z = 3)

Speedups are ratios measured side by side with AR, so slow drift of the machine cancels within
a run. Between runs (fresh processes, another session) the same ratio moved by up to ~9% on
this machine (BENCHMARKS.md), which the repeats of one run cannot see: the floor covers it
(5% by default, 10% for the quick CI variant with only 3 repeats).
"""

from __future__ import annotations

import math
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig, _check, atomic_write_text, load_document
from ppsd_sim.records._schema import open_record, tag

Z, FLOOR, QUICK_FLOOR = 3.0, 0.05, 0.10


def hardware_class() -> str:
    """Machines that should give comparable speedups: CPU architecture and core count."""
    import os

    return f"{platform.machine()}-{os.cpu_count()}core"


def rel_se(samples: list[float]) -> float:
    med = statistics.median(samples)
    mad = statistics.median(abs(x - med) for x in samples)
    return 1.2533 * 1.4826 * mad / med / math.sqrt(len(samples)) if med > 0 else math.inf


def threshold(base: list[float], fresh: list[float], z: float = Z, floor: float = FLOOR) -> float:
    return max(floor, z * math.hypot(rel_se(base), rel_se(fresh)))


@dataclass(frozen=True)
class GateCell:
    label: str
    scheme: SchemeConfig
    alpha: float | None
    speedups: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.speedups)


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
                    "label": c.label,
                    "scheme": c.scheme.to_dict(),
                    "alpha": c.alpha,
                    "speedups": list(c.speedups),
                    "median": c.median,
                }
                for c in self.cells
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "baseline") -> Baseline:
        d = open_record(
            data,
            "SpeedBaseline",
            where,
            ("hardware", "model", "tokens", "created", "provenance", "cells"),
            ("hardware", "model", "tokens", "cells"),
        )
        cells = []
        for i, c in enumerate(_check.sequence(f"{where}.cells", d["cells"], min_len=1)):
            w = f"{where}.cells[{i}]"
            c = _check.mapping(
                w,
                c,
                ("label", "scheme", "alpha", "speedups", "median"),
                ("label", "scheme", "speedups"),
            )
            sp = tuple(
                _check.number(f"{w}.speedups[{j}]", x, lo=0.0, lo_open=True)
                for j, x in enumerate(_check.sequence(f"{w}.speedups", c["speedups"], min_len=2))
            )
            alpha = c.get("alpha")
            cells.append(
                GateCell(
                    str(c["label"]),
                    SchemeConfig.from_dict(c["scheme"], f"{w}.scheme"),
                    None if alpha is None else _check.probability(f"{w}.alpha", alpha),
                    sp,
                )
            )
        return cls(
            str(d["hardware"]),
            str(d["model"]),
            _check.integer(f"{where}.tokens", d["tokens"], lo=1),
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


def judge(baseline: Baseline, fresh: dict[str, list[float]], floor: float = FLOOR) -> list[Verdict]:
    """One verdict per baseline cell; a cell missing from ``fresh`` is an error, not a pass."""
    _check.number("--floor", floor, lo=0.0, hi=1.0, hi_open=True)
    out = []
    for c in baseline.cells:
        if c.label not in fresh:
            raise ConfigError("fresh", f"no fresh measurement for baseline cell {c.label!r}")
        f = fresh[c.label]
        thr = threshold(list(c.speedups), f, floor=floor)
        change = statistics.median(f) / c.median - 1.0
        out.append(Verdict(c.label, c.median, statistics.median(f), change, thr, change >= -thr))
    return out
