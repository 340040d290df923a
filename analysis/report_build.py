"""Build the report's content from a folder of records (or the embedded example).

Reads records and runs the simulator; never measures. Anything that cannot be used is named in
the report's "Skipped" section instead of stopping the build.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path

import numpy as np

from analysis import figures, grids, reproduction
from analysis.curves import AcceptanceCurve, illustrative_curve, record_curve
from analysis.planner import Plan, exit_of, plan
from analysis.records_folder import RecordSet, Skipped, read_folder
from analysis.report_accept import acceptance_section
from analysis.report_compare import (
    calibration_section,
    comparison_figure,
    comparison_table,
    summary_text,
)
from analysis.report_load import load_section
from analysis.report_model import TAGS, Cell, Fig, Num, Para, Report, Section, Table
from analysis.report_temperature import temperature_section
from ppsd_sim.errors import ConfigError
from ppsd_sim.examples import example_profile
from ppsd_sim.predict import predict_run
from ppsd_sim.records import acceptance_pick
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.calibration_report import Comparison, ComparisonSummary
from ppsd_sim.records.decoding import GREEDY
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.run_record import RunRecord
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.simulate import simulate

SOURCE_TAG = {
    "measured": "measured",
    "synthesised": "synthesised",
    "hand": "hand",
    "example": "example",
}
CURVE_TAG = {"measured": "measured", "given": "hand", "illustrative": "example"}


def _ms(x: float, tag: str) -> Num:
    return Num(x * 1e3, tag, "{:.3f}", " ms")


def _x(x: float | None, tag: str) -> Num:
    return Num(x, tag, "{:.2f}", "×")


def _alpha(x: float | None, tag: str) -> Num:
    return Num(x, tag, "{:.3f}")


def profile_label(name: str, p: HardwareProfile) -> str:
    pv = p.provenance
    what = pv.model or name
    where = f" on {pv.device}" if pv.device else ""
    return f"{what}{where} ({pv.source} profile, L = {p.n_layers})"


def _primary(rs: RecordSet) -> tuple[str, HardwareProfile]:
    """The profile the figures describe: a measured one if any, else the first given, else
    a profile carried by a run, else the embedded example."""
    for name, p in rs.profiles:
        if p.provenance.source == "measured":
            return name, p
    if rs.profiles:
        return rs.profiles[0]
    for name, r in rs.runs:
        if r.profile is not None:
            return f"{name} (profile)", r.profile
    return "embedded example", example_profile()


def _stage_names(scheme: SchemeConfig) -> list[str]:
    return [f"stage {s + 1}: layers {a}–{b - 1}" for s, (a, b) in enumerate(scheme.stage_ranges())]


# ---- sections ------------------------------------------------------------------------------------
def _about(rs: RecordSet, folder: Path | None, curve: AcceptanceCurve, pname: str) -> Section:
    sec = Section("About this report", anchor="about")
    if folder is None:
        src = (
            "Built from the embedded example (illustrative latencies for a 32-layer 7B-class model; "
            "not a measurement). Run `ppsd report RECORDS_FOLDER` to report on your own records."
        )
    else:
        src = (
            f"Built from {rs.files} record file(s) in `{folder}`: {len(rs.profiles)} profile(s), "
            f"{len(rs.runs)} run(s), {len(rs.timelines)} timeline(s), {len(rs.plans)} plan(s), "
            f"{len(rs.calibrations)} calibration report(s), "
            f"{len(rs.curves)} acceptance curve(s), {len(rs.acceptance)} acceptance record(s); "
            f"{len(rs.skipped)} file(s) skipped (listed at the end)."
        )
    sec.items.append(Para(src))
    sec.items.append(
        Para(
            f"Figures and the capacity plan describe the profile `{pname}`. Acceptance by exit "
            f"layer: {curve.label()}" + (f" — {curve.note}." if curve.note else ".")
        )
    )
    sec.items.append(
        Table(
            ("tag", "meaning"),
            tuple((Num(None, t, label=t), m) for t, m in TAGS.items()),
            "Every number carries one of these tags.",
        )
    )
    return sec


def _profiles(rs: RecordSet, primary: tuple[str, HardwareProfile]) -> Section:
    sec = Section("Profiles and provenance", anchor="profiles")
    items = list(rs.profiles) if rs.profiles else [primary]
    rows = []
    for name, p in items:
        pv, tag = p.provenance, SOURCE_TAG[p.provenance.source]
        threads = "" if pv.threads is None else f"{pv.threads} thread(s)"
        rows.append(
            (
                name,
                Num(None, tag, label=pv.source),
                pv.device or "—",
                pv.model or "—",
                pv.dtype or "—",
                threads or "—",
                pv.date or "—",
                pv.latency_context,
                str(p.n_layers),
                _ms(p.ar_token_time(), tag),
                _ms(p.layers_time(0, p.n_layers) / p.n_layers, tag),
                _ms(p.final_head.median, tag),
                Num(p.hop.median * 1e6, tag, "{:.1f}", " µs"),
                Num(p.tick.median * 1e6, tag, "{:.1f}", " µs"),
            )
        )
    sec.items.append(
        Table(
            (
                "file",
                "source",
                "device",
                "model",
                "dtype",
                "threads",
                "date",
                "latency context",
                "L",
                "AR token T",
                "mean layer",
                "final head",
                "hop",
                "tick",
            ),
            tuple(rows),
            "T = embedding + all layers + final head + tick (one autoregressive token).",
        )
    )
    return sec


def _heatmaps(p: HardwareProfile, label: str, gamma: int, max_stages: int) -> Section:
    sec = Section("Where each scheme beats autoregressive decoding", anchor="heatmaps")
    alphas = np.linspace(0.0, 1.0, 41)
    ge = grids.eesd_grid(p, gamma, alphas)
    gp = grids.ppsd_grid(p, max_stages, alphas)
    sec.items.append(
        Para(
            "Predicted speedup over AR on the same profile (closed forms, i.i.d. acceptance, one "
            f"device per PPSD stage). Red cells are slower than AR; the black line is 1.0×. "
            f"EESD uses γ = {gamma} drafts per round; PPSD uses the best of 2…{max_stages} "
            "stages with stage 1 ending at the exit layer and the rest split by the planner."
        )
    )
    sec.items.append(
        (
            Fig("heatmap_eesd", figures.png(figures.heatmap(ge, label)), "EESD speedup heatmap"),
            Fig("heatmap_ppsd", figures.png(figures.heatmap(gp, label)), "PPSD speedup heatmap"),
        )
    )
    lose = float(np.mean(ge.speedup < 1.0))
    sec.items.append(
        Para(
            f"EESD is slower than AR in {lose:.0%} of this grid; PPSD in "
            f"{float(np.mean(gp.speedup < 1.0)):.0%} (tag: predicted)."
        )
    )
    return sec


def _break_even(p: HardwareProfile, label: str, max_stages: int) -> Section:
    sec = Section("Break-even acceptance by exit position", anchor="break-even")
    stages = tuple(sorted({2, max(2, min(max_stages, p.n_layers))}))
    curves = grids.break_even_curves(p, (1, 2, 4, 8), stages)
    exits = list(range(1, p.n_layers))
    sec.items.append(
        Fig(
            "break_even",
            figures.png(figures.break_even(exits, curves, label)),
            "break-even acceptance versus exit layer",
            "The α at which each scheme matches AR (predicted). Below the line the scheme loses; "
            "a missing line means it never pays at that exit.",
        )
    )
    picks = sorted({max(1, p.n_layers // 8), max(1, p.n_layers // 4), max(1, p.n_layers // 2)})
    rows: tuple[tuple[Cell, ...], ...] = tuple(
        (f"E = {e}", *[_alpha(curves[k][e - 1], "predicted") for k in curves]) for e in picks
    )
    sec.items.append(Table(("exit", *curves.keys()), rows, "Break-even α at a few exits."))
    return sec


def _timeline(
    p: HardwareProfile, curve: AcceptanceCurve, rs: RecordSet, max_stages: int, seed: int
) -> Section:
    sec = Section("PPSD stage timeline", anchor="timeline")
    k = max(2, min(max_stages, p.n_layers))
    scheme = SchemeConfig.ppsd_even(p.n_layers, k)
    alpha = curve.alpha(exit_of(scheme))
    sim = simulate(
        p, scheme, AcceptanceSpec.iid(alpha), tokens=16, seed=seed, engine="simpy", timeline=True
    )
    panels = [
        (
            f"simulated (predicted): {scheme.label()}, α = {alpha:.2f}",
            sim.spans or [],
            _stage_names(scheme),
        )
    ]
    measured = [t for t in rs.timelines if t.origin == "measured"]
    for t in measured[:1]:
        n = max(s.stage for s in t.spans) + 1
        panels.append(
            (f"measured: {t.title} ({t.name})", list(t.spans), [f"stage {i + 1}" for i in range(n)])
        )
    sec.items.append(
        Fig(
            "timeline",
            figures.png(figures.gantt(panels)),
            "PPSD stage timeline",
            "Each bar is one token's work on one stage; orange work was flushed after a "
            "rejected draft, red is the KV crop.",
        )
    )
    sec.items.append(Para("Panels: " + "; ".join(f"{t[0]}" for t in panels) + "."))
    if not measured:
        sec.items.append(
            Para(
                "No measured timeline in the records: put a Chrome trace written by the real "
                "runner in the folder to see it beside the simulation."
            )
        )
    return sec


def _runs(rs: RecordSet) -> Section:
    sec = Section("Runs", anchor="runs")
    rows = []
    for name, r in rs.runs:
        tag = "measured" if r.origin == "measured" else "predicted"
        rows.append(
            (
                name,
                Num(None, tag, label=r.origin),
                r.engine,
                r.scheme.label(),
                r.acceptance.label() if r.acceptance else "—",
                str(r.tokens),
                Num(r.tokens_per_s, tag, "{:.1f}"),
                _x(r.speedup, tag),
                r.baseline or "—",
                _alpha(r.acceptance_observed.rate if r.acceptance_observed else None, tag),
            )
        )
    sec.items.append(
        Table(
            (
                "file",
                "origin",
                "engine",
                "scheme",
                "acceptance",
                "tokens",
                "tokens/s",
                "speedup",
                "baseline",
                "observed α",
            ),
            tuple(rows),
        )
    )
    return sec


def _run_profile(r: RunRecord, rs: RecordSet) -> tuple[HardwareProfile | None, str]:
    """The profile a measured run is predicted from: its own, else a measured profile in the
    folder from the same model, device and dtype (named, since the run did not carry it)."""
    if r.profile is not None:
        return r.profile, ""
    pv = r.provenance
    if pv is None or not pv.model:
        return None, ""
    for name, p in rs.profiles:
        q = p.provenance
        if q.source == "measured" and (q.model, q.device, q.dtype) == (
            pv.model,
            pv.device,
            pv.dtype,
        ):
            return p, f"profile from {name}"
    return None, ""


def _compare_run(name: str, r: RunRecord, rs: RecordSet, sim_tokens: int, seed: int) -> Comparison:
    """A measured run against ``ppsd_sim.predict.predict_run`` (and its trace replayed)."""
    if r.speedup is None:
        raise ConfigError("baseline", "the run names no baseline speedup to compare with")
    prof, source = _run_profile(r, rs)
    pred = predict_run(r, profile=prof, tokens=sim_tokens, seed=seed)
    obs = r.acceptance_observed
    replay = (
        predict_run(r, profile=prof, replay=True, tokens=sim_tokens, seed=seed)
        if obs is not None and obs.trace and r.scheme.kind != "ar"
        else None
    )
    return Comparison(
        label=f"{name}: {r.scheme.label()}",
        scheme=r.scheme.kind,
        alpha=r.acceptance.alpha if r.acceptance is not None else None,
        measured=r.speedup,
        measured_lo=None,
        measured_hi=None,
        predicted=pred.speedup,
        replayed=None if replay is None else replay.speedup,
        observed_alpha=obs.rate if obs is not None and obs.judged else None,
        flags=(*((source,) if source else ()), *pred.flags),
        baseline=r.baseline,
    )


def _calibration(rs: RecordSet, sim_tokens: int, seed: int) -> Section | None:
    measured = [(n, r) for n, r in rs.runs if r.origin == "measured"]
    if not measured:
        return None
    sec = Section("Predicted vs measured", anchor="calibration")
    rows, problems = [], []
    for name, r in measured:
        try:
            rows.append(_compare_run(name, r, rs, sim_tokens, seed))
        except ConfigError as err:
            problems.append(f"{name}: cannot predict ({err})")
    if rows:
        sec.items.append(Para(summary_text(ComparisonSummary.of(rows))))
        sec.items.append(
            comparison_table(
                rows,
                "Prediction: the simulator on the run's own profile and acceptance, AR on that "
                "profile as its baseline (`ppsd_sim.predict`).",
            )
        )
        sec.items.append(
            comparison_figure(rows, "pred_vs_meas", "Measured runs: predicted vs measured")
        )
    for msg in problems:
        sec.items.append(Para(msg))
    return sec


def _plan_section(
    p: HardwareProfile,
    curve: AcceptanceCurve,
    rs: RecordSet,
    devices: int,
    sim_tokens: int,
    seed: int,
) -> tuple[Section, Plan]:
    sec = Section("Capacity plan", anchor="plan")
    pl = plan(p, curve, devices, top=6, sim_tokens=sim_tokens, seed=seed)
    ctag = CURVE_TAG[curve.source]
    sec.items.append(
        Para(
            f"The fastest configurations on at most {devices} device(s) for this profile and "
            f"α(E) ({pl.evaluated} configurations searched; PPSD splits by exact min–max DP). "
            f"Predicted by the closed forms, confirmed by simulating {sim_tokens} tokens. "
            f"AR: {pl.ar_tokens_per_s:.1f} tokens/s."
        )
    )
    sec.items.append(plan_table(pl, ctag))
    best = pl.best_per_scheme
    sec.items.append(
        Table(
            ("scheme", "best configuration", "tokens/s", "speedup", "break-even α"),
            tuple(
                (
                    k.upper(),
                    c.scheme.label(),
                    Num(c.tokens_per_s, c.status, "{:.1f}"),
                    _x(c.speedup, c.status),
                    _alpha(c.break_even_alpha, c.status),
                )
                for k, c in best.items()
            ),
            "Best of each scheme.",
        )
    )
    for name, saved in rs.plans:
        t = plan_table(saved, CURVE_TAG[saved.curve.source])
        goal = (
            f"at least {saved.min_tokens_per_s:g} tokens/s on the fewest devices"
            if saved.min_tokens_per_s is not None
            else f"fastest on at most {saved.devices} device(s)"
        )
        sec.items.append(
            Table(
                t.columns,
                t.rows,
                f"Saved plan {name}: {goal}, {saved.profile_source} profile, "
                f"{saved.curve.label()}, AR {saved.ar_tokens_per_s:.1f} tokens/s. {t.caption}",
            )
        )
    return sec, pl


def plan_table(pl: Plan, curve_tag: str) -> Table:
    """The ranked candidates of a plan as a report table."""
    rows = []
    for i, c in enumerate(pl.candidates, 1):
        s = c.scheme
        layout = (
            "stages end at " + ",".join(map(str, s.stage_boundaries))
            if s.kind == "ppsd"
            else (f"γ = {s.gamma}" if s.kind == "eesd" else "—")
        )
        atag = "extrapolated" if c.alpha_status == "extrapolated" else curve_tag
        rows.append(
            (
                str(i),
                s.label(),
                layout,
                str(c.devices),
                _alpha(c.alpha, atag),
                Num(c.tokens_per_s, c.status, "{:.1f}"),
                _x(c.speedup, c.status),
                _x(c.simulated_speedup, c.status),
                _alpha(c.break_even_alpha, c.status),
                _x(c.speedup_alpha_lo, c.status),
                _x(c.speedup_alpha_hi, c.status),
            )
        )
    return Table(
        (
            "#",
            "configuration",
            "layout",
            "devices",
            "α(E)",
            "tokens/s",
            "speedup",
            "simulated",
            "break-even α",
            "at α − 0.05",
            "at α + 0.05",
        ),
        tuple(rows),
        pl.message or "Sensitivity columns: predicted speedup if α is 0.05 lower / higher.",
    )


def _synth_check(rs: RecordSet) -> Section:
    """Synthesised profiles against measurements: every measured profile whose model names a
    shipped shape and whose device is a CPU, plus the notes' CPU prototype as a reference."""
    from analysis.devices import list_models
    from analysis.synth import compare_profiles, synthesise_named

    sec = Section("Synthesised vs measured profiles", anchor="synth")
    sec.items.append(
        Para(
            "The roofline synthesiser (`analysis.synth`) estimates profiles for hardware we "
            "cannot reach. Here it is held against what has been measured. Ratio = synthesised / "
            "measured; a GPU comparison needs a profile measured on a GPU."
        )
    )
    pairs = [
        (
            "cpu-bench@cpu-2core-epyc vs PPSD_NOTES.md prototype (published costs)",
            synthesise_named("cpu-bench@cpu-2core-epyc"),
            reproduction.prototype_profile(),
            "published",
        )
    ]
    for name, p in rs.profiles:
        model = (p.provenance.model or "").lower()
        if (
            p.provenance.source == "measured"
            and model in list_models()
            and "cpu" in (p.provenance.device or "").lower()
        ):
            syn = synthesise_named(f"{model}@cpu-2core-epyc")
            pairs.append((f"{model}@cpu-2core-epyc vs {name}", syn, p, "measured"))
    for title, syn, meas, mtag in pairs:
        try:
            rows = compare_profiles(syn, meas)
        except ConfigError as err:
            sec.items.append(Para(f"{title}: cannot compare ({err})"))
            continue
        sec.items.append(
            Table(
                ("component", "synthesised", "measured", "synthesised / measured"),
                tuple(
                    (
                        r.component,
                        Num(r.synthesised_s * 1e6, "synthesised", "{:.1f}", " µs"),
                        Num(r.measured_s * 1e6, mtag, "{:.1f}", " µs"),
                        Num(r.ratio, "synthesised", "{:.2f}"),
                    )
                    for r in rows
                ),
                title + ". The CPU description's memory bandwidth is an assumption, so agreement "
                "on the layer time is partly by construction; heads and crops show the real error.",
            )
        )
    return sec


