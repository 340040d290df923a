"""The report's "Measured acceptance" section: each AcceptanceRecord in the folder (``ppsd accept
--out``) as α(E) per head and decoding setting — a table (α ± standard error, judged drafts,
burstiness ρ, τ at the record's γ) and a figure — naming the model, prompt set and settings."""

from __future__ import annotations

from analysis import figures
from analysis.report_model import Fig, Num, Para, Section, Table
from ppsd_sim.records.acceptance_pick import describe
from ppsd_sim.records.acceptance_record import AcceptanceRecord, ExitAcceptance


def _f(v: float | None, fmt: str = "{:.3f}") -> Num:
    return Num(v, "measured", fmt)


def _heads(rec: AcceptanceRecord) -> str:
    names = {"shared": "the shared LM head", "trained": "trained early-exit heads"}
    text = " and ".join(names[h] for h in rec.heads_measured())
    h = rec.heads or {}
    if h.get("dir"):
        text += f" (from {h['dir']}" + (f", trained on {h['corpus']})" if h.get("corpus") else ")")
    return text


def _row(e: ExitAcceptance, gammas: tuple[int, ...]) -> tuple[Num | str, ...]:
    sampled = not e.decoding.greedy
    return (
        str(e.exit),
        e.head,
        e.decoding.label(),
        _f(e.alpha),
        _f(e.alpha_se),
        _f(e.expected_alpha if sampled else None),
        Num(e.judged, "measured", "{:d}"),
        _f(e.burstiness),
        *(_f(e.gamma_stats(g).tau, "{:.2f}") for g in gammas),
    )


def _series(rec: AcceptanceRecord) -> list[tuple[str, str, list[int], list[float], list]]:
    """One line per head and decoding: the realised α for greedy rows, the expected α for
    sampled ones (what ``AcceptanceRecord.curve`` gives the planner)."""
    out = []
    for dec in rec.decodings():
        for head in rec.heads_measured():
            rows = sorted(
                (e for e in rec.exits if e.head == head and e.decoding == dec),
                key=lambda e: e.exit,
            )
            pts = [(e.exit, e.expected_alpha, e.expected_se) for e in rows]
            pts = [p for p in pts if p[1] is not None]
            if pts:
                what = "" if dec.greedy else " (expected α)"
                out.append(
                    (
                        f"{head} head, {dec.label()}{what}",
                        head,
                        [p[0] for p in pts],
                        [float(p[1]) for p in pts if p[1] is not None],
                        [p[2] for p in pts],
                    )
                )
    return out


def acceptance_section(records: list[tuple[str, AcceptanceRecord]]) -> Section | None:
    """None when the folder holds no acceptance record."""
    if not records:
        return None
    sec = Section("Measured acceptance", anchor="acceptance")
    for i, (name, rec) in enumerate(records, 1):
        m = rec.model
        decs = ", ".join(d.label() for d in rec.decodings())
        sec.items.append(
            Para(
                f"Acceptance record {name} (`ppsd accept`): {describe(rec)}; "
                f"model type {m.get('model_type') or '?'}; "
                f"decoding: {decs}; measured with {_heads(rec)}. Along the model's own "
                "continuations, α = accepted ÷ judged drafts per exit (± standard error, "
                "prompts as clusters), ρ = lag-1 correlation of the 0/1 outcomes, τ = mean "
                "accepted drafts per EESD round of γ (bonus excluded); sampled settings also "
                "give the expected α, mean Σ min(p, q) (definitions in GLOSSARY.md)."
                + (f" Note: {rec.notes}." if rec.notes else "")
            )
        )
        cols = ("exit", "head", "decoding", "α", "± se", "E[α]", "judged", "ρ")
        sec.items.append(
            Table(
                (*cols, *(f"τ γ={g}" for g in rec.gammas)),
                tuple(_row(e, rec.gammas) for e in sorted(rec.exits, key=lambda e: e.exit)),
                f"α(E) per head of {name}; `ppsd plan --accept {name}` plans with it, "
                f"`ppsd sim --acceptance-trace {name}@EXIT[:HEAD]` replays one exit.",
            )
        )
        series = _series(rec)
        if series:
            sec.items.append(
                Fig(
                    f"acceptance_{i}",
                    figures.png(
                        figures.acceptance_by_exit(
                            series, f"Measured α(E): {m.get('name') or name}"
                        )
                    ),
                    f"measured α by exit layer, {name}",
                    "α per exit layer, one line per head and decoding setting; bars: ± one "
                    "standard error.",
                )
            )
    return sec
