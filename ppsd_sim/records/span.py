"""Span: one interval of work on one pipeline stage, the unit of every stage timeline.

Simulated timelines (the SimPy engines), measured ones (Chrome traces read back by the report)
and the trace exporter all speak in Spans, so it lives with the records they exchange.
"""

from __future__ import annotations

from dataclasses import dataclass

#: what a span's time was spent on
CATEGORIES = ("compute", "ee_head", "final_head", "crop", "wasted", "draft", "verify")


@dataclass
class Span:
    """One interval of work on one stage, for timelines (seconds)."""

    stage: int
    start: float
    end: float
    name: str
    category: str  # one of CATEGORIES