def _reproduction() -> Section:
    sec = Section("Reproduction: published numbers vs the model", anchor="reproduction")
    sec.items.append(
        Para(
            "Public numbers collected in PPSD_NOTES.md beside what the closed forms give for the "
            "same inputs. 'cannot say' means the publication does not give the inputs the model "
            "needs; the assumptions used instead are listed."
        )
    )
    rows = tuple(
        (
            r.claim,
            r.source,
            Num(None, "published", label=r.published),
            r.inputs,
            Num(None, "predicted", label=r.model),
            r.verdict,
            r.detail,
        )
        for r in reproduction.rows()
    )
    sec.items.append(
        Table(("claim", "source", "published", "model inputs", "model", "verdict", "why"), rows)
    )
    return sec


def _skipped(rs: RecordSet) -> Section:
    sec = Section("Skipped records", anchor="skipped")
    if not rs.skipped:
        sec.items.append(Para("No record was skipped."))
    else:
        sec.items.append(
            Table(
                ("file", "why it was skipped"),
                tuple((s.name, s.reason) for s in rs.skipped),
                "These files were not used; the rest of the report is unaffected.",
            )
        )
    return sec


def _measured_curve(rs: RecordSet, n_layers: int) -> AcceptanceCurve:
    """Without an AcceptanceCurve in the folder: the α(E) of the first acceptance record of a
    model as deep as the profile (its only head or the shared one, greedy if measured, else
    its only setting), else the illustrative curve."""
    for name, rec in rs.acceptance:
        if rec.model["n_layers"] != n_layers:
            continue
        try:
            head = acceptance_pick.head_of(rec, None, "records", name)
            dec = acceptance_pick.decoding_of(rec, head, GREEDY, "records", name)
        except ConfigError:  # several sampled settings and no greedy one: none is implied
            continue
        c = record_curve(rec, head, dec)
        return dataclasses.replace(c, note=f"{c.note} (from {name})")
    return illustrative_curve(n_layers)


