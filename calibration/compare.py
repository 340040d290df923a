"""Predicted vs measured speedup, per cell and summarised, and the findings they support.

The row and summary types are the records' (``ppsd_sim.records.calibration_report``), so the
calibration report and ``ppsd report`` read and judge them the same way."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from ppsd_sim.records.calibration_report import Comparison, ComparisonSummary

Row = Comparison
Summary = ComparisonSummary

__all__ = ["Row", "Summary", "findings_of", "summarise"]


def summarise(rows: Iterable[Row]) -> Summary:
    """Errors over the non-AR cells (AR is the baseline: its 'error' is only noise)."""
    return ComparisonSummary.of(rows)


def findings_of(rows: Iterable[Row]) -> list[str]:
    """Plain statements the numbers support (where the model misses, and in which direction)."""
    rows = list(rows)
    out = []
    for kind in ("eesd", "ppsd"):
        errs = [r.error for r in rows if r.scheme == kind]
        if errs:
            med = statistics.median(errs)
            direction = "over-predicts" if med > 0 else "under-predicts"
            out.append(
                f"{kind.upper()}: the model {direction} by {abs(med):.1%} (median signed error over "
                f"{len(errs)} cells; range {min(errs):+.1%} to {max(errs):+.1%})."
            )
    rep = [(r.error, e) for r in rows if (e := r.replay_error) is not None]
    if rep:
        gain = statistics.median(abs(a) - abs(b) for a, b in rep)
        out.append(
            f"Replaying the measured acceptance trace changes |error| by {-gain:+.1%} (median): "
            + (
                "acceptance noise explains part of the gap."
                if gain > 0.005
                else "acceptance noise is not what the model misses."
            )
        )
    return out
