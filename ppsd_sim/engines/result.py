"""What an engine returns, and the acceptance bookkeeping both engines share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ppsd_sim.records.run_record import AcceptanceObserved
from ppsd_sim.records.span import Span

#: draft positions reported in per-position acceptance
MAX_POSITIONS = 16


@dataclass
class EngineResult:
    tokens: int
    time_s: float
    observed: AcceptanceObserved
    busy_s: list[float]
    wasted_s: list[float]
    flushes: int
    rounds: int | None = None
    spans: list[Span] | None = None
    notes: dict = field(default_factory=dict)


def observed_from_runs(complete: np.ndarray | Sequence[int], partial: int) -> AcceptanceObserved:
    """Acceptance of a PPSD run: ``complete`` runs each ended in a rejection, ``partial``
    drafts were accepted after the last rejection. Position i counts from that rejection."""
    complete = np.asarray(complete, dtype=np.int64)
    judged = int(complete.sum() + len(complete) + partial)
    accepted = int(complete.sum() + partial)
    per_pos = []
    for i in range(1, MAX_POSITIONS + 1):
        j = int((complete >= i - 1).sum()) + (1 if partial >= i - 1 else 0)
        a = int((complete >= i).sum()) + (1 if partial >= i else 0)
        if j == 0:
            break
        per_pos.append(a / j)
    if judged == 0:
        per_pos = []
    return AcceptanceObserved(judged=judged, accepted=accepted, per_position=tuple(per_pos))


def observed_from_rounds(rounds: np.ndarray, gamma: int) -> AcceptanceObserved:
    """Acceptance of EESD rounds (accepted drafts per round, 0..γ)."""
    rounds = np.asarray(rounds, dtype=np.int64)
    judged = int(np.where(rounds < gamma, rounds + 1, gamma).sum())
    accepted = int(rounds.sum())
    per_pos = []
    for i in range(1, min(gamma, MAX_POSITIONS) + 1):
        j = int((rounds >= i - 1).sum())
        if j == 0:
            break
        per_pos.append(int((rounds >= i).sum()) / j)
    hist = np.bincount(rounds, minlength=gamma + 1)
    return AcceptanceObserved(
        judged=judged,
        accepted=accepted,
        per_position=tuple(per_pos),
        histogram=tuple(int(x) for x in hist),
    )
