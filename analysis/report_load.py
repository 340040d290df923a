"""The report's "Serving under load" section: each saved load plan (``ppsd plan --batch/
--users/--rate --out``) as the best configuration per load, the switch-off points with their
α sensitivity, and the two load figures. Every speedup names its baseline."""

from __future__ import annotations

from analysis import figures, figures_load
from analysis.load_plan_record import (
    FAMILY_BASELINES,
    METRIC_LABEL,
    LoadPlan,
    LoadRow,
    baseline_label,
)
from analysis.report_model import Fig, Num, Para, Section, Table


def _tag(r: LoadRow) -> str:
    return "extrapolated" if r.alpha_status == "extrapolated" or r.notes else "predicted"


def _x(v: float | None, tag: str) -> Num:
    return Num(v, tag, "{:.2f}", "×")


def load_section(plans: list[tuple[str, LoadPlan]]) -> Section | None:
    """None when the folder holds no load plan."""
    if not plans:
        return None
    sec = Section("Serving under load", anchor="load")
    for i, (name, lp) in enumerate(plans, 1):
        sec.items.append(
            Para(
                f"Saved load plan {name}: {lp.profile_label} ({lp.profile_source} profile), "
                f"≤ {lp.devices} device(s), α(E) {lp.curve.label()}; {lp.workload}. Every "
                f"number is a serving simulation; ranked by {METRIC_LABEL[lp.metric]}. "
                "Speedups at the same load against: ×AR = AR on one device; ×twin = the "
                "scheme's non-speculative twin (EESD: AR; PPSD: PP-AR on the same stages); "
                "×best≤k = the best AR/TP-AR/PP-AR on at most the same devices."
                + (f" Memory: {lp.memory}." if lp.memory else "")
            )
        )
        rows = []
        for p in lp.points:
            r = p.best()
            t = _tag(r)
            rows.append(
                (
                    p.load.label(),
                    r.scheme.label(),
                    r.layout(),
                    str(r.devices),
                    Num(r.value(lp.metric), t, "{:.4g}"),
                    _x(p.speedup(r, "ar"), t),
                    _x(p.speedup(r, "twin"), t),
                    _x(p.speedup(r, "best_base"), t),
                )
            )
        sec.items.append(
            Table(
                ("load", "best", "layout", "devices", lp.metric, "×AR", "×twin", "×best≤k"),
                tuple(rows),
                "The best configuration at each listed load.",
            )
        )
        offs = []
        for fam, bases in FAMILY_BASELINES.items():
            for base in bases:
                s0 = lp.switch_off(fam, 0.0, base)
                if s0 is None:
                    continue
                lo, hi = (lp.switch_off(fam, d, base) for d in (-0.05, 0.05))
                offs.append(
                    (
                        fam.upper(),
                        baseline_label(fam, base),
                        s0.label(),
                        lo.short() if lo else "—",
                        hi.short() if hi else "—",
                    )
                )
        if offs:
            sec.items.append(
                Table(
                    ("scheme", "against", "switch-off point", "at α − 0.05", "at α + 0.05"),
                    tuple(offs),
                    "Switch-off point: the smallest load above the last one at which some "
                    "configuration of the scheme beats the baseline (bisected between listed "
                    "loads).",
                )
            )
        sec.items.append(
            (
                Fig(
                    f"load_speedup_{i}",
                    figures.png(figures_load.speedup_vs_load(lp)),
                    f"speedup against load, {name}",
                    "Speedup vs load per scheme; vertical lines: switch-off points.",
                ),
                Fig(
                    f"load_latency_{i}",
                    figures.png(figures_load.latency_throughput(lp)),
                    f"latency–throughput, {name}",
                    "TPOT p50 (solid) and p99 (dashed) against requests/s served.",
                ),
            )
        )
    return sec
