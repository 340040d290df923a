"""Matplotlib figures for reports, drawn on explicit Figure objects (no pyplot global state)
with the Agg backend, returned as PNG bytes so HTML can embed them and Markdown can link them."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from analysis.grids import Grid
from ppsd_sim.records.calibration_report import Comparison
from ppsd_sim.records.span import Span

DPI = 110
CATEGORY_COLOURS = {
    "compute": "#4C72B0",
    "draft": "#4C72B0",
    "verify": "#55A868",
    "ee_head": "#8172B2",
    "final_head": "#55A868",
    "wasted": "#E8A33D",
    "crop": "#C44E52",
}
CATEGORY_LABELS = {
    "compute": "useful work",
    "wasted": "flushed (wrong branch)",
    "crop": "KV crop after a rejection",
    "ee_head": "early-exit head",
    "final_head": "final head",
    "draft": "draft",
    "verify": "verify",
}


def png(fig: Figure) -> bytes:
    """Render a Figure to PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def heatmap(grid: Grid, profile_label: str) -> Figure:
    """Speedup over α × exit layer, red below 1 (slower than AR), blue above, with the 1.0
    contour drawn so the losing region is obvious."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    s = grid.speedup
    vmax = max(1.05, float(np.nanmax(s)))
    vmin = min(0.95, float(np.nanmin(s)))
    norm = TwoSlopeNorm(vcenter=1.0, vmin=vmin, vmax=vmax)
    mesh = ax.pcolormesh(grid.exits, grid.alphas, s, cmap="RdBu", norm=norm, shading="nearest")
    cb = fig.colorbar(mesh, ax=ax)
    cb.set_label("speedup over AR (×)")
    if np.nanmin(s) < 1.0 < np.nanmax(s):
        cs = ax.contour(grid.exits, grid.alphas, s, levels=[1.0], colors="black", linewidths=1.6)
        ax.clabel(cs, fmt={1.0: "1.0× (break-even)"}, fontsize=8)
    else:
        side = "above" if np.nanmin(s) >= 1.0 else "below"
        ax.text(
            0.02, 0.02, f"everywhere {side} 1.0×", transform=ax.transAxes, fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )  # fmt: skip
    ax.set_xlabel("exit layer E (layers the drafter runs)")
    ax.set_ylabel("acceptance α (i.i.d., per token)")
    ax.set_title(f"{grid.title}: predicted speedup\n{profile_label}", fontsize=10)
    return fig


def break_even(exits: Sequence[int], curves: dict[str, list[float | None]], label: str) -> Figure:
    """Break-even α against exit layer, one line per scheme variant; gaps where the scheme
    never reaches AR speed."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    styles = ["-", "--", "-.", ":"]
    for i, (name, ys) in enumerate(curves.items()):
        y = np.array([np.nan if v is None else v for v in ys], dtype=float)
        colour = "#C44E52" if name.startswith("EESD") else "#4C72B0"
        ax.plot(exits, y, styles[i % len(styles)], color=colour, label=name, lw=1.8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("exit layer E")
    ax.set_ylabel("break-even α (speedup = 1)")
    ax.set_title(f"Acceptance needed to beat AR\n{label}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def gantt(
    panels: Sequence[tuple[str, Sequence[Span], Sequence[str]]], window_s: float | None = None
) -> Figure:
    """Stage timelines side by side: one panel per (title, spans, stage names), time in ms."""
    width = 10.0 if len(panels) == 1 else 6.6 * len(panels)
    fig = Figure(figsize=(width, 0.55 * max(len(p[2]) for p in panels) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    used: set[str] = set()
    for ax, (title, spans, names) in zip(axes, panels, strict=True):
        t0 = min((s.start for s in spans), default=0.0)
        end = t0 + window_s if window_s else max((s.end for s in spans), default=1.0)
        for sp in spans:
            if sp.start >= end:
                continue
            colour = CATEGORY_COLOURS.get(sp.category, "#999999")
            used.add(sp.category if sp.category in CATEGORY_COLOURS else "other")
            ax.broken_barh(
                [((sp.start - t0) * 1e3, (min(sp.end, end) - sp.start) * 1e3)],
                (sp.stage - 0.38, 0.76),
                facecolors=colour,
                edgecolors="white",
                linewidth=0.4,
            )
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, (end - t0) * 1e3)
        ax.set_xlabel("time (ms)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(color=CATEGORY_COLOURS[c], label=CATEGORY_LABELS.get(c, c))
        for c in CATEGORY_COLOURS
        if c in used
    ]
    if "other" in used:
        handles.append(Patch(color="#999999", label="other"))
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False
    )
    return fig


SCHEME_STYLE = {"ar": ("s", "0.4"), "eesd": ("o", "#C44E52"), "ppsd": ("^", "#4C72B0")}
ANNOTATE_AT_MOST = 8  # label each point only while labels stay readable


def predicted_vs_measured(
    rows: Sequence[Comparison], title: str = "Predicted vs measured speedup"
) -> Figure:
    """The one predicted-vs-measured plot: predicted (y) against measured (x) speedup, so a
    point above the y = x line is an optimistic prediction; ±5 % and ±10 % bands; error bars
    span the measured repeats; hollow markers are predictions with the measured acceptance
    trace replayed."""
    if not rows:
        raise ValueError("predicted_vs_measured needs at least one comparison")
    fig = Figure(figsize=(6.0, 5.4), layout="constrained")
    ax = fig.add_subplot()
    vals = [v for r in rows for v in (r.measured, r.predicted, r.replayed, r.measured_lo) if v]
    vals += [r.measured_hi for r in rows if r.measured_hi]
    lo, hi = min(vals) * 0.9, max(vals) * 1.1
    line = np.array([lo, hi])
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.93", label="±10 %")
    ax.fill_between(line, line * 0.95, line * 1.05, color="0.84", label="±5 %")
    ax.plot(line, line, color="black", lw=1, label="prediction = measurement")
    for kind, (marker, colour) in SCHEME_STYLE.items():
        sel = [r for r in rows if r.scheme == kind]
        if not sel:
            continue
        xerr = np.array(
            [
                [r.measured - (r.measured_lo or r.measured) for r in sel],
                [(r.measured_hi or r.measured) - r.measured for r in sel],
            ]
        )
        ax.errorbar(
            [r.measured for r in sel],
            [r.predicted for r in sel],
            xerr=xerr if xerr.any() else None,
            fmt=marker,
            color=colour,
            capsize=2,
            label="AR" if kind == "ar" else f"{kind.upper()} (acceptance as asked)",
            zorder=3,
        )
        rep = [(r.measured, r.replayed) for r in sel if r.replayed is not None]
        if rep:
            ax.scatter(
                [m for m, _ in rep],
                [p for _, p in rep],
                marker=marker,
                facecolors="none",
                edgecolors=colour,
                label=f"{kind.upper()} (trace replayed)",
                zorder=3,
            )
    if len(rows) <= ANNOTATE_AT_MOST:
        for r in rows:
            ax.annotate(
                r.label, (r.measured, r.predicted), fontsize=7, xytext=(3, 3),
                textcoords="offset points",
            )  # fmt: skip
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured speedup (×, median of repeats)")
    ax.set_ylabel("predicted speedup (×, simulator from the profile)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


HEAD_COLOURS = {"shared": "#4C72B0", "trained": "#C44E52"}


def acceptance_by_exit(
    series: Sequence[tuple[str, str, Sequence[int], Sequence[float], Sequence[float | None]]],
    title: str,
) -> Figure:
    """Measured α against exit layer: one line per (label, head, exits, α, standard error),
    coloured by head (shared LM head or trained heads), ± one standard error as bars."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    styles = ["-", "--", "-.", ":"]
    for i, (label, head, exits, alphas, ses) in enumerate(series):
        err = [0.0 if s is None else s for s in ses]
        ax.errorbar(
            list(exits),
            list(alphas),
            yerr=err if any(err) else None,
            fmt="o" + styles[i % len(styles)],
            color=HEAD_COLOURS.get(head, "0.4"),
            capsize=2,
            lw=1.6,
            label=label,
        )
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("exit layer E (layers the drafter runs)")
    ax.set_ylabel("α per token (sampled settings: expected α)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def speedup_by_temperature(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str
) -> Figure:
    """Predicted speedup over AR against sampling temperature: one line per (label, T, speedup)
    series, AR's 1× dashed."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    styles = ["-", "--", "-.", ":"]
    for i, (label, temps, speedups) in enumerate(series):
        ax.plot(list(temps), list(speedups), "o" + styles[i % len(styles)], lw=1.6, label=label)
    ax.axhline(1.0, color="0.3", ls="--", lw=1.0)
    ax.set_xlabel("sampling temperature T (0 = greedy)")
    ax.set_ylabel("predicted speedup over AR (same profile)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig
