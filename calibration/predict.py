"""Predictions for calibration cells from a HardwareProfile alone (and, for replay, the
acceptance trace a measured run actually saw)."""

from __future__ import annotations

from dataclasses import dataclass

from calibration.grid import Cell
from ppsd_sim.costs import eesd_costs
from ppsd_sim.records import AcceptanceSpec, HardwareProfile
from ppsd_sim.simulate import simulate


@dataclass(frozen=True)
class Prediction:
    speedup: float
    engine: str
    flags: tuple[str, ...]  # why a prediction leaves the profiled range (never silent)


def range_flags(profile: HardwareProfile, cell: Cell) -> tuple[str, ...]:
    """Where a prediction rests on something the profile did not measure."""
    flags = []
    s = cell.scheme
    if s.kind == "eesd" and eesd_costs(profile, s).verify_extrapolated:
        flags.append(
            f"verify of {s.gamma + 1} tokens extrapolated beyond {profile.verify_tokens[-1]}"
        )
    if s.kind == "ppsd":
        if profile.hop.median == 0.0:
            flags.append("hop latency not profiled (0)")
        if (
            profile.provenance.latency_context == "full_model"
            and profile.concurrency_slowdown == 1.0
        ):
            flags.append("stage latencies from full-model steps; no concurrency slowdown profiled")
    return tuple(flags)


def predict(
    profile: HardwareProfile,
    cell: Cell,
    *,
    tokens: int = 20_000,
    seed: int = 0,
    trace: tuple[int, ...] | None = None,
) -> Prediction:
    """Simulated speedup over AR on the same profile. With ``trace`` the measured accept/reject
    sequence is replayed, so acceptance noise drops out of the comparison."""
    if cell.scheme.kind == "ar":
        return Prediction(1.0, "analytic", ())
    if trace is not None:
        acc = AcceptanceSpec.from_trace(trace) if trace else AcceptanceSpec.iid(cell.alpha)
    else:
        acc = AcceptanceSpec.iid(cell.alpha)
    rec = simulate(profile, cell.scheme, acc, tokens=tokens, seed=seed, engine="auto").record
    return Prediction(float(rec.speedup), rec.engine, range_flags(profile, cell))
