"""profile → predict → measure → compare → report, as one call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from calibration.compare import Row, Summary, findings_of, summarise
from calibration.gate import hardware_class
from calibration.grid import Cell, default_grid
from calibration.measure import Measured, measure_grid, wall_clock
from calibration.predict import predict
from calibration.report import build_record, write_report
from ppsd_real import profiler, runner
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.records import HardwareProfile, SchemeConfig


@dataclass
class Calibration:
    profile: HardwareProfile
    rows: list[Row]
    summary: Summary
    paths: dict[str, Path]


def measure_profile(
    spec: ModelSpec, n_layers_hint: int | None = None, repeats: int = 30, transport: str = "pipe"
) -> HardwareProfile:
    """The profile the predictions rest on: layer/head/crop latencies, and hop, per-tick cost
    and concurrency slowdown measured between real stage processes."""
    torch.set_num_threads(1)
    m = runner.load(spec)
    layers = m.n_layers
    be = runner.open_distributed(
        spec, SchemeConfig.ppsd((layers // 2, layers)), layers, DrafterSpec(), transport=transport
    )
    try:  # the backend lets the profiler time hop, tick and contention between real stages
        return profiler.profile(m, repeats, backend=be, threads=1)
    finally:
        be.close()


def rows_of(profile: HardwareProfile, measured: list[Measured], sim_tokens: int) -> list[Row]:
    rows = []
    for meas in measured:
        c: Cell = meas.cell
        pred = predict(profile, c, tokens=sim_tokens)
        replay = predict(profile, c, tokens=sim_tokens, trace=meas.trace) if meas.trace else None
        rows.append(
            Row(
                label=c.label,
                scheme=c.scheme.kind,
                alpha=c.alpha,
                measured=meas.median,
                measured_lo=min(meas.speedups),
                measured_hi=max(meas.speedups),
                predicted=pred.speedup,
                replayed=None if replay is None else replay.speedup,
                observed_alpha=meas.observed_alpha,
                flags=pred.flags,
            )
        )
    return rows


def run_calibration(
    spec: ModelSpec,
    out: Path,
    *,
    quick: bool = False,
    tokens: int = 128,
    repeats: int = 5,
    sim_tokens: int = 20_000,
    transport: str = "pipe",
    command: str = "",
    on_progress=None,
) -> Calibration:
    profile = measure_profile(spec, transport=transport)
    cells = default_grid(profile.n_layers, quick=quick)
    measured = measure_grid(
        spec, cells, tokens=tokens, repeats=repeats, transport=transport, on_progress=on_progress
    )
    rows = rows_of(profile, measured, sim_tokens)
    summary = summarise(rows)
    info = {
        "model": spec.name,
        "hardware": hardware_class(),
        "date": wall_clock(),
        "tokens": tokens,
        "repeats": repeats,
        "sim_tokens": sim_tokens,
        "transport": transport,
        "command": command,
        "quick": quick,
    }
    paths = write_report(out, build_record(rows, profile, info, findings_of(rows)))
    return Calibration(profile, rows, summary, paths)
