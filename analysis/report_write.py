"""Write a built Report to disk: figures first, then the Markdown twin, then the HTML page,
each file atomically, so a crash never leaves a half-written report behind."""

from __future__ import annotations

from pathlib import Path

from analysis.report_html import render_html
from analysis.report_md import render_markdown
from analysis.report_model import Fig, Report
from ppsd_sim.records.io import atomic_write_text

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


def _atomic_bytes(path: Path, data: bytes) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report: Report, out_dir: str | Path) -> tuple[Path, Path]:
    """Render both formats in memory, then write; returns (html path, markdown path)."""
    out = Path(out_dir)
    page = render_html(report)
    md = render_markdown(report, FIG_DIR)
    for f in _figs(report):
        _atomic_bytes(out / FIG_DIR / f"{f.key}.png", f.png)
    md_path = atomic_write_text(out / "report.md", md)
    html_path = atomic_write_text(out / "report.html", page)
    return html_path, md_path
