"""The end-of-sweep summary: counts, the best points and the failures with their reasons,
read back from the store (so a resumed sweep reports on all its points, not just this run's)."""

from __future__ import annotations

import os
from collections import Counter

from ppsd_sim.sweep.params import PARAMS
from ppsd_sim.sweep.runner import RunCounts
from ppsd_sim.sweep.spec import SweepSpec
from ppsd_sim.sweep.store import read_table

RANK_BY = ("speedup", "tokens_per_s")


def summarise(
    spec: SweepSpec,
    out: str | os.PathLike[str],
    counts: RunCounts,
    *,
    top: int = 5,
    rank_by: str = "speedup",
) -> str:
    """A few lines of plain text for the terminal."""
    axes = [PARAMS[n].col for n in spec.varying]
    cols = [
        "point_id",
        "status",
        "error_field",
        "error",
        "engine",
        "speedup",
        "tokens_per_s",
        "mode",
        "speedup_pp_ar",
        "tpot_p50",
    ]
    table = read_table(out, [*cols, *(a for a in axes if a not in cols)])
    wanted = {p.id for p in spec.points}
    rows = [r for r in table.to_pylist() if r["point_id"] in wanted]
    ok = [r for r in rows if r["status"] == "ok"]
    bad = [r for r in rows if r["status"] == "failed"]
    rate = counts.done + counts.failed
    lines = [
        f"done: {counts.done:,} now, failed: {counts.failed:,} now, skipped (already done): "
        f"{counts.skipped:,}; in {counts.elapsed_s:.1f} s"
        + (f" ({rate / counts.elapsed_s:,.0f} points/s)" if rate and counts.elapsed_s > 0 else ""),
        f"table: {len(ok):,} ok + {len(bad):,} failed of {len(spec.points):,} points -> {out}",
    ]
    missing = len(spec.points) - len(rows)
    if missing:
        lines.append(f"missing: {missing:,} points (rerun the same command to finish them)")
    ranked = sorted(
        (r for r in ok if r[rank_by] is not None), key=lambda r: r[rank_by], reverse=True
    )
    if ranked:
        serving = any(r["mode"] == "serving" for r in ranked[:top])
        lines.append(
            f"best {min(top, len(ranked))} by {rank_by}"
            + (" (serving points: speedup over AR at the same load)" if serving else "")
            + ":"
        )
        for r in ranked[:top]:
            where = ", ".join(f"{a}={r[a]}" for a in axes if r.get(a) is not None)
            extra = ""
            if r["mode"] == "serving":
                pp = r["speedup_pp_ar"]
                extra = (f"  x{pp:.3f} PP-AR" if pp is not None else "") + (
                    f"  TPOT p50 {r['tpot_p50'] * 1e3:.2f} ms" if r["tpot_p50"] is not None else ""
                )
            lines.append(
                f"  {r['speedup']:.3f}x  {r['tokens_per_s']:,.1f} tok/s{extra}  "
                f"[{r['engine']}]  {where}"
            )
    if bad:
        reasons = Counter(r["error"] for r in bad)
        example: dict[str, dict] = {}
        for r in bad:
            example.setdefault(r["error"], r)
        lines.append(f"failures ({len(bad):,}), by reason:")
        for msg, n in reasons.most_common(top):
            r = example[msg]
            where = ", ".join(f"{a}={r[a]}" for a in axes if r.get(a) is not None)
            lines.append(f"  {n:,} x {msg}" + (f"  (e.g. {where})" if where else ""))
        if len(reasons) > top:
            lines.append(f"  … {len(reasons) - top} more reasons (see the error column)")
    return "\n".join(lines)
