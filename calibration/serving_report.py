"""The serving calibration on disk: ``serving.json`` (the ServingCalibration record),
``serving.md`` (its tables) and the ``profile.json`` every prediction came from; rendered in
memory, then written all or none."""

from __future__ import annotations

import os
from pathlib import Path

from calibration.serving import TARGET_MEDIAN, TARGET_WORST
from ppsd_sim.records import check_writable, check_writable_dir, write_all
from ppsd_sim.records.io import dumps
from ppsd_sim.records.serving_calibration import ServingCalibration, ServingCheck

JSON_NAME = "serving.json"
MARKDOWN_NAME = "serving.md"
PROFILE_NAME = "profile.json"
_METRIC_TEXT = {
    "tokens_s": "throughput (output tokens/s)",
    "tpot_p50_s": "p50 TPOT (ms)",
    "speedup": "throughput speedup over batched AR at the same batch (paired by repeat)",
}


def check_outputs(out: str | os.PathLike[str], field: str = "--out") -> Path:
    """Refuse a folder the report cannot be written into, before anything is measured."""
    folder = check_writable_dir(out, field)
    for name in (JSON_NAME, MARKDOWN_NAME, PROFILE_NAME):
        check_writable(folder / name, field)
    return folder


def _value(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    if metric == "speedup":
        return f"{v:.3f}x"
    return f"{v * 1e3:.2f}" if metric == "tpot_p50_s" else f"{v:.1f}"


def _err(e: float | None) -> str:
    return "-" if e is None else f"{e:+.1%}"


def _verdict(median: float, worst: float) -> str:
    met = median <= TARGET_MEDIAN and worst <= TARGET_WORST
    return (
        f"median |error| {median:.1%}, worst {worst:.1%}: target (median <= "
        f"{TARGET_MEDIAN:.0%}, worst <= {TARGET_WORST:.0%}) " + ("met" if met else "NOT met")
    )


def summary_lines(rep: ServingCalibration) -> list[str]:
    """One line per metric: median and worst |error| and whether the issue's target is met."""
    out = []
    for m in rep.metrics:
        s = rep.summary(m)
        line = (
            f"{_METRIC_TEXT[m]} over {s.cells} cells: "
            + _verdict(s.median_abs_error, s.worst_abs_error)
            + f" (worst {s.worst_cell})"
        )
        if s.median_abs_replay_error is not None:
            line += f"; with measured traces replayed median {s.median_abs_replay_error:.1%}"
        out.append(line)
    return out


def _table(metric: str, rows: list[ServingCheck]) -> list[str]:
    out = [
        f"### {_METRIC_TEXT[metric]}",
        "",
        "| cell | requests | accepted | measured (median) | range | predicted | error "
        "| replayed | error |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        acc = "-" if r.observed_alpha is None else f"{r.observed_alpha:.3f}"
        out.append(
            f"| {r.label} | {r.requests} | {acc} | {_value(metric, r.measured)} | "
            f"{_value(metric, r.measured_lo)}–{_value(metric, r.measured_hi)} | "
            f"{_value(metric, r.predicted)} | {_err(r.error)} | "
            f"{_value(metric, r.replayed)} | {_err(r.replay_error)} |"
        )
    return [*out, ""]


def render_markdown(rep: ServingCalibration) -> str:
    i = rep.info
    lines = [
        f"# Serving calibration: {i.model}",
        "",
        f"Hardware class `{i.hardware}`, {i.date}; each request {i.tokens} output tokens, "
        f"{i.repeats} timed repeats per cell (one warm-up excluded), batched AR timed before "
        f"and after each EESD, PP-AR and PPSD repeat. Predictions: the serving simulator from `{PROFILE_NAME}` "
        f"alone, on the same requests (prompt lengths, all waiting at t = 0, the same maximum "
        f"batch), at the acceptance each run measured (i.i.d., mean of {i.sim_tokens} simulator "
        "seeds), and with every request's measured accept/reject trace replayed. Errors are "
        "predicted ÷ measured − 1 (GLOSSARY: signed error); AR's rows count (absolute figures, "
        "not speedups). The speedup rows divide EESD's, PP-AR's and PPSD's throughput by batched AR's "
        "timed right before and after it in the same repeat, so the machine's speed drift cancels there; the absolute "
        "figures carry it (10-20 % over minutes on a shared VM).",
        "",
        f"Command: `{i.command}`" if i.command else "",
        "",
        "## Summary",
        "",
        *[f"- {x}" for x in summary_lines(rep)],
        "",
        "## Cells",
        "",
    ]
    for m in rep.metrics:
        lines += _table(m, [r for r in rep.rows if r.metric == m])
    if rep.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in rep.notes], ""]
    return "\n".join(lines)


def write_report(out: str | os.PathLike[str], rep: ServingCalibration) -> dict[str, Path]:
    """Render everything in memory, then write all the files or none."""
    folder = check_outputs(out)
    paths = {"json": folder / JSON_NAME, "markdown": folder / MARKDOWN_NAME}
    files: dict[str | os.PathLike[str], str | bytes] = {
        paths["json"]: dumps(rep),
        paths["markdown"]: render_markdown(rep),
    }
    if rep.profile is not None:
        paths["profile"] = folder / PROFILE_NAME
        files[paths["profile"]] = dumps(rep.profile)
    write_all(files)
    return paths
