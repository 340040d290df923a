"""What one decode produced and observed, before it becomes a RunRecord."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DecodeResult:
    """Tokens plus the raw observations. ``trace`` is the 0/1 outcome of each judged draft in
    order, ``positions`` the 1-based draft position of each (EESD: within the round; PPSD:
    since the last rejection). ``histogram[a]`` counts EESD rounds with a accepted drafts.
    ``expected`` (sampling only; greedy leaves it empty): Σ_x min(p(x), q(x)) of each judged
    draft, in ``trace``'s order."""

    tokens: list[int]
    time_s: float
    trace: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    histogram: list[int] = field(default_factory=list)
    rounds: int | None = None
    flushes: int = 0
    stage_busy_s: list[float] = field(default_factory=list)
    stage_wasted_s: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
