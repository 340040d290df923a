"""CalibrationReport: predicted against measured speedups, as a versioned record.

``Comparison`` is one configuration both predicted (from a profile alone) and measured: a
calibration cell, or a measured RunRecord in ``ppsd report``. Its signed error is
``signed_error``, the one definition the project uses. ``CalibrationReport`` is what
``ppsd calibrate run`` writes to ``calibration.json`` and ``ppsd report`` reads back; it lives
in the records so that reading it needs neither torch nor the simulator.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.schema import open_record, tag
from ppsd_sim.records.scheme import SCHEMES

RECORD = "CalibrationReport"


def signed_error(predicted: float, measured: float) -> float:
    """predicted ÷ measured − 1: positive when the model is optimistic (GLOSSARY: signed error)."""
    return predicted / measured - 1.0


def _speedup(field_: str, v: Any) -> float:
    return validate.number(field_, v, lo=0.0, lo_open=True)


def _optional(field_: str, v: Any, check: Any) -> Any:
    return None if v is None else check(field_, v)


def _text(field_: str, v: Any, *, empty: bool = False) -> str:
    if not isinstance(v, str) or (not empty and not v):
        raise ConfigError(field_, f"must be a {'' if empty else 'non-empty '}string, got {v!r}")
    return v


@dataclass(frozen=True)
class Comparison:
    """One configuration: measured speedup (median, with the spread of repeats when there were
    any), the prediction with the acceptance it was asked for, and optionally the prediction
    with the measured accept/reject trace replayed. ``flags`` say where the prediction rests on
    something not measured (``ppsd_sim.predict.range_flags``)."""

    label: str
    scheme: str  # the scheme kind: ar | eesd | ppsd
    alpha: float | None  # the acceptance asked for (None for AR, or when not controlled)
    measured: float
    measured_lo: float | None
    measured_hi: float | None
    predicted: float
    replayed: float | None
    observed_alpha: float | None
    flags: tuple[str, ...] = ()
    baseline: str | None = None  # the measured speedup's baseline, when the row names one

    def __post_init__(self) -> None:
        _text("label", self.label)
        _optional("baseline", self.baseline, _text)
        validate.choice("scheme", self.scheme, SCHEMES)
        _optional("alpha", self.alpha, validate.probability)
        _speedup("measured", self.measured)
        if (self.measured_lo is None) != (self.measured_hi is None):
            raise ConfigError(
                "measured_lo", "measured_lo and measured_hi come together or not at all"
            )
        if self.measured_lo is not None and self.measured_hi is not None:
            lo = _speedup("measured_lo", self.measured_lo)
            hi = _speedup("measured_hi", self.measured_hi)
            if not lo <= self.measured <= hi:
                raise ConfigError(
                    "measured", f"must lie within [measured_lo, measured_hi] = [{lo:g}, {hi:g}]"
                )
        _speedup("predicted", self.predicted)
        _optional("replayed", self.replayed, _speedup)
        _optional("observed_alpha", self.observed_alpha, validate.probability)
        flags = validate.sequence("flags", self.flags)
        object.__setattr__(
            self, "flags", tuple(_text(f"flags[{i}]", f) for i, f in enumerate(flags))
        )

    @property
    def error(self) -> float:
        """Signed error of the prediction (``signed_error``)."""
        return signed_error(self.predicted, self.measured)

    @property
    def replay_error(self) -> float | None:
        return None if self.replayed is None else signed_error(self.replayed, self.measured)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "scheme": self.scheme,
            "alpha": self.alpha,
            "measured": self.measured,
            "measured_lo": self.measured_lo,
            "measured_hi": self.measured_hi,
            "predicted": self.predicted,
            "replayed": self.replayed,
            "observed_alpha": self.observed_alpha,
            "flags": list(self.flags),
            **({} if self.baseline is None else {"baseline": self.baseline}),
            "error": self.error,
            "abs_error": abs(self.error),
            "replay_error": self.replay_error,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Comparison:
        names = (
            "label", "scheme", "alpha", "measured", "measured_lo", "measured_hi", "predicted",
            "replayed", "observed_alpha", "flags", "baseline",
        )  # fmt: skip
        d = validate.mapping(
            where,
            data,
            (*names, "error", "abs_error", "replay_error"),
            ("label", "scheme", "measured", "predicted"),
        )
        try:
            return cls(
                label=d["label"],
                scheme=d["scheme"],
                alpha=d.get("alpha"),
                measured=d["measured"],
                measured_lo=d.get("measured_lo"),
                measured_hi=d.get("measured_hi"),
                predicted=d["predicted"],
                replayed=d.get("replayed"),
                observed_alpha=d.get("observed_alpha"),
                flags=tuple(validate.sequence("flags", d.get("flags", []))),
                baseline=d.get("baseline"),
            )
        except ConfigError as err:
            raise err.within(where) if where else err from None


@dataclass(frozen=True)
class ComparisonSummary:
    """Errors over the judged comparisons (every non-AR one: AR is the baseline itself, its
    'error' is only noise; AR alone when nothing else was compared)."""

    cells: int
    median_abs_error: float
    worst_abs_error: float
    worst_cell: str
    median_abs_replay_error: float | None
    worst_abs_replay_error: float | None
    flagged: int

    @classmethod
    def of(cls, rows: Iterable[Comparison]) -> ComparisonSummary:
        rows = list(rows)
        if not rows:
            raise ConfigError("rows", "nothing to summarise: no comparison")
        judged = [r for r in rows if r.scheme != "ar"] or rows
        errs = [abs(r.error) for r in judged]
        worst = max(judged, key=lambda r: abs(r.error))
        rep = [abs(r.replay_error) for r in judged if r.replay_error is not None]
        return cls(
            cells=len(judged),
            median_abs_error=statistics.median(errs),
            worst_abs_error=max(errs),
            worst_cell=worst.label,
            median_abs_replay_error=statistics.median(rep) if rep else None,
            worst_abs_replay_error=max(rep) if rep else None,
            flagged=sum(1 for r in judged if r.flags),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": self.cells,
            "median_abs_error": self.median_abs_error,
            "worst_abs_error": self.worst_abs_error,
            "worst_cell": self.worst_cell,
            "median_abs_replay_error": self.median_abs_replay_error,
            "worst_abs_replay_error": self.worst_abs_replay_error,
            "flagged": self.flagged,
        }


@dataclass(frozen=True)
class CalibrationInfo:
    """How the grid was measured. Keys beyond the named ones are kept as they are in
    ``extra`` (JSON values), so a newer writer's details survive a round trip."""

    model: str
    hardware: str
    date: str
    tokens: int
    repeats: int
    sim_tokens: int
    transport: str = ""
    command: str = ""
    quick: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    NAMED = (
        "model", "hardware", "date", "tokens", "repeats", "sim_tokens", "transport", "command",
        "quick",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("model", "hardware", "date"):
            _text(name, getattr(self, name))
        validate.integer("tokens", self.tokens, lo=1)
        validate.integer("repeats", self.repeats, lo=1)
        validate.integer("sim_tokens", self.sim_tokens, lo=1)
        _text("transport", self.transport, empty=True)
        _text("command", self.command, empty=True)
        validate.boolean("quick", self.quick)
        extra = dict(self.extra)
        clash = sorted(set(extra) & set(self.NAMED))
        if clash:
            raise ConfigError(f"extra.{clash[0]}", "is a named field, not an extra")
        try:
            json.dumps(extra, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ConfigError("extra", f"must be JSON values: {err}") from None
        object.__setattr__(self, "extra", extra)

    def to_dict(self) -> dict[str, Any]:
        return {**{n: getattr(self, n) for n in self.NAMED}, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, where: str = "info") -> CalibrationInfo:
        if not isinstance(data, Mapping):
            raise ConfigError(where, f"must be an object, got {type(data).__name__}")
        d = dict(data)
        for n in ("model", "hardware", "date", "tokens", "repeats", "sim_tokens"):
            if n not in d:
                raise ConfigError(validate.join(where, n), "is required")
        named = {n: d.pop(n) for n in cls.NAMED if n in d}
        try:
            return cls(**named, extra=d)
        except ConfigError as err:
            raise err.within(where) from None


@dataclass(frozen=True)
class CalibrationReport:
    """One calibration: how it was measured, every compared cell, the findings written for it
    and the profile every prediction came from (absent in reports written before it was
    embedded). The summary is recomputed from the rows (it is stored for readers of the JSON)."""

    info: CalibrationInfo
    rows: tuple[Comparison, ...]
    findings: tuple[str, ...] = ()
    profile: HardwareProfile | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.info, CalibrationInfo):
            raise ConfigError("info", "must be a CalibrationInfo")
        rows = tuple(validate.sequence("rows", self.rows, min_len=1))
        for i, r in enumerate(rows):
            if not isinstance(r, Comparison):
                raise ConfigError(f"rows[{i}]", "must be a Comparison")
        found = validate.sequence("findings", self.findings)
        if self.profile is not None and not isinstance(self.profile, HardwareProfile):
            raise ConfigError("profile", "must be a HardwareProfile")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(
            self, "findings", tuple(_text(f"findings[{i}]", f) for i, f in enumerate(found))
        )

    @property
    def summary(self) -> ComparisonSummary:
        return ComparisonSummary.of(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            **tag(RECORD),
            "info": self.info.to_dict(),
            "summary": self.summary.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
            "findings": list(self.findings),
            **({} if self.profile is None else {"profile": self.profile.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> CalibrationReport:
        d = open_record(
            data,
            RECORD,
            where,
            ("info", "rows", "findings", "profile"),
            ("info", "rows"),
            derived=("summary",),
        )
        rows = validate.sequence(validate.join(where, "rows"), d["rows"], min_len=1)
        found = validate.sequence(validate.join(where, "findings"), d.get("findings", []))
        try:
            return cls(
                CalibrationInfo.from_dict(d["info"], validate.join(where, "info")),
                tuple(
                    Comparison.from_dict(r, validate.join(where, f"rows[{i}]"))
                    for i, r in enumerate(rows)
                ),
                tuple(found),
                None
                if d.get("profile") is None
                else HardwareProfile.from_dict(d["profile"], validate.join(where, "profile")),
            )
        except ConfigError as err:
            if err.field.startswith("findings") and where:
                raise err.within(where) from None
            raise
