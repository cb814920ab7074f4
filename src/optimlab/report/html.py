"""The report as one self-contained HTML page (figures embedded as data URIs, no script, no external file).

Same content as :mod:`optimlab.report.markdown`, plus a table of contents beside the page. The layout fits a
laptop screen (about 1400 px) without horizontal scrolling: long text wraps, the summary table has fixed
column widths and wide per-seed tables are split (:func:`optimlab.report.text.seed_tables`).
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optimlab.report.schema import ClaimResult
from optimlab.report.text import (
    PROVISIONAL_TEXT,
    ReportPart,
    anchor,
    display_verdict,
    document_title,
    figure_file,
    format_summary,
    headline_items,
    kind_words,
    meta_lines,
    paper_groups,
    part_keys,
    seed_tables,
    seeds_text,
    short_reported,
    short_statement,
    shorten,
    verdict_counts,
)

__all__ = ["render_html"]

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
nav.toc{position:fixed;top:0;bottom:0;left:0;width:14rem;overflow-y:auto;padding:.7rem .8rem;
background:#f6f8fa;border-right:1px solid #d0d7de;font-size:12.5px;line-height:1.35}
nav.toc ul{list-style:none;margin:.1rem 0;padding-left:.7rem}nav.toc>ul{padding-left:0}
nav.toc li{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
nav.toc li.grp{color:#57606a;margin-top:.35rem}
main{margin-left:14rem;padding:.3rem 1.4rem 2rem;max-width:88rem}
@media (max-width:64rem){nav.toc{position:static;width:auto;border-right:0;border-bottom:1px solid #d0d7de}
main{margin-left:0}}
h1{font-size:1.55rem;margin:.5rem 0 .2rem}
h2{font-size:1.3rem;margin:1.1rem 0 .4rem;padding-bottom:.15rem;border-bottom:2px solid #d0d7de}
h3{font-size:1.12rem;margin:1rem 0 .3rem}h4{font-size:1rem;margin:.8rem 0 .3rem}
ul.meta{margin:.2rem 0;padding-left:1.1rem;font-size:13px;color:#424a53}
.counts{margin:.3rem 0;font-size:15px}
ul.papers{margin:.2rem 0;padding-left:1.1rem}ul.papers li{margin:.15rem 0}
table{border-collapse:collapse;margin:.4rem 0;max-width:100%}
th,td{border:1px solid #d0d7de;padding:.2rem .45rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f6f8fa}
table.summary{width:100%;table-layout:fixed;font-size:13px;line-height:1.35}
table.summary col.c-claim{width:32%}table.summary col.c-rep{width:30%}table.summary col.c-meas{width:28%}
table.summary col.c-verdict{width:10%}
tr.paper th{background:#ddf4ff;font-size:13.5px}
.stmt{color:#424a53}.seeds{color:#57606a}
.measured div{margin:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.seeds{font-size:13px}table.seeds td:first-child{max-width:26rem}
.badge{display:inline-block;padding:0 .45em;border-radius:.8em;font-weight:600;font-size:.9em;
white-space:nowrap;color:#fff}
.v-holds{background:#1a7f37}.v-does-not-hold{background:#cf222e}.v-inconclusive{background:#9a6700}
.v-error{background:#57606a}
.dot{display:inline-block;width:.6em;height:.6em;border-radius:50%;margin-right:.3em}
.tag{display:inline-block;padding:0 .4em;border-radius:.8em;font-size:.8em;background:#fff8c5;
border:1px solid #d4a72c;color:#7d4e00;white-space:nowrap}
.provisional{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4rem .6rem}
ul.facts{padding-left:1.1rem;margin:.3rem 0}
pre{background:#f6f8fa;padding:.6rem;white-space:pre-wrap;overflow-wrap:anywhere}
img{max-width:100%;height:auto}
section.item{border-top:1px solid #d0d7de;margin-top:1.2rem}
.up{font-size:12px;font-weight:normal;margin-left:.6rem}
"""

_ARXIV = re.compile(r"arXiv:(\d{4}\.\d{4,5})")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _paper(text: str) -> str:
    """The escaped reference with each arXiv id linked to its abstract page."""
    return _ARXIV.sub(lambda m: f'<a href="https://arxiv.org/abs/{m.group(1)}">arXiv:{m.group(1)}</a>', _e(text))


def _slug(verdict: str) -> str:
    return "v-" + verdict.replace(" ", "-")


