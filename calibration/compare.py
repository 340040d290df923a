"""Predicted vs measured speedup, per cell and summarised."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Row:
    label: str
    scheme: str
    alpha: float | None
    measured: float  # median over repeats
    measured_lo: float
    measured_hi: float
    predicted: float  # i.i.d. α as requested
    replayed: float | None  # the measured acceptance trace replayed in the simulator
    observed_alpha: float | None
    flags: tuple[str, ...]

    @property
    def error(self) -> float:
        """Signed relative error of the prediction: predicted / measured − 1."""
        return self.predicted / self.measured - 1.0

    @property
    def replay_error(self) -> float | None:
        return None if self.replayed is None else self.replayed / self.measured - 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(error=self.error, abs_error=abs(self.error), replay_error=self.replay_error)
        return d


@dataclass(frozen=True)
class Summary:
    cells: int
    median_abs_error: float
    worst_abs_error: float
    worst_cell: str
    median_abs_replay_error: float | None
    worst_abs_replay_error: float | None
    flagged: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(rows: list[Row]) -> Summary:
    """Errors over the non-AR cells (AR is the baseline: its 'error' is only noise)."""
    judged = [r for r in rows if r.scheme != "ar"] or rows
    errs = [abs(r.error) for r in judged]
    worst = max(judged, key=lambda r: abs(r.error))
    rep = [abs(r.replay_error) for r in judged if r.replay_error is not None]
    return Summary(
        cells=len(judged),
        median_abs_error=statistics.median(errs),
        worst_abs_error=max(errs),
        worst_cell=worst.label,
        median_abs_replay_error=statistics.median(rep) if rep else None,
        worst_abs_replay_error=max(rep) if rep else None,
        flagged=sum(1 for r in judged if r.flags),
    )
