"""Render a Report as one self-contained HTML page: CSS inline, figures as PNG data URIs, no
scripts and no network access needed to view it."""

from __future__ import annotations

import base64
import html
import re

from analysis.report_model import SHORT, Fig, Item, Num, Para, Report, Table

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9;line-height:1.45}
main{max-width:1320px;margin:0 auto;padding:24px 32px 64px}
h1{margin:0 0 4px;font-size:28px}h2{margin:36px 0 10px;font-size:21px;border-bottom:2px solid #dde1e8;
padding-bottom:4px}
.sub{color:#5b6475;margin:0 0 16px}
nav{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:8px 14px;margin:12px 0}
nav a{margin-right:14px;color:#2c5aa0;text-decoration:none;font-size:14px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:4px 20px 16px;
margin-top:18px}
table{border-collapse:collapse;margin:10px 0;font-size:13px;width:100%}
th,td{border:1px solid #e1e4ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}tr:nth-child(even) td{background:#fafbfc}
td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
caption{caption-side:bottom;text-align:left;color:#5b6475;font-size:12px;padding-top:4px}
.t{display:inline-block;font-size:10px;font-weight:600;border-radius:3px;padding:0 4px;
margin-left:4px;color:#fff;vertical-align:1px}
.t-measured{background:#2e7d32}.t-predicted{background:#1f5fa8}.t-extrapolated{background:#b26a00}
.t-published{background:#6a3d9a}.t-synthesised{background:#8e2c6f}.t-example{background:#6b7280}
.t-hand{background:#4b5563}
figure{margin:12px 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #e1e4ea;border-radius:4px;background:#fff}
figcaption{color:#5b6475;font-size:12px;max-width:640px}
.row{display:flex;flex-wrap:wrap;gap:16px}
code{background:#eef1f6;padding:0 3px;border-radius:3px;font-size:90%}
"""


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _cell(c: Num | str) -> str:
    if isinstance(c, str):
        return f"<td>{_inline(c)}</td>"
    if c.value is None and c.label is None:
        return '<td class="n">—</td>'
    badge = f'<span class="t t-{c.tag}" title="{c.tag}">{SHORT.get(c.tag, c.tag)}</span>'
    cls = "" if c.label is not None else ' class="n"'
    return f"<td{cls}>{html.escape(c.text())}{badge}</td>"


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in t.rows)
    cap = f"<caption>{_inline(t.caption)}</caption>" if t.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fig(f: Fig) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    cap = f"<figcaption>{_inline(f.caption)}</figcaption>" if f.caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(f.alt)}">{cap}</figure>'
    )


def _item(it: Item) -> str:
    if isinstance(it, Para):
        return f"<p>{_inline(it.text)}</p>"
    if isinstance(it, Table):
        return _table(it)
    if isinstance(it, Fig):
        return _fig(it)
    return '<div class="row">' + "".join(_fig(f) for f in it) + "</div>"


def render_html(report: Report) -> str:
    """The whole page as a string."""
    nav = "".join(
        f'<a href="#{s.anchor or i}">{html.escape(s.title)}</a>'
        for i, s in enumerate(report.sections)
    )
    body = "".join(
        f'<section id="{s.anchor or i}"><h2>{html.escape(s.title)}</h2>'
        + "".join(_item(it) for it in s.items)
        + "</section>"
        for i, s in enumerate(report.sections)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(report.title)}</title><style>{CSS}</style></head><body><main>"
        f'<h1>{html.escape(report.title)}</h1><p class="sub">{html.escape(report.subtitle)}</p>'
        f"<nav>{nav}</nav>{body}</main></body></html>\n"
    )