def _verdict(r: ClaimResult) -> str:
    v = display_verdict(r)
    tag = ' <span class="tag">provisional</span>' if r.provisional else ""
    return f'<span class="badge {_slug(v)}">{_e(v)}</span>{tag}'


def _link(r: ClaimResult) -> str:
    return f'<a href="#{_e(anchor(r))}">{_e(r.claim_id)}</a>'


def _table(header: list[str], rows: list[list[str]], *, cls: str, num_from: int | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f'<td{" class=num" if num_from is not None and i >= num_from else ""}>{_e(c)}</td>'
                 for i, c in enumerate(row)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _measured(r: ClaimResult) -> str:
    if r.status == "error":
        return "— (crashed)"
    lines = []
    for label, value, unit in headline_items(r):
        sep = "" if not unit or unit in ("%", "×", "x") else " "
        lines.append(f"<div>{_e(label)} <b>{_e(value)}</b>{_e(sep + unit) if value != '—' else ''}</div>")
    lines.append(f'<div class="seeds">{_e(seeds_text(r))}</div>')
    return "".join(lines)


def _ordered(part: ReportPart) -> list[ClaimResult]:
    return [r for g in paper_groups(part.results) for r in g.results]


def _toc(parts: Sequence[ReportPart], keys: list[str]) -> str:
    items = []
    for part, key in zip(parts, keys):
        title, _, many = kind_words(part.results)
        groups = []
        for g in paper_groups(part.results):
            groups.append(f'<li class="grp">{_e(shorten(g.paper, 34))}</li>')
            groups += [f'<li><span class="dot {_slug(display_verdict(r))}"></span>{_link(r)}</li>' for r in g.results]
        inner = (f'<li><a href="#{key}-overview">Overview</a></li><li><a href="#{key}-summary">Summary</a></li>'
                 f'<li><a href="#{key}-details">The {many} one by one</a><ul>{"".join(groups)}</ul></li>')
        items.append(f'<li><a href="#{key}"><b>{_e(title)}</b></a><ul>{inner}</ul></li>')
    return f'<nav class="toc"><b>Contents</b><ul>{"".join(items)}</ul></nav>'


def _overview(part: ReportPart, key: str, h: int) -> str:
    results = list(part.results)
    _, one, many = kind_words(results)
    counts = " ".join(f'<span class="badge {_slug(v)}">{n} {_e(v)}</span>' for v, n in verdict_counts(results))
    n_prov = sum(r.provisional for r in results)
    prov = f' <span class="tag">{n_prov} provisional</span>' if n_prov else ""
    papers = []
    for g in paper_groups(results):
        claims = " · ".join(f"{_link(r)} {_verdict(r)}" for r in g.results)
        papers.append(f"<li>{_paper(g.paper)}: {claims}</li>")
    return (f'<section id="{key}-overview"><h{h}>Overview</h{h}><p class="counts"><b>{len(results)} '
            f'{one if len(results) == 1 else many}:</b> {counts or "none"}{prov}</p>'
            f'<ul class="papers">{"".join(papers)}</ul></section>')


def _summary(part: ReportPart, key: str, h: int) -> str:
    one = kind_words(part.results)[1]
    cols = "".join(f'<col class="c-{c}">' for c in ("claim", "rep", "meas", "verdict"))
    head = f"<tr><th>{_e(one)}</th><th>paper reported</th><th>measured here</th><th>verdict</th></tr>"
    bodies = []
    for g in paper_groups(part.results):
        rows = [f'<tr class="paper"><th colspan="4">{_paper(g.paper)}</th></tr>']
        for r in g.results:
            rows.append(f'<tr><td>{_link(r)}: <span class="stmt">{_e(short_statement(r.statement))}</span></td>'
                        f"<td>{_e(short_reported(r.paper_reported))}</td>"
                        f'<td class="measured">{_measured(r)}</td><td>{_verdict(r)}</td></tr>')
        bodies.append(f"<tbody>{''.join(rows)}</tbody>")
    return (f'<section id="{key}-summary"><h{h}>Summary</h{h}><table class="summary"><colgroup>{cols}'
            f"</colgroup><thead>{head}</thead>{''.join(bodies)}</table></section>")


def _figure(r: ClaimResult, base_dir: Path | None) -> str:
    path = figure_file(r, base_dir)
    if path is None:
        return ""
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return ""
    return f'<img alt="{_e(r.claim_id)}" src="data:image/png;base64,{data}">'


def _section(r: ClaimResult, base_dir: Path | None, h: int, key: str) -> str:
    parts = [f'<section class="item" id="{_e(anchor(r))}"><h{h}>{_e(r.claim_id)}'
             f'<a class="up" href="#{key}-summary">↑ summary</a></h{h}>']
    if r.provisional:
        parts.append(f'<p class="provisional">{_e(PROVISIONAL_TEXT)}</p>')
    items = [f"<li><b>{label}:</b> {value}</li>" for label, value in
             (("Paper", _paper(r.paper)), ("Statement", _e(r.statement)),
              ("Paper reported", _e(r.paper_reported)), ("Criterion", _e(r.criterion))) if value]
    measured = "— (crashed)" if r.status == "error" else "; ".join(
        f"{label} <b>{_e(value)}</b>{_e(('' if unit in ('%', '×', 'x') else ' ') + unit) if unit else ''}"
        for label, value, unit in headline_items(r)) + f"; {_e(seeds_text(r))}"
    items.append(f"<li><b>Measured here:</b> {measured}</li>")
    items.append(f"<li><b>Verdict:</b> {_verdict(r)}</li>")
    items.append(f"<li><b>Scale:</b> {_e(r.scale)}; <b>seeds:</b> {_e(', '.join(map(str, r.seeds)) or '—')}; "
                 f"<b>wall time:</b> {r.wall_time_s:.1f} s</li>")
    if r.summary:
        items.append(f"<li><b>Summary:</b> {_e(format_summary(r.summary))}</li>")
    parts.append('<ul class="facts">' + "".join(items) + "</ul>")
    for header, rows in seed_tables(r) if r.numbers else []:
        parts.append(_table(header, rows, cls="seeds", num_from=1))
    if r.notes:
        parts.append(f"<p><b>Notes.</b> {_e(r.notes.strip())}</p>")
    if r.status == "error":
        parts.append(f"<p><b>Error</b> (the run crashed):</p><pre>{_e(r.error or '(no traceback recorded)')}</pre>")
    parts += [_figure(r, base_dir), "</section>"]
    return "\n".join(p for p in parts if p)


def _part(part: ReportPart, key: str, h: int, html_dir: Path | None, *, heading: bool) -> str:
    title, _, many = kind_words(part.results)
    lines = [(label, _e(value)) for label, value in meta_lines(part.meta)]
    if part.source is not None:
        src = _rel(part.source, html_dir)
        lines.insert(0, ("results file", f'<a href="{_e(src)}">{_e(src)}</a>'))
    out = [f'<section id="{key}" class="part">']
    if heading:
        out.append(f"<h{h - 1}>{_e(title)}</h{h - 1}>")
    out.append('<ul class="meta">' + "".join(f"<li><b>{_e(k)}:</b> {v}</li>" for k, v in lines) + "</ul>")
    out += [_overview(part, key, h), _summary(part, key, h)]
    out.append(f'<section id="{key}-details"><h{h}>The {_e(many)} one by one</h{h}>')
    out += [_section(r, part.base_dir, h + 1, key) for r in _ordered(part)]
    out += ["</section>", "</section>"]
    return "\n".join(out)


def _rel(path: Path, base: Path | None) -> str:
    if base is None:
        return path.as_posix()
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def render_html(parts: ReportPart | Sequence[ReportPart], *, title: str | None = None,
                html_dir: str | os.PathLike | None = None) -> str:
    """The report of one or more parts as one self-contained HTML page.

    Figures found under each part's ``base_dir`` are embedded (base64 PNG); others are left out. ``html_dir``
    is the folder the page will be written to (links to the results files are made relative to it).
    """
    parts = [parts] if isinstance(parts, ReportPart) else list(parts)
    html_dir = Path(html_dir) if html_dir is not None else None
    keys = part_keys(parts)
    doc_title = _e(document_title(parts, title))
    level = 2 if len(parts) == 1 else 3
    body = "\n".join(_part(p, k, level, html_dir, heading=len(parts) > 1) for p, k in zip(parts, keys))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{doc_title}</title>'
            f"<style>{_CSS}</style></head>\n<body>{_toc(parts, keys)}\n<main><h1>{doc_title}</h1>\n{body}\n"
            f"</main></body></html>\n")
