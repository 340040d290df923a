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
from ppsd_sim.records.sampling import GREEDY, SamplingSpec


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
    """Realised acceptance (overall rate, conditional per-position rates, EESD histogram, the
    0/1 trace) and expected acceptance (mean Σ min(p, q) over the judged drafts, overall and
    per position). A greedy run has no ``res.expected``: its p and q are one-hot, so each
    draft's Σ min(p, q) is its 0/1 outcome and expected equals realised."""
    if not res.trace:
        return None
    expected = res.expected or [float(t) for t in res.trace]
    tried, ok, mass = Counter(res.positions), Counter(), Counter()
    for p, t, e in zip(res.positions, res.trace, expected, strict=True):
        ok[p] += t
        mass[p] += e
    span = range(1, max(tried) + 1)
    return AcceptanceObserved(
        judged=len(res.trace),
        accepted=sum(res.trace),
        per_position=tuple(ok[p] / tried[p] for p in span if tried[p]),
        histogram=tuple(res.histogram),
        trace=tuple(res.trace),
        expected=min(1.0, sum(expected) / len(expected)),
        expected_per_position=tuple(min(1.0, mass[p] / tried[p]) for p in span if tried[p]),
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
    sampling: SamplingSpec = GREEDY,
) -> RunRecord:
    """``speedups`` maps a baseline name (``ar_1thread``, ``ar_all_cores``, ``generate``) to
    this run's speedup over it, as the measurement loop took it (``bench.Measurement``);
    ``sampling``: how the run (and its baselines) chose tokens."""
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
        sampling=sampling,
    )
