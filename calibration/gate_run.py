"""One reading of the speed gate on the real runner: the one place the gates touch it.

A reading measures the gate's cells (fixed acceptance sequence, AR measured beside them) and,
for the model-relative gate, first takes a quick profile of the same model in fresh stage
processes and this machine's Python speed. The machine's load is metered over all of it and
read after every stage process has been joined (``machine_load``).

Functions of other modules used here, and nowhere else in the gates:
``calibration.loop.measure_profile``, ``calibration.measure.measure_grid`` and
``ppsd_real.machine_load.LoadMeter`` (``model_gate`` alone calls ``calibration.predict``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from calibration.grid import Cell
from calibration.loop import measure_profile
from calibration.measure import measure_grid
from calibration.model_gate import CellReading, Reading, python_speed
from ppsd_real.machine_load import LoadMeter, MachineLoad
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.records import SchemeConfig

GATE_ALPHA = 0.9
#: the quick profile: per-stage latencies, hop, contention (and a tick the gate only reports)
PROFILE_REPEATS = 10


def gate_cells(n_layers: int) -> list[Cell]:
    """The small fixed set both gates watch: PPSD and EESD at α = 0.9, exit L/2."""
    e = n_layers // 2
    return [
        Cell(SchemeConfig.ppsd((e, n_layers)), GATE_ALPHA),
        Cell(SchemeConfig.eesd(e, 4), GATE_ALPHA),
    ]


def model_layers(spec: ModelSpec) -> int:
    """The model's layer count (loads it: the gate cells are placed by it)."""
    from ppsd_real import runner

    return runner.load(spec).n_layers


@dataclass(frozen=True)
class Measurement:
    cells: tuple[CellReading, ...]
    reading: Reading | None  # with a profile: what the model-relative gate judges
    load: MachineLoad | None
    wall_s: float
    profile_s: float  # of wall_s: the quick profile and the Python-speed reference

    @property
    def speedups(self) -> dict[str, list[float]]:
        """What the baseline gate judges: repeat speedups per cell label."""
        return {c.cell.label: list(c.speedups) for c in self.cells}


def measure(
    spec: ModelSpec,
    cells: list[Cell],
    *,
    tokens: int,
    repeats: int,
    transport: str,
    with_profile: bool,
    on_progress: Callable[[int, int], None] | None = None,
) -> Measurement:
    """One independent reading (fresh stage processes for the profile and for the cells)."""
    meter = LoadMeter()
    t0 = time.perf_counter()
    profile = python_s = None
    if with_profile:
        profile = measure_profile(spec, repeats=PROFILE_REPEATS, transport=transport)
        python_s = python_speed()
    t1 = time.perf_counter()
    got = measure_grid(
        spec,
        cells,
        tokens=tokens,
        repeats=repeats,
        transport=transport,
        on_progress=on_progress,
        fixed_trace=True,
    )
    wall = time.perf_counter() - t0
    load = meter.stop()  # measure_grid and measure_profile have joined their stage processes
    readings = tuple(CellReading(m.cell, tuple(m.speedups), tuple(m.trace)) for m in got)
    reading = None if profile is None or python_s is None else Reading(profile, python_s, readings)
    return Measurement(readings, reading, load, wall, t1 - t0)
