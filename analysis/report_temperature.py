"""The report's "Speedup against temperature": the capacity plan's best EESD and PPSD
configurations predicted at the α(E) that each decoding setting of an acceptance record measured
(``ppsd accept --temperatures``), so a reader sees how the chosen configuration's speedup moves
as sampling gets hotter. Speedups are the closed forms' against AR on the same profile; the
profile holds no cost of warping p and q, which the sampled calibration cells measure
(``ppsd calibrate run --drafter early-exit --temperature 1``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from analysis import figures
from analysis.curves import record_curve
from analysis.plan_record import Candidate
from analysis.report_model import Fig, Num, Para, Section, Table
from ppsd_sim import analytic
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile
from ppsd_sim.records import acceptance_pick as pick
from ppsd_sim.records.acceptance_record import AcceptanceRecord
from ppsd_sim.records.decoding import DecodingSettings

SCHEMES = ("eesd", "ppsd")


def _order(d: DecodingSettings) -> tuple[float, int, float]:
    return (d.top_p, d.top_k or 0, d.temperature)


def _family(d: DecodingSettings) -> str:
    """The line a setting belongs to in the figure: its truncation (top-p, top-k)."""
    parts = [f"top-p {d.top_p:g}"] if d.top_p < 1.0 else []
    parts += [f"top-k {d.top_k}"] if d.top_k is not None else []
    return ", ".join(parts) or "no truncation"


def speedup_by_decoding(
    rec: AcceptanceRecord,
    head: str,
    profile: HardwareProfile,
    configs: Sequence[Candidate],
) -> list[tuple[DecodingSettings, list[tuple[float, float]]]]:
    """Per decoding setting of ``rec`` (greedy first): (α at the configuration's exit, predicted
    speedup over AR decoded the same way, with the profile's sampling costs where it has them)
    for each configuration."""
    out = []
    for dec in sorted(rec.decodings(), key=_order):
        try:
            curve = record_curve(rec, head, dec)
        except ConfigError:  # this head was not measured at this setting
            continue
        row = []
        for c in configs:
            e = c.scheme.draft_exit_layer
            a = curve.alpha(e) if e is not None else 1.0
            row.append((a, analytic.speedup(profile, c.scheme, a, dec)))
        out.append((dec, row))
    return out


def temperature_section(
    records: Sequence[tuple[str, AcceptanceRecord]],
    profile: HardwareProfile,
    best: Mapping[str, Candidate],
) -> Section | None:
    """None unless an acceptance record as deep as the profile measured a sampled setting."""
    configs = [best[k] for k in SCHEMES if k in best]
    for name, rec in records:
        if rec.model.get("n_layers") != profile.n_layers or not configs:
            continue
        if all(d.greedy for d in rec.decodings()):
            continue
        head = pick.head_of(rec, None, "records", name)
        rows = speedup_by_decoding(rec, head, profile, configs)
        if len(rows) < 2:
            continue
        return _section(name, rec, head, configs, rows)
    return None


def _section(
    name: str,
    rec: AcceptanceRecord,
    head: str,
    configs: Sequence[Candidate],
    rows: list[tuple[DecodingSettings, list[tuple[float, float]]]],
) -> Section:
    sec = Section("Speedup against temperature", anchor="temperature")
    labels = [c.scheme.label() for c in configs]
    sec.items.append(
        Para(
            f"The plan's best configuration of each scheme ({', '.join(labels)}), predicted at the "
            f"α its exit measured at each decoding setting of {name} ({head} head; "
            f"{pick.describe(rec)}; sampled settings: the expected α). Speedup over AR on the "
            "same profile, by the closed forms; the profile holds no cost of warping the "
            "full model's and the exit's distributions, which sampled calibration cells measure."
        )
    )
    cols = ["decoding"]
    for lab in labels:
        cols += [f"α {lab}", f"speedup {lab}"]
    table_rows = []
    for dec, vals in rows:
        cells: list[Num | str] = [dec.label()]
        for a, s in vals:
            cells += [Num(a, "measured", "{:.3f}"), Num(s, "predicted", "{:.2f}", "×")]
        table_rows.append(tuple(cells))
    sec.items.append(
        Table(tuple(cols), tuple(table_rows), "α measured, speedup predicted (vs AR).")
    )
    series = []
    for i, lab in enumerate(labels):
        for fam in dict.fromkeys(_family(d) for d, _ in rows if not d.greedy):
            pts = [(d.temperature, v[i][1]) for d, v in rows if d.greedy or _family(d) == fam]
            series.append((f"{lab}, {fam}", [t for t, _ in pts], [s for _, s in pts]))
    sec.items.append(
        Fig(
            "speedup_by_temperature",
            figures.png(
                figures.speedup_by_temperature(series, f"Speedup against temperature: {name}")
            ),
            "predicted speedup of the best configurations against sampling temperature",
            "T = 0 is greedy decoding; one line per configuration and truncation setting; "
            "the dashed line is AR (1×).",
        )
    )
    return sec
