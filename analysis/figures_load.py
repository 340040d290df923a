"""The load plan's figures: speedup against load per scheme with the switch-off points marked,
and the latency–throughput curve (p50 and p99 TPOT against requests/s served). Each axis
names the baseline its speedups are against."""

from __future__ import annotations

from matplotlib.figure import Figure

from analysis.load_plan_record import (
    FAMILY_BASELINES,
    METRIC_LABEL,
    LoadPlan,
    LoadPoint,
    baseline_label,
)

KIND_NAMES = {"ar": "AR", "tp_ar": "TP-AR", "pp_ar": "PP-AR", "eesd": "EESD", "ppsd": "PPSD"}
KIND_COLOURS = {
    "ar": "#555555",
    "tp_ar": "#8172B2",
    "pp_ar": "#937860",
    "eesd": "#4C72B0",
    "ppsd": "#C44E52",
}
BASELINE_STYLE = {"twin": "-", "ar": "--", "best_base": ":"}
LOAD_AXIS = {
    "batch": "batch size B (B sequences always in flight)",
    "users": "closed-loop users",
    "rate": "request rate (requests/s, Poisson)",
}


def best_speedup(p: LoadPoint, kind: str, baseline: str) -> float | None:
    """The best speedup over ``baseline`` of any simulated ``kind`` configuration at ``p``."""
    vals = [v for r in p.rows if r.kind == kind and (v := p.speedup(r, baseline)) is not None]
    return max(vals) if vals else None


def _series(lp: LoadPlan, kind: str, baseline: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for p in lp.points:
        v = best_speedup(p, kind, baseline)
        if v is not None:
            xs.append(float(p.load.value))
            ys.append(v)
    return xs, ys


def speedup_vs_load(lp: LoadPlan) -> Figure:
    """Left: every scheme's best over AR on one device (the k-device baselines included).
    Right: each speculative scheme over each of its baselines, the switch-off points as
    vertical lines (α(E) ± 0.05 as a shaded band where known)."""
    fig = Figure(figsize=(11.0, 4.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for kind in ("tp_ar", "pp_ar", "eesd", "ppsd"):
        xs, ys = _series(lp, kind, "ar")
        if xs:
            left.plot(xs, ys, "o-", color=KIND_COLOURS[kind], label=KIND_NAMES[kind])
    left.set_title("best of each scheme over AR on one device", fontsize=10)
    for fam, bases in FAMILY_BASELINES.items():
        for base in bases:
            xs, ys = _series(lp, fam, base)
            if not xs:
                continue
            label = f"{KIND_NAMES[fam]} over {baseline_label(fam, base)}"
            right.plot(xs, ys, "o", ls=BASELINE_STYLE[base], color=KIND_COLOURS[fam], label=label)
            off = lp.switch_off(fam, 0.0, base)
            if off is not None and off.switch_off is not None:
                right.axvline(off.switch_off, color=KIND_COLOURS[fam], ls=BASELINE_STYLE[base])
                right.annotate(
                    f"switch-off {off.short()}",
                    (off.switch_off, 1.0),
                    xytext=(3, 6),
                    textcoords="offset points",
                    rotation=90,
                    fontsize=7,
                    color=KIND_COLOURS[fam],
                )
                band = [lp.switch_off(fam, d, base) for d in (-0.05, 0.05)]
                ends = [b.switch_off for b in band if b is not None and b.switch_off is not None]
                if len(ends) == 2 and ends[0] != ends[1]:
                    right.axvspan(min(ends), max(ends), color=KIND_COLOURS[fam], alpha=0.08)
    right.set_title("speculation over its baselines (switch-off: last crossing of 1)", fontsize=10)
    for ax in (left, right):
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(LOAD_AXIS[lp.load_kind])
        ax.set_ylabel(f"speedup on {METRIC_LABEL[lp.metric]} (×)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(
        f"{lp.profile_label} ({lp.profile_source}), ≤ {lp.devices} devices; simulated", fontsize=10
    )
    return fig


def latency_throughput(lp: LoadPlan) -> Figure:
    """p50 (solid) and p99 (dashed) TPOT against requests/s served by the best configuration
    of each scheme at each load."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for kind in ("ar", "tp_ar", "pp_ar", "eesd", "ppsd"):
        pts = []
        for p in lp.points:
            if p.has((kind,)):
                r = p.best((kind,))
                if r.tpot_p50 is not None and r.tpot_p99 is not None:
                    pts.append((r.requests_per_s, r.tpot_p50 * 1e3, r.tpot_p99 * 1e3))
        if not pts:
            continue
        pts.sort()
        xs = [x for x, _, _ in pts]
        c = KIND_COLOURS[kind]
        ax.plot(xs, [y for _, y, _ in pts], "o-", color=c, label=f"{KIND_NAMES[kind]} p50")
        ax.plot(xs, [y for _, _, y in pts], "x--", color=c, label=f"{KIND_NAMES[kind]} p99")
    ax.set_xlabel("requests/s served")
    ax.set_ylabel("time per output token (ms)")
    ax.set_title(
        f"latency–throughput, best of each scheme per load\n{lp.profile_label}; simulated",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    return fig