def build_report(
    folder: str | Path | None = None,
    *,
    devices: int = 4,
    gamma: int = 4,
    max_stages: int = 4,
    sim_tokens: int = 20_000,
    seed: int = 0,
    extra_sections: list[Section] | None = None,
) -> Report:
    """Everything the renderers need. ``folder=None`` uses the embedded example."""
    root = None if folder is None else Path(folder)
    rs = read_folder(root) if root is not None else RecordSet()
    pname, prof = _primary(rs)
    label = profile_label(pname, prof)
    curve = rs.curves[0][1] if rs.curves else _measured_curve(rs, prof.n_layers)
    if curve.exits[-1] >= prof.n_layers:
        rs.skipped.append(
            Skipped(
                rs.curves[0][0],
                f"acceptance curve has exits beyond the profile's {prof.n_layers} layers",
            )
        )
        curve = illustrative_curve(prof.n_layers)
    sections = [
        _about(rs, root, curve, pname),
        _profiles(rs, (pname, prof)),
        *[sec for sec in (acceptance_section(rs.acceptance),) if sec is not None],
        _heatmaps(prof, label, gamma, max_stages),
        _break_even(prof, label, max_stages),
        _timeline(prof, curve, rs, max_stages, seed),
    ]
    if rs.runs:
        sections.append(_runs(rs))
    cal = _calibration(rs, sim_tokens, seed)
    if cal is not None:
        sections.append(cal)
    for i, (name, rep) in enumerate(rs.calibrations):
        sections.append(calibration_section(rep, name, f"calibration_{i + 1}"))
    plan_sec, pl = _plan_section(prof, curve, rs, devices, sim_tokens, seed)
    sections.append(plan_sec)
    temp = temperature_section(rs.acceptance, prof, pl.best_per_scheme)
    if temp is not None:
        sections.append(temp)
    load = load_section(rs.load_plans)
    if load is not None:
        sections.append(load)
    sections.append(_synth_check(rs))
    sections.extend(extra_sections or [])
    sections.append(_reproduction())
    sections.append(_skipped(rs))
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Report(
        "ppsd report",
        f"{label} — generated {now}",
        sections,
        [(s.name, s.reason) for s in rs.skipped],
        now,
    )
