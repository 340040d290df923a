"""Sweeps at scale: a grid or list of simulator configurations, run on a process pool or
Ray, into one resumable Parquet table (``ppsd sweep``; see ``spec`` for the file format).

Exports are loaded lazily: pool and Ray workers import only the modules a batch needs
(not pyarrow, tqdm or pandas), which keeps worker start-up short.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ppsd_sim.sweep.backends import make_backend
    from ppsd_sim.sweep.runner import RunCounts, run_sweep
    from ppsd_sim.sweep.spec import SweepSpec, load_spec, parse_spec
    from ppsd_sim.sweep.store import load_results, read_table

_EXPORTS = {
    "RunCounts": "ppsd_sim.sweep.runner",
    "run_sweep": "ppsd_sim.sweep.runner",
    "SweepSpec": "ppsd_sim.sweep.spec",
    "load_spec": "ppsd_sim.sweep.spec",
    "parse_spec": "ppsd_sim.sweep.spec",
    "load_results": "ppsd_sim.sweep.store",
    "read_table": "ppsd_sim.sweep.store",
    "make_backend": "ppsd_sim.sweep.backends",
}

__all__ = [
    "RunCounts",
    "SweepSpec",
    "load_results",
    "load_spec",
    "make_backend",
    "parse_spec",
    "read_table",
    "run_sweep",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ppsd_sim.sweep' has no attribute {name!r}")
