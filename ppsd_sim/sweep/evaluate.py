"""Worker side: simulate a batch of points and return their rows.

Runs in a pool process or a Ray worker, so it takes and returns only plain data. Batching
amortises the per-task costs (pickling, scheduling) over many sub-millisecond points. A point
that fails becomes a failure row; the batch and the sweep go on.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from ppsd_sim import analytic
from ppsd_sim.errors import ConfigError
from ppsd_sim.serving.simulate import compare_serving
from ppsd_sim.simulate import simulate
from ppsd_sim.sweep.points import Context, ServingInputs, SimInputs, build
from ppsd_sim.sweep.table import (
    closed_form_result,
    failed_row,
    ok_row,
    record_result,
    serving_result,
)


@dataclass(frozen=True)
class Batch:
    """Points to simulate: (point ID, canonical config JSON) pairs, and the files they use."""

    context: Context
    points: tuple[tuple[str, str], ...]


def evaluate_batch(batch: Batch) -> list[dict[str, Any]]:
    """One row per point, in order."""
    cache: dict[str, Any] = {}
    worker = f"{socket.gethostname()}:{os.getpid()}"
    rows = []
    for point_id, canonical in batch.points:
        cfg = json.loads(canonical)
        t0 = time.perf_counter()
        try:
            inp = build(cfg, batch.context, cache)
            result = _serve(inp, cache) if isinstance(inp, ServingInputs) else _answer(inp)
            row = ok_row(point_id, canonical, cfg, inp, result)
        except Exception as err:  # one bad point must not stop the sweep
            row = failed_row(point_id, canonical, cfg, err)
        row["sim_ms"] = (time.perf_counter() - t0) * 1e3
        row["worker"] = worker
        row["finished_unix"] = time.time()
        rows.append(row)
    return rows


def _answer(inp: SimInputs) -> dict[str, Any]:
    """Closed form where asked for (or where it is exact: AR), else the simulator."""
    if inp.engine == "closed_form" or (inp.engine == "auto" and inp.scheme.kind == "ar"):
        return _closed_form(inp)
    sim = simulate(
        inp.profile, inp.scheme, inp.acceptance, tokens=inp.tokens, seed=inp.seed, engine=inp.engine
    )
    return record_result(sim.record)


def _serve(inp: ServingInputs, cache: dict[str, Any]) -> dict[str, Any]:
    """The serving simulator, with the speedups over AR and PP-AR at the same load; points of
    a batch at one load share their baseline runs (the same records compare_serving makes)."""
    shared = cache.setdefault("S:" + inp.load_key, {})
    (rec,) = compare_serving(
        inp.profile,
        [inp.scheme],
        inp.workload,
        inp.settings,
        seed=inp.seed,
        keep_profile=False,
        shared=shared,
    )
    return serving_result(rec)


def _closed_form(inp: SimInputs) -> dict[str, Any]:
    acc = inp.acceptance
    if inp.scheme.kind == "ar":
        tps = analytic.ar_tokens_per_s(inp.profile)
        out = closed_form_result(inp.tokens, tps, 1.0)
        # AR is deterministic: the closed form is the exact simulation, statistics included
        out.update(flushes=0, stage_busy_fraction="[1.0]", busy_fraction_max=1.0)
        return out
    if acc is None or acc.kind != "iid":
        raise ConfigError("engine", "closed_form needs i.i.d. acceptance; use auto, fast or simpy")
    alpha = acc.mean_alpha  # i.i.d.: α itself
    dec = acc.decoding  # the simulator reads it from the acceptance too: the same costs
    tps = analytic.tokens_per_s(inp.profile, inp.scheme, alpha, dec)
    return closed_form_result(
        inp.tokens, tps, analytic.speedup(inp.profile, inp.scheme, alpha, dec)
    )
