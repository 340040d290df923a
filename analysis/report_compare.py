"""Predicted vs measured as report content: one table, one summary line and one figure for any
list of ``Comparison`` rows, and the calibration report's items built from them. ``ppsd report``
and ``ppsd calibrate run`` (its ``calibration.md``) both render these, so the two show the same
numbers in the same shape."""

from __future__ import annotations

from collections.abc import Sequence

from analysis import figures
from analysis.report_model import Fig, Item, Num, Para, Report, Section, Table
from ppsd_sim.records.calibration_report import CalibrationReport, Comparison, ComparisonSummary

CALIBRATION_FIGURE = "predicted_vs_measured"


def _tag(r: Comparison) -> str:
    return "extrapolated" if r.flags else "predicted"


def _measured(r: Comparison) -> Num:
    if r.measured_lo is None or r.measured_hi is None:
        return Num(r.measured, "measured", "{:.3f}")
    return Num(
        r.measured,
        "measured",
        label=f"{r.measured:.3f} ({r.measured_lo:.3f}–{r.measured_hi:.3f})",
    )


def comparison_table(rows: Sequence[Comparison], caption: str = "") -> Table:
    """One row per comparison; a 'baseline' column when any row names its baseline."""
    with_base = any(r.baseline for r in rows)
    out = []
    for r in rows:
        tag = _tag(r)
        out.append(
            (
                r.label,
                _measured(r),
                *((r.baseline or "—",) if with_base else ()),
                Num(r.predicted, tag, "{:.3f}"),
                Num(r.error, tag, "{:+.1%}"),
                Num(r.replayed, tag, "{:.3f}"),
                Num(r.replay_error, tag, "{:+.1%}"),
                Num(r.observed_alpha, "measured", "{:.3f}"),
                "; ".join(r.flags) or "—",
            )
        )
    cols = (
        "cell",
        "measured (min–max)",
        *(("measured baseline",) if with_base else ()),
        "predicted",
        "error",
        "replayed",
        "replay error",
        "observed α",
        "flags",
    )
    note = (
        "Error = predicted ÷ measured − 1 (positive: the model is optimistic). 'replayed': the "
        "simulator with the accept/reject trace the measured run saw."
    )
    return Table(cols, tuple(out), f"{caption} {note}".strip())


def summary_text(s: ComparisonSummary) -> str:
    replay = (
        f"; with the trace replayed: median {s.median_abs_replay_error:.1%}, worst "
        f"{s.worst_abs_replay_error:.1%}"
        if s.median_abs_replay_error is not None and s.worst_abs_replay_error is not None
        else ""
    )
    return (
        f"Median |error| {s.median_abs_error:.1%}, worst {s.worst_abs_error:.1%} "
        f"({s.worst_cell}) over {s.cells} cell(s){replay}. Cells flagged outside the profiled "
        f"range: {s.flagged}."
    )


def comparison_figure(rows: Sequence[Comparison], key: str, title: str) -> Fig:
    return Fig(
        key,
        figures.png(figures.predicted_vs_measured(rows, title)),
        "predicted vs measured",
        "Above the diagonal the model is optimistic; bands are ±5 % and ±10 %.",
    )


def calibration_items(rep: CalibrationReport, fig_key: str = CALIBRATION_FIGURE) -> list[Item]:
    """How it was measured, the profile, the summary, the table, the figure and the findings."""
    i = rep.info
    items: list[Item] = [
        Para(
            f"Measured {i.date} with `{i.command or 'ppsd calibrate run'}`; {i.tokens} tokens per "
            f"run, {i.repeats} repeat(s) (+1 warm-up), speedup = AR with one thread ÷ scheme, AR "
            "measured beside every group of cells. Predictions come from the profile alone "
            f"(simulator, {i.sim_tokens} tokens, i.i.d. α as asked) and, in 'replayed', from the "
            "accept/reject trace the measured run saw."
            + (f" Transport: {i.transport}." if i.transport else "")
            + (" Quick grid." if i.quick else "")
        )
    ]
    if rep.profile is not None:
        p, pv = rep.profile, rep.profile.provenance
        items.append(
            Para(
                f"Profile: {p.n_layers} layers, AR token {p.ar_token_time() * 1e3:.3f} ms, hop "
                f"{p.hop.median * 1e6:.0f} µs, tick {p.tick.median * 1e6:.0f} µs, crop "
                f"{p.flush.median * 1e6:.0f} µs, concurrency slowdown "
                f"{p.concurrency_slowdown:.3f}; provenance: {pv.device}, {pv.threads} thread(s), "
                f"torch {pv.torch}, transformers {pv.transformers}, {pv.dtype}, commit "
                f"{pv.commit}, latency context {pv.latency_context}."
            )
        )
    if i.extra:
        items.append(Para("Also recorded: " + "; ".join(f"{k} = {v}" for k, v in i.extra.items())))
    items += [
        Para(summary_text(rep.summary)),
        comparison_table(rep.rows),
        comparison_figure(rep.rows, fig_key, f"Calibration: {i.model} on {i.hardware}"),
        Para("Findings:" if rep.findings else "Findings: none recorded."),
        *(Para(f"- {f}") for f in rep.findings),
    ]
    return items


def calibration_section(rep: CalibrationReport, name: str, fig_key: str) -> Section:
    """A calibration report as one section of ``ppsd report``."""
    sec = Section(f"Calibration: {rep.info.model} on {rep.info.hardware}", anchor=fig_key)
    sec.items.append(Para(f"From `{name}`."))
    sec.items += calibration_items(rep, fig_key)
    return sec


def calibration_document(rep: CalibrationReport) -> Report:
    """``calibration.md`` as a Report (rendered by ``analysis.report_md``)."""
    title = f"Calibration: {rep.info.model} on {rep.info.hardware}"
    sec = Section("Predicted vs measured", calibration_items(rep), anchor="calibration")
    return Report(title, f"measured {rep.info.date}", [sec], [], rep.info.date)
