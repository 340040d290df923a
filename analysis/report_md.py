"""Render a Report as Markdown, with figures as PNG files beside it (Markdown viewers do not
reliably show data URIs)."""

from __future__ import annotations

from analysis.report_model import SHORT, TAGS, Fig, Item, Num, Para, Report, Table


def _cell(c: Num | str) -> str:
    if isinstance(c, str):
        text = c
    elif c.value is None and c.label is None:
        text = "—"  # nothing to tag
    else:
        text = f"{c.text()} `{SHORT.get(c.tag, c.tag)}`"
    return text.replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> str:
    lines = [
        "| " + " | ".join(t.columns) + " |",
        "| " + " | ".join("---" for _ in t.columns) + " |",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    if t.caption:
        lines += ["", f"*{t.caption}*"]
    return "\n".join(lines)


def _fig(f: Fig, fig_dir: str) -> str:
    out = f"![{f.alt}]({fig_dir}/{f.key}.png)"
    return out + (f"\n\n*{f.caption}*" if f.caption else "")


def _item(it: Item, fig_dir: str) -> str:
    if isinstance(it, Para):
        return it.text
    if isinstance(it, Table):
        return _table(it)
    if isinstance(it, Fig):
        return _fig(it, fig_dir)
    return "\n\n".join(_fig(f, fig_dir) for f in it)


def render_markdown(report: Report, fig_dir: str = "figures") -> str:
    """The report as Markdown; figures are referenced as ``fig_dir/<key>.png``."""
    marks = ", ".join(f"`{SHORT[t]}` = {t}" for t in TAGS)
    parts = [f"# {report.title}", f"_{report.subtitle}_", f"Tags: {marks}."]
    for s in report.sections:
        parts.append(f"## {s.title}")
        parts += [_item(it, fig_dir) for it in s.items]
    return "\n\n".join(parts) + "\n"
