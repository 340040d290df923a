"""From per-request timestamps to the serving metrics (formulas in GLOSSARY.md, "Serving").

The metrics depend on the timestamps alone (arrival, admission, first token, finish, lengths),
so a measured serving run computes them with the same code as a simulated one
(``metrics_from_times``). Time averages (mean batch, requests in system, Little's law) are
exact sums of each request's interval overlapping the window.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.serving_record import LatencySummary, RequestTimes, ServingSettings


def occupancy(start: np.ndarray, end: np.ndarray, a: float, b: float) -> float:
    """Mean over [a, b] of the number of intervals [start_i, end_i) that hold the moment."""
    if b <= a:
        return 0.0
    return float((np.minimum(end, b) - np.maximum(start, a)).clip(min=0.0).sum() / (b - a))


def summarise(
    arrival: np.ndarray,
    admitted: np.ndarray,
    first: np.ndarray,
    finish: np.ndarray,
    prompt: np.ndarray,
    output: np.ndarray,
    settings: ServingSettings,
    keep_requests: bool = False,
) -> dict[str, Any]:
    """The ServingRecord fields that come from the timestamps (seconds; one entry per
    request, every request finished)."""
    t0, t_end = float(arrival.min()), float(finish.max())
    duration = t_end - t0
    ttft = first - arrival
    queue = admitted - arrival
    e2e = finish - arrival
    multi = output > 1
    tpot = (finish[multi] - first[multi]) / (output[multi] - 1)
    n = len(arrival)
    total = int(output.sum())
    fields: dict[str, Any] = {
        "requests": n,
        "output_tokens": total,
        "prompt_tokens": int(prompt.sum()),
        "duration_s": duration,
        "throughput_tok_s": total / duration if duration > 0 else 0.0,
        "requests_per_s": n / duration if duration > 0 else 0.0,
        "ttft": LatencySummary.of(ttft),
        "tpot": LatencySummary.of(tpot),
        "e2e": LatencySummary.of(e2e),
        "queue": LatencySummary.of(queue),
    }
    if settings.ttft_slo_s is not None or settings.tpot_slo_s is not None:
        ok = np.ones(n, dtype=bool)
        if settings.ttft_slo_s is not None:
            ok &= ttft <= settings.ttft_slo_s
        if settings.tpot_slo_s is not None:
            per_tok = np.zeros(n)
            per_tok[multi] = tpot
            ok &= per_tok <= settings.tpot_slo_s
        fields["goodput_rps"] = int(ok.sum()) / duration if duration > 0 else 0.0
    running = occupancy(admitted, finish, t0, t_end)
    fields["mean_batch"] = running
    fields["mean_queue"] = max(0.0, occupancy(arrival, finish, t0, t_end) - running)
    t1 = float(arrival.max())
    if n > 1 and t1 > t0:
        lam = (n - 1) / (t1 - t0)
        w = float(e2e.mean())
        big_l = occupancy(arrival, finish, t0, t1)
        fields["little"] = {
            "window_s": t1 - t0,
            "mean_in_system": big_l,
            "arrival_rate": lam,
            "mean_time_in_system": w,
            "relative_error": abs(big_l - lam * w) / (lam * w) if lam * w > 0 else 0.0,
        }
    if keep_requests:
        fields["per_request"] = RequestTimes(
            tuple(float(x) for x in arrival),
            tuple(float(x) for x in admitted),
            tuple(float(x) for x in first),
            tuple(float(x) for x in finish),
            tuple(int(x) for x in prompt),
            tuple(int(x) for x in output),
        )
    return fields


def metrics_from_times(
    times: RequestTimes, settings: ServingSettings, keep_requests: bool = True
) -> dict[str, Any]:
    """The metric fields of a ServingRecord from per-request timestamps, e.g. those a
    measured serving run logged: checks that every request arrived ≤ was admitted ≤ got its
    first token ≤ finished (``per_request.<column>[i]`` names a bad one)."""
    cols = {n: np.asarray(getattr(times, n), dtype=float) for n in _TIMES}
    if cols["arrival"].size == 0:
        raise ConfigError("per_request.arrival", "holds no request")
    for name, arr in cols.items():
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ConfigError(f"per_request.{name}[{bad[0]}]", "must be a finite time")
    for before, after in itertools.pairwise(_TIMES):
        bad = np.flatnonzero(cols[after] < cols[before])
        if bad.size:
            i = int(bad[0])
            raise ConfigError(
                f"per_request.{after}[{i}]",
                f"must be >= its {before} ({cols[before][i]:g}), got {cols[after][i]:g}",
            )
    lengths = {}
    for name in ("prompt_tokens", "output_tokens"):
        arr = np.asarray(getattr(times, name), dtype=np.int64)
        bad = np.flatnonzero(arr < 1)
        if bad.size:
            raise ConfigError(f"per_request.{name}[{bad[0]}]", "must be >= 1")
        lengths[name] = arr
    return summarise(
        cols["arrival"],
        cols["admitted"],
        cols["first"],
        cols["finish"],
        lengths["prompt_tokens"],
        lengths["output_tokens"],
        settings,
        keep_requests,
    )


_TIMES = ("arrival", "admitted", "first", "finish")
