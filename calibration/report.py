"""The calibration report: Markdown + JSON + a predicted-vs-measured plot, written atomically."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from calibration.compare import Row, Summary
from ppsd_sim.records import HardwareProfile, atomic_write_text


def plot_png(rows: list[Row]) -> bytes:
    """Predicted (and replayed) vs measured speedup, with the y = x line and ±5% band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5.5), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [r.measured for r in rows]
    lo, hi = (
        min(xs + [r.predicted for r in rows]) * 0.9,
        max(xs + [r.predicted for r in rows]) * 1.1,
    )
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="prediction = measurement")
    ax.fill_between(
        [lo, hi], [lo * 0.95, hi * 0.95], [lo * 1.05, hi * 1.05], color="0.9", label="±5%"
    )
    for kind, marker, color in (
        ("ar", "s", "0.4"),
        ("eesd", "o", "tab:red"),
        ("ppsd", "^", "tab:blue"),
    ):
        sel = [r for r in rows if r.scheme == kind]
        if not sel:
            continue
        ax.errorbar(
            [r.measured for r in sel],
            [r.predicted for r in sel],
            xerr=[
                [r.measured - r.measured_lo for r in sel],
                [r.measured_hi - r.measured for r in sel],
            ],
            fmt=marker,
            color=color,
            label=f"{kind.upper()} (i.i.d. α)",
            capsize=2,
        )
        rep = [r for r in sel if r.replayed is not None]
        if rep:
            ax.scatter(
                [r.measured for r in rep],
                [r.replayed for r in rep],
                marker=marker,
                facecolors="none",
                edgecolors=color,
                label=f"{kind.upper()} (trace replayed)",
            )
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured speedup over AR (1 thread), median of repeats")
    ax.set_ylabel("predicted speedup (simulator, from the profile)")
    ax.set_title("Calibration: predicted vs measured")
    ax.legend(fontsize=8, loc="upper left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def markdown(
    rows: list[Row],
    summary: Summary,
    profile: HardwareProfile,
    info: dict[str, Any],
    findings: list[str],
) -> str:
    p = profile.provenance
    lines = [
        f"# Calibration: {info['model']} on {info['hardware']}",
        "",
        f"Measured {info['date']} with `{info['command']}`; {info['tokens']} tokens per run, "
        f"{info['repeats']} repeats (+1 warm-up), speedup = AR with one thread ÷ scheme, AR measured "
        "beside every group of cells. Predictions come from the profile below alone (simulator, "
        f"{info['sim_tokens']} tokens, i.i.d. α) and, in 'replayed', from the accept/reject trace "
        "the measured run saw.",
        "",
        f"Profile: {profile.n_layers} layers, AR token {profile.ar_token_time() * 1e3:.3f} ms, hop "
        f"{profile.hop.median * 1e6:.0f} µs, tick {profile.tick.median * 1e6:.0f} µs, crop "
        f"{profile.flush.median * 1e6:.0f} µs, concurrency slowdown {profile.concurrency_slowdown:.3f}; "
        f"provenance: {p.device}, {p.threads} thread(s), torch {p.torch}, transformers {p.transformers}, "
        f"{p.dtype}, commit {p.commit}, latency context {p.latency_context}.",
        "",
        f"**Median |error| {summary.median_abs_error:.1%}, worst {summary.worst_abs_error:.1%} "
        f"({summary.worst_cell}) over {summary.cells} cells**"
        + (
            f"; with the trace replayed: median {summary.median_abs_replay_error:.1%}, worst "
            f"{summary.worst_abs_replay_error:.1%}"
            if summary.median_abs_replay_error is not None
            else ""
        )
        + f". Cells flagged outside the profiled range: {summary.flagged}.",
        "",
        "| cell | measured (min–max) | predicted | error | replayed | error | observed α | flags |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rep = "-" if r.replayed is None else f"{r.replayed:.3f}"
        rep_err = "-" if r.replay_error is None else f"{r.replay_error:+.1%}"
        obs = "-" if r.observed_alpha is None else f"{r.observed_alpha:.3f}"
        lines.append(
            f"| {r.label} | {r.measured:.3f} ({r.measured_lo:.3f}–{r.measured_hi:.3f}) | "
            f"{r.predicted:.3f} | {r.error:+.1%} | {rep} | {rep_err} | {obs} | {'; '.join(r.flags)} |"
        )
    lines += ["", "![predicted vs measured](predicted_vs_measured.png)", "", "## Findings", ""]
    lines += [f"- {f}" for f in findings] or ["- none recorded"]
    return "\n".join(lines) + "\n"


def write_report(
    out: Path,
    rows: list[Row],
    summary: Summary,
    profile: HardwareProfile,
    info: dict[str, Any],
    findings: list[str],
) -> dict[str, Path]:
    """Build everything in memory first, then write each file atomically."""
    out = Path(out)
    png = plot_png(rows)
    doc = {
        "record": "CalibrationReport",
        "schema_version": 1,
        "info": info,
        "summary": summary.to_dict(),
        "rows": [r.to_dict() for r in rows],
        "findings": findings,
    }
    text_json = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    text_md = markdown(rows, summary, profile, info, findings)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".predicted_vs_measured.png.tmp"
    tmp.write_bytes(png)
    tmp.replace(out / "predicted_vs_measured.png")
    paths = {
        "profile": atomic_write_text(
            out / "profile.json", json.dumps(profile.to_dict(), indent=1) + "\n"
        ),
        "json": atomic_write_text(out / "calibration.json", text_json),
        "markdown": atomic_write_text(out / "calibration.md", text_md),
        "plot": out / "predicted_vs_measured.png",
    }
    return paths
