"""Sweeps at scale: a grid or list of simulator configurations, run on a process pool or
Ray, into one resumable Parquet table (``ppsd sweep``; see ``spec`` for the file format)."""

from ppsd_sim.sweep.backends import make_backend
from ppsd_sim.sweep.runner import RunCounts, run_sweep
from ppsd_sim.sweep.spec import SweepSpec, load_spec, parse_spec
from ppsd_sim.sweep.store import load_results, read_table

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
