"""From per-request timestamps to the serving metrics (formulas in GLOSSARY.md, "Serving")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ppsd_sim.records.serving_record import LatencySummary, RequestTimes, ServingSettings
from ppsd_sim.serving.requests import Realised
from ppsd_sim.serving.scheduler import Scheduler


def time_average(times: list[float], values: list[int], a: float, b: float) -> float:
    """Mean over [a, b] of the step function that takes ``values[i]`` from ``times[i]`` on
    (0 before the first change)."""
    if b <= a:
        return 0.0
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    # value in force on each interval [t_i, t_{i+1}), clipped to the window
    lo = np.clip(t, a, b)
    hi = np.clip(np.append(t[1:], b), a, b)
    return float(((hi - lo) * v).sum() / (b - a))


def summarise(
    sched: Scheduler, reqs: Realised, settings: ServingSettings, keep_requests: bool
) -> dict[str, Any]:
    """The ServingRecord fields that come from the timestamps."""
    arrival, admitted, first, finish = sched.arrival, sched.admitted, sched.first, sched.finish
    out_tokens = reqs.output
    t0, t_end = float(arrival.min()), float(finish.max())
    duration = t_end - t0
    ttft = first - arrival
    queue = admitted - arrival
    e2e = finish - arrival
    multi = out_tokens > 1
    tpot = (finish[multi] - first[multi]) / (out_tokens[multi] - 1)
    n = reqs.n
    total = int(out_tokens.sum())
    fields: dict[str, Any] = {
        "requests": n,
        "output_tokens": total,
        "prompt_tokens": int(reqs.prompt.sum()),
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
    in_sys = time_average(sched.log_t, sched.log_sys, t0, t_end)
    running = time_average(sched.log_t, sched.log_run, t0, t_end)
    fields["mean_batch"] = running
    fields["mean_queue"] = max(0.0, in_sys - running)
    t1 = float(arrival.max())
    if n > 1 and t1 > t0:
        lam = (n - 1) / (t1 - t0)
        w = float(e2e.mean())
        big_l = time_average(sched.log_t, sched.log_sys, t0, t1)
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
            tuple(int(x) for x in reqs.prompt),
            tuple(int(x) for x in out_tokens),
        )
    return fields
