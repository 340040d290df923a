"""ServingCalibration: the serving model's predictions against measured batched runs.

A ``ServingCheck`` is one (scheme, batch, acceptance, metric) cell: throughput (tokens/s) or
p50 time per output token, measured on real layers (median over repeats, with their range) and
predicted by the serving simulator from the profile alone at the acceptance the run measured,
and again with each request's measured accept/reject trace replayed; and, for a speculative
scheme, its throughput speedup over batched AR at the same batch (measured paired repeat by
repeat, so the machine's speed drift between the profile and the cell cancels; predicted as
the ratio of the two predicted throughputs). Unlike the batch-1
calibration, which compares speedups (AR is its baseline, so AR's own row is only noise), these
are absolute figures: AR's rows test the batched step costs themselves and count in the summary.
The signed error is ``calibration_report.signed_error``, the project's one definition.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.calibration_report import CalibrationInfo, signed_error
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.schema import open_record, tag

RECORD = "ServingCalibration"
#: the compared metrics: output tokens per second, the p50 time per output token (s), and the
#: throughput speedup over batched AR at the same batch (speculative schemes only)
METRICS = ("tokens_s", "tpot_p50_s", "speedup")
SCHEMES = ("ar", "eesd", "pp_ar", "ppsd")


def _positive(field_: str, v: Any) -> float:
    return validate.number(field_, v, lo=0.0, lo_open=True)


def _maybe(field_: str, v: Any, check: Any) -> Any:
    return None if v is None else check(field_, v)


@dataclass(frozen=True)
class ServingCheck:
    """One compared cell (see the module docstring)."""

    scheme: str
    batch: int
    requests: int
    alpha: float | None  # the acceptance the drafter was set to (None: AR)
    observed_alpha: float | None  # what the measured run accepted (None: AR)
    metric: str
    measured: float  # median over the timed repeats
    measured_lo: float
    measured_hi: float
    predicted: float  # simulated at ``observed_alpha`` (i.i.d.)
    replayed: float | None = None  # simulated with each request's measured trace

    def __post_init__(self) -> None:
        validate.choice("scheme", self.scheme, SCHEMES)
        validate.choice("metric", self.metric, METRICS)
        validate.integer("batch", self.batch, lo=1)
        validate.integer("requests", self.requests, lo=1)
        for name in ("alpha", "observed_alpha"):
            object.__setattr__(
                self,
                name,
                _maybe(name, getattr(self, name), validate.probability),
            )
        for name in ("measured", "measured_lo", "measured_hi", "predicted"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        object.__setattr__(self, "replayed", _maybe("replayed", self.replayed, _positive))
        if self.metric == "speedup" and self.scheme == "ar":
            raise ConfigError("metric", "AR is the speedup's baseline: it has no speedup row")
        if not self.measured_lo <= self.measured <= self.measured_hi:
            raise ConfigError("measured", "must lie within [measured_lo, measured_hi]")

    @property
    def label(self) -> str:
        acc = "" if self.alpha is None else f" α={self.alpha:g}"
        return f"{self.scheme.upper().replace('_', '-')} batch {self.batch}{acc}"

    @property
    def error(self) -> float:
        return signed_error(self.predicted, self.measured)

    @property
    def replay_error(self) -> float | None:
        return None if self.replayed is None else signed_error(self.replayed, self.measured)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "batch": self.batch,
            "requests": self.requests,
            "alpha": self.alpha,
            "observed_alpha": self.observed_alpha,
            "metric": self.metric,
            "measured": self.measured,
            "measured_lo": self.measured_lo,
            "measured_hi": self.measured_hi,
            "predicted": self.predicted,
            "replayed": self.replayed,
            "error": round(self.error, 6),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> ServingCheck:
        names = (
            "scheme", "batch", "requests", "alpha", "observed_alpha", "metric", "measured",
            "measured_lo", "measured_hi", "predicted", "replayed",
        )  # fmt: skip
        d = validate.mapping(where, data, (*names, "error"), names[:10])
        d.pop("error", None)
        try:
            return cls(**d)
        except ConfigError as err:
            raise err.within(where) if where else err from None


@dataclass(frozen=True)
class MetricSummary:
    """|signed error| over every cell of one metric: median, worst and where."""

    metric: str
    cells: int
    median_abs_error: float
    worst_abs_error: float
    worst_cell: str
    median_abs_replay_error: float | None

    @classmethod
    def of(cls, metric: str, rows: Iterable[ServingCheck]) -> MetricSummary:
        rows = [r for r in rows if r.metric == metric]
        if not rows:
            raise ConfigError("rows", f"no cell measures {metric}")
        worst = max(rows, key=lambda r: abs(r.error))
        replays = [abs(e) for r in rows if (e := r.replay_error) is not None]
        return cls(
            metric,
            len(rows),
            statistics.median(abs(r.error) for r in rows),
            abs(worst.error),
            worst.label,
            statistics.median(replays) if replays else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": self.cells,
            "median_abs_error": round(self.median_abs_error, 6),
            "worst_abs_error": round(self.worst_abs_error, 6),
            "worst_cell": self.worst_cell,
            "median_abs_replay_error": None
            if self.median_abs_replay_error is None
            else round(self.median_abs_replay_error, 6),
        }


@dataclass(frozen=True)
class ServingCalibration:
    """One serving calibration: how it was measured (``info``: ``tokens`` is each request's
    output length, ``sim_tokens`` the simulator seeds averaged per prediction), every compared
    cell, what was noticed, and the profile every prediction came from."""

    info: CalibrationInfo
    rows: tuple[ServingCheck, ...]
    notes: tuple[str, ...] = ()
    profile: HardwareProfile | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.info, CalibrationInfo):
            raise ConfigError("info", "must be a CalibrationInfo")
        rows = tuple(validate.sequence("rows", self.rows, min_len=1))
        for i, r in enumerate(rows):
            if not isinstance(r, ServingCheck):
                raise ConfigError(f"rows[{i}]", "must be a ServingCheck")
        notes = tuple(validate.sequence("notes", self.notes))
        for i, n in enumerate(notes):
            if not isinstance(n, str) or not n:
                raise ConfigError(f"notes[{i}]", "must be a non-empty string")
        if self.profile is not None and not isinstance(self.profile, HardwareProfile):
            raise ConfigError("profile", "must be a HardwareProfile")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "notes", notes)

    def summary(self, metric: str) -> MetricSummary:
        return MetricSummary.of(metric, self.rows)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m in METRICS if any(r.metric == m for r in self.rows))

    def to_dict(self) -> dict[str, Any]:
        return {
            **tag(RECORD),
            "info": self.info.to_dict(),
            "summary": {m: self.summary(m).to_dict() for m in self.metrics},
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
            **({} if self.profile is None else {"profile": self.profile.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> ServingCalibration:
        d = open_record(
            data, RECORD, where, ("info", "rows", "notes", "profile"), ("info", "rows"),
            derived=("summary",),
        )  # fmt: skip
        rows = validate.sequence(validate.join(where, "rows"), d["rows"], min_len=1)
        prof = d.get("profile")
        return cls(
            CalibrationInfo.from_dict(d["info"], validate.join(where, "info")),
            tuple(
                ServingCheck.from_dict(r, validate.join(where, f"rows[{i}]"))
                for i, r in enumerate(rows)
            ),
            tuple(validate.sequence(validate.join(where, "notes"), d.get("notes", []))),
            None
            if prof is None
            else HardwareProfile.from_dict(prof, validate.join(where, "profile")),
        )
