"""Runs a validated sweep: skip what the store already holds, batch the rest, hand batches to
a backend and write each finished batch as it arrives."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.workload import LengthDist
from ppsd_sim.sweep.backends import Backend
from ppsd_sim.sweep.evaluate import Batch, evaluate_batch
from ppsd_sim.sweep.points import Point
from ppsd_sim.sweep.spec import SweepSpec
from ppsd_sim.sweep.store import ResultStore

#: a batch should take about this long: long enough to amortise per-task costs, short enough
#: that a kill loses little and progress moves
BATCH_SECONDS = 0.25
MAX_BATCH_POINTS = 2000
#: the serving model's single-core cost per output token (BENCHMARKS.md, serving sweep)
SERVING_S_PER_TOKEN = 2e-5


@dataclass(frozen=True)
class RunCounts:
    """What one invocation did."""

    total: int  # points in the spec
    skipped: int  # already in the store
    done: int  # finished now
    failed: int  # recorded as failures now
    elapsed_s: float


def estimated_seconds(point: Point) -> float:
    """Rough single-core cost of a point, for batching only (SimPy ≈ 25 µs per token; the fast
    path ≈ 0.4 ms + 0.1 µs per token; the closed form is instant)."""
    cfg = point.config
    if cfg.get("mode") == "serving":
        return _serving_seconds(cfg)
    engine, tokens = cfg["engine"], cfg["tokens"]
    if engine == "closed_form" or (engine == "auto" and cfg["scheme"] == "ar"):
        return 5e-5
    devices = cfg.get("devices")
    shared = devices is not None and len(set(devices)) < len(devices)
    if engine == "simpy" or (engine == "auto" and shared):
        return 2.5e-5 * tokens
    return 4e-4 + 1e-7 * tokens


def _serving_seconds(cfg: dict) -> float:
    """The serving model ≈ SERVING_S_PER_TOKEN per output token per scheme run; a point runs
    its scheme and, unless a batch shares them, AR and (on k devices) PP-AR too."""
    output = LengthDist.parse(cfg["output_len"], "output_len").mean_hint
    runs = 1 + (cfg["scheme"] != "ar") + (cfg["scheme"] in ("ppsd", "tp_ar"))
    return SERVING_S_PER_TOKEN * cfg["requests"] * output * runs


def make_batches(points: Sequence[Point], workers: int, spec: SweepSpec) -> list[Batch]:
    """Consecutive points grouped to about BATCH_SECONDS each, and into at least four
    batches per worker when there is enough work, so no core idles at the end."""
    costs = [estimated_seconds(p) for p in points]
    target = min(BATCH_SECONDS, max(sum(costs) / (4 * workers), 1e-9))
    batches: list[Batch] = []
    cur: list[tuple[str, str]] = []
    acc = 0.0
    for p, c in zip(points, costs, strict=True):
        cur.append((p.id, p.canonical))
        acc += c
        if acc >= target or len(cur) >= MAX_BATCH_POINTS:
            batches.append(Batch(spec.context, tuple(cur)))
            cur, acc = [], 0.0
    if cur:
        batches.append(Batch(spec.context, tuple(cur)))
    return batches


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike[str],
    backend: Backend,
    *,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> RunCounts:
    """Compute every point of ``spec`` not yet in ``out``; safe to kill and rerun. A spec may
    grow (points added, reordered) and resume into the same folder; one that changed or
    dropped a point the folder holds is refused before any work, so a folder never mixes the
    rows of two different specs."""
    t0 = time.perf_counter()
    with ResultStore(out) as store:
        done_ids = store.done_ids()
        check_same_spec(spec, done_ids, out)
        todo = [p for p in spec.points if p.id not in done_ids]
        skipped = len(spec.points) - len(todo)
        echo(
            f"sweep {spec.name}: {len(spec.points):,} points, {skipped:,} already done, "
            f"{len(todo):,} to run"
        )
        done = failed = 0
        if todo:
            with backend:
                echo(f"backend: {backend.name}, {backend.workers} worker(s)")
                batches = make_batches(todo, backend.workers, spec)
                bar = tqdm(
                    total=len(todo), unit="pt", disable=not progress, smoothing=0.1, mininterval=0.5
                )
                try:
                    for rows in _results(backend, batches):
                        store.write(rows)
                        n_failed = sum(r["status"] == "failed" for r in rows)
                        failed += n_failed
                        done += len(rows) - n_failed
                        bar.update(len(rows))
                finally:
                    bar.close()
    return RunCounts(len(spec.points), skipped, done, failed, time.perf_counter() - t0)


def check_same_spec(spec: SweepSpec, done_ids: set[str], out: str | os.PathLike[str]) -> None:
    """Refuse a results folder holding points that ``spec`` does not have (a value, the seed
    or a file's content changed, or a point was removed)."""
    wanted = {p.id for p in spec.points}
    stale = done_ids - wanted
    if stale:
        raise ConfigError(
            "out",
            f"{out} holds {len(stale):,} result(s) of points this spec does not have (a value, "
            "the seed or a named file changed, or points were removed); a changed spec needs "
            "its own folder: give another --out, or delete the folder to start over",
        )


def _results(backend: Backend, batches: list[Batch]) -> Iterator[list[dict]]:
    yield from backend.imap_unordered(evaluate_batch, batches)
