"""Write a built Report to disk: the figures, the Markdown twin and the HTML page, all rendered
in memory first and then written all or none (``ppsd_sim.records.io.write_all``), so a crash or
a full disk never leaves a half-written or mixed report behind."""

from __future__ import annotations

import os
from pathlib import Path

from analysis.report_html import render_html
from analysis.report_md import render_markdown
from analysis.report_model import Fig, Report
from ppsd_sim.records.io import check_writable, write_all

FIG_DIR = "figures"


def _figs(report: Report) -> list[Fig]:
    out: list[Fig] = []
    for s in report.sections:
        for it in s.items:
            if isinstance(it, Fig):
                out.append(it)
            elif isinstance(it, tuple):
                out.extend(it)
    return out


def report_files(
    report: Report,
    out_dir: str | os.PathLike[str],
    *,
    markdown: str = "report.md",
    html: str | None = "report.html",
    fig_dir: str = FIG_DIR,
) -> dict[str | os.PathLike[str], str | bytes]:
    """Every file of a rendered report, path → content (the Markdown names its figures as
    ``fig_dir/<key>.png``; ``html=None`` leaves the page out)."""
    out = Path(out_dir)
    figs = _figs(report)
    keys = [f.key for f in figs]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"two figures share a file name: {sorted(k for k in keys if keys.count(k) > 1)}"
        )
    files: dict[str | os.PathLike[str], str | bytes] = {
        out / fig_dir / f"{f.key}.png": f.png for f in figs
    }
    files[out / markdown] = render_markdown(report, fig_dir)
    if html is not None:
        files[out / html] = render_html(report)
    return files


def write_report(report: Report, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Render both formats in memory, check that every file can be written, then write all or
    none; returns (html, markdown) paths."""
    out = Path(out_dir)
    files = report_files(report, out)
    for path in files:
        check_writable(path, "--out")
    write_all(files)
    return out / "report.html", out / "report.md"
