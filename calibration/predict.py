"""Predictions for calibration cells: ``ppsd_sim.predict`` (the one recipe, shared with
``ppsd report``) on the cell's scheme at the α it asks for, or with the accept/reject trace
the measured run saw replayed."""

from __future__ import annotations

from calibration.grid import Cell
from ppsd_sim.predict import DEFAULT_TOKENS, Prediction
from ppsd_sim.predict import predict as predict_scheme
from ppsd_sim.records import AcceptanceSpec, HardwareProfile
from ppsd_sim.records.decoding import GREEDY, DecodingSettings

__all__ = ["Prediction", "predict"]


def predict(
    profile: HardwareProfile,
    cell: Cell,
    *,
    tokens: int = DEFAULT_TOKENS,
    seed: int = 0,
    trace: tuple[int, ...] | None = None,
    alpha: float | None = None,
    decoding: DecodingSettings = GREEDY,
) -> Prediction:
    """Simulated speedup over AR on the same profile, at the cell's α or, for a cell whose
    acceptance is not set (the early-exit drafter), at the measured ``alpha``. With a non-empty
    ``trace`` the measured accept/reject sequence is replayed, so acceptance noise drops out of
    the comparison. ``decoding``: how the cell was decoded (its acceptance was measured so, and
    the profile's sampling costs apply when it samples)."""
    a = cell.alpha if cell.alpha is not None else alpha
    if trace:
        acc: AcceptanceSpec | None = AcceptanceSpec.from_trace(trace)
    else:
        acc = None if a is None or cell.scheme.kind == "ar" else AcceptanceSpec.iid(a)
    if acc is not None:
        acc = acc.with_decoding(decoding)
    return predict_scheme(profile, cell.scheme, acc, tokens=tokens, seed=seed)
