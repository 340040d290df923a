"""The results table's columns, and one row per point (result or failure).

Pure Python (no pyarrow), so the worker side stays light; ``store`` maps the column kinds to
a fixed Parquet schema, identical in every part file whatever the spec was.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.run_record import RunRecord
from ppsd_sim.records.serving_record import ServingRecord
from ppsd_sim.serving.simulate import BASE_AR, BASE_PP
from ppsd_sim.sweep.params import PARAMS
from ppsd_sim.sweep.points import ServingInputs, SimInputs

#: (column, kind); kind is float | int | bool | str. Lists are stored as JSON text.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("point_id", "str"),
    ("status", "str"),  # ok | failed
    ("error_type", "str"),
    ("error_field", "str"),
    ("error", "str"),
    *((p.col, "str" if p.kind == "list" else p.kind) for p in PARAMS.values()),
    ("profile_sha256", "str"),
    ("acceptance_sha256", "str"),
    ("seed", "int"),
    # derived from the built config
    ("n_layers", "int"),
    ("n_stages", "int"),
    ("draft_exit_layer", "int"),
    ("stage_boundaries", "str"),
    ("alpha_mean", "float"),
    # results
    ("engine", "str"),  # which engine answered: closed_form | fast | simpy
    ("time_s", "float"),
    ("tokens_per_s", "float"),
    ("speedup", "float"),  # vs AR on the same profile
    ("closed_form_speedup", "float"),
    ("acceptance_rate", "float"),
    ("acceptance_judged", "int"),
    ("acceptance_accepted", "int"),
    ("flushes", "int"),
    ("rounds", "int"),
    ("stage_busy_fraction", "str"),
    ("busy_fraction_max", "float"),
    ("extrapolated", "bool"),
    # serving points (mode: serving); tokens_per_s is their throughput, speedup its ratio
    # over AR at the same load, time_s the span from the first arrival to the last token
    ("requests_done", "int"),
    ("requests_per_s", "float"),
    ("ttft_p50", "float"),
    ("ttft_p99", "float"),
    ("tpot_p50", "float"),
    ("tpot_p90", "float"),
    ("tpot_p99", "float"),
    ("e2e_p50", "float"),
    ("e2e_p99", "float"),
    ("queue_p50", "float"),
    ("mean_batch", "float"),
    ("goodput_rps", "float"),
    ("speedup_tpot", "float"),  # AR's p50 TPOT ÷ this p50 TPOT, same load
    ("speedup_pp_ar", "float"),  # throughput ÷ PP-AR's on the same devices, same load
    ("speedup_pp_ar_tpot", "float"),
    ("pp_ar_baseline", "str"),  # the PP-AR scheme that ran as that baseline
    # how it ran (differs between runs of the same point)
    ("sim_ms", "float"),
    ("worker", "str"),
    ("finished_unix", "float"),
    ("config_json", "str"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
#: columns that describe the run, not the result: excluded when comparing two tables
RUN_COLUMNS = ("sim_ms", "worker", "finished_unix")


def _flat_config(cfg: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in cfg.items():
        param = PARAMS.get(name)
        col = param.col if param else name
        row[col] = json.dumps(value) if isinstance(value, list) else value
    return row


def ok_row(
    point_id: str,
    canonical: str,
    cfg: dict[str, Any],
    inp: SimInputs | ServingInputs,
    result: dict[str, Any],
) -> dict[str, Any]:
    """A finished point: its flattened config, derived shape and results."""
    scheme, acc = inp.scheme, inp.acceptance
    row = {
        "point_id": point_id,
        "status": "ok",
        **_flat_config(cfg),
        "n_layers": inp.profile.n_layers,
        "n_stages": scheme.n_stages,
        "draft_exit_layer": scheme.draft_exit_layer,
        "stage_boundaries": json.dumps(list(scheme.stage_boundaries))
        if scheme.kind in ("ppsd", "pp_ar")
        else None,
        "alpha_mean": acc.mean_alpha if acc is not None else None,
        **result,
        "config_json": canonical,
    }
    return row


def record_result(record: RunRecord) -> dict[str, Any]:
    """The result columns of a simulated RunRecord."""
    return {
        "engine": record.engine,
        "time_s": record.time_s,
        "tokens_per_s": _finite(record.tokens_per_s),
        "speedup": _finite(record.speedup),
        "closed_form_speedup": record.notes.get("closed_form_speedup"),
        **_run_columns(record, record.rounds),
    }


def _run_columns(record: RunRecord | ServingRecord, rounds: int | None) -> dict[str, Any]:
    """The columns both kinds of record fill alike: acceptance seen, flushes, rounds (serving:
    steps), busy fractions, whether costs were extrapolated."""
    obs = record.acceptance_observed
    busy = record.stage_busy_fraction
    return {
        "acceptance_rate": obs.rate if obs is not None and obs.judged else None,
        "acceptance_judged": obs.judged if obs is not None else None,
        "acceptance_accepted": obs.accepted if obs is not None else None,
        "flushes": record.flushes,
        "rounds": rounds,
        "stage_busy_fraction": json.dumps(list(busy)),
        "busy_fraction_max": max(busy) if busy else None,
        "extrapolated": "extrapolated" in record.notes,
    }


def serving_result(record: ServingRecord) -> dict[str, Any]:
    """The result columns of a ServingRecord from ``compare_serving`` (speedups filled)."""
    ar = record.speedups.get(BASE_AR, {})
    pp = record.speedups.get(BASE_PP, {})

    def pct(name: str, q: str) -> float | None:
        summary = getattr(record, name)
        return None if summary is None else float(getattr(summary, q))

    return {
        "engine": record.engine,
        "time_s": record.duration_s,
        "tokens_per_s": _finite(record.throughput_tok_s),
        "speedup": ar.get("throughput"),
        **_run_columns(record, record.steps),
        "requests_done": record.requests,
        "requests_per_s": record.requests_per_s,
        "ttft_p50": pct("ttft", "p50"),
        "ttft_p99": pct("ttft", "p99"),
        "tpot_p50": pct("tpot", "p50"),
        "tpot_p90": pct("tpot", "p90"),
        "tpot_p99": pct("tpot", "p99"),
        "e2e_p50": pct("e2e", "p50"),
        "e2e_p99": pct("e2e", "p99"),
        "queue_p50": pct("queue", "p50"),
        "mean_batch": record.mean_batch,
        "goodput_rps": record.goodput_rps,
        "speedup_tpot": ar.get("tpot_p50"),
        "speedup_pp_ar": pp.get("throughput"),
        "speedup_pp_ar_tpot": pp.get("tpot_p50"),
        "pp_ar_baseline": record.baselines.get(BASE_PP),
    }


def closed_form_result(tokens: int, tokens_per_s: float, speedup: float) -> dict[str, Any]:
    """Result columns when the closed form answered (long-run rates; no sampled statistics)."""
    return {
        "engine": "closed_form",
        "time_s": tokens / tokens_per_s if tokens_per_s > 0 else None,
        "tokens_per_s": _finite(tokens_per_s),
        "speedup": _finite(speedup),
        "closed_form_speedup": _finite(speedup),
    }


def failed_row(
    point_id: str, canonical: str, cfg: dict[str, Any], err: Exception
) -> dict[str, Any]:
    """A point that could not be built or simulated: its config and the reason."""
    return {
        "point_id": point_id,
        "status": "failed",
        "error_type": type(err).__name__,
        "error_field": err.field if isinstance(err, ConfigError) else None,
        "error": str(err) or type(err).__name__,
        **_flat_config(cfg),
        "config_json": canonical,
    }


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None
