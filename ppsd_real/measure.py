"""Turn a decode into a RunRecord (origin 'measured') with provenance and named baselines."""

from __future__ import annotations

import datetime
import os
import subprocess
from collections import Counter

import torch

from ppsd_real.decoders.result import DecodeResult
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.records import AcceptanceObserved, AcceptanceSpec, Provenance, RunRecord, SchemeConfig


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(__file__),
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(
    model: ModelSpec, threads: int, context: str = "unknown", notes: str | None = None
) -> Provenance:
    """Where and how this was measured (versions, threads, device, dtype, commit, date)."""
    import transformers

    from ppsd_real.device import describe

    return Provenance(
        source="measured",
        device=describe(model.device),
        cores=os.cpu_count(),
        threads=threads,
        torch=torch.__version__,
        transformers=transformers.__version__,
        dtype=model.dtype,
        model=model.name,
        commit=git_commit(),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        latency_context=context,
        notes=notes,
    )


def observed(res: DecodeResult) -> AcceptanceObserved | None:
    """Overall rate, conditional per-position rates, EESD histogram and the 0/1 trace."""
    if not res.trace:
        return None
    tried, ok = (
        Counter(res.positions),
        Counter(p for p, t in zip(res.positions, res.trace, strict=True) if t),
    )
    per_pos = tuple(ok[p] / tried[p] for p in range(1, max(tried) + 1) if tried[p])
    return AcceptanceObserved(
        judged=len(res.trace),
        accepted=sum(res.trace),
        per_position=per_pos,
        histogram=tuple(res.histogram),
        trace=tuple(res.trace),
    )


def to_record(
    res: DecodeResult,
    scheme: SchemeConfig,
    engine: str,
    model: ModelSpec,
    threads: int,
    speedups: dict[str, float],
    baseline: str | None,
    alpha: float | None,
    seed: int | None,
    notes: dict | None = None,
) -> RunRecord:
    """``speedups`` maps a baseline name (``ar_1thread``, ``ar_all_cores``, ``generate``) to
    this run's speedup over it, as the measurement loop took it (``bench.Measurement``)."""
    extra = {"flushes_with_discarded_work": res.flushes, **res.extra, **(notes or {})}
    rejections = len(res.trace) - sum(res.trace)
    return RunRecord(
        origin="measured",
        engine=engine,
        scheme=scheme,
        tokens=len(res.tokens),
        time_s=res.time_s,
        acceptance=None if alpha is None else AcceptanceSpec.iid(alpha),
        seed=seed,
        speedups=speedups,
        baseline=baseline if baseline in speedups else None,
        acceptance_observed=observed(res),
        stage_busy_s=tuple(res.stage_busy_s),
        stage_wasted_s=tuple(res.stage_wasted_s),
        flushes=rejections,
        rounds=res.rounds,
        provenance=provenance(model, threads),
        notes=extra,
    )
