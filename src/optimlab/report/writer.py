"""The human-readable report of a run: ``report.md`` and a self-contained ``report.html``.

Both renderers show the same content, built from the same helpers: the run's metadata, a summary table (one row
per claim), and one section per claim with its per-seed numbers, verdict, notes, error and figure.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from optimlab.report.schema import ClaimResult, write_text_atomic

__all__ = ["format_headline", "format_number", "format_summary", "render_html", "render_markdown", "write_report"]

PROVISIONAL_TEXT = "provisional: the tested algorithm is a provisional design (see notes)"
_VERDICT_COLORS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#9a6700"}


def format_number(x: Any) -> str:
    """Compact text for one measured value: ints as is, floats with 4 significant digits."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.4g}"
    return str(x)


def format_summary(summary: Mapping[str, Any], max_items: int | None = None) -> str:
    """``"key=value, ..."`` for the summary table (the first ``max_items`` entries, then ``…``)."""
    items = list(summary.items())
    text = ", ".join(f"{k}={format_number(v)}" for k, v in items[:max_items])
    if max_items is not None and len(items) > max_items:
        text += ", …"
    return text


def format_headline(r: ClaimResult, max_items: int | None = None) -> str:
    """The claim's headline numbers (``"label value unit; ..."``, from ``r.headline``), or, for a result without
    a headline, :func:`format_summary` of its summary."""
    if not r.headline:
        return format_summary(r.summary, max_items=max_items)
    parts = []
    for key, label, unit in r.headline:
        if key not in r.summary:
            parts.append(f"{label} —")
            continue
        sep = "" if not unit or unit in ("%", "×", "x") else " "
        parts.append(f"{label} {format_number(r.summary[key])}{sep}{unit}".strip())
    return "; ".join(parts)


def _title(meta: Mapping[str, Any]) -> str:
    return str(meta.get("title", "optimlab report"))


def _meta_lines(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = [("scale", "scale"), ("device", "device"), ("torch", "torch"), ("optimlab_version", "optimlab"),
            ("created", "date")]
    return [(label, str(meta[k])) for k, label in keys if k in meta]


def _display_verdict(r: ClaimResult) -> str:
    return "error" if r.status == "error" else r.verdict


def _median(values: list[Any]) -> str:
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        return "—"
    if not floats:
        return "—"
    if any(math.isnan(v) for v in floats):
        return "nan"
    return format_number(statistics.median(floats))


def _seed_table(r: ClaimResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the metric x seed table (columns are seeds when lengths match, else repeat indices)."""
    width = max((len(v) for v in r.numbers.values()), default=0)
    if width == len(r.seeds) and all(len(v) == width for v in r.numbers.values()):
        cols = [f"seed {s}" for s in r.seeds]
    else:
        cols = [f"#{i}" for i in range(width)]
    header = ["metric", *cols, "median"]
    rows = []
    for metric, values in r.numbers.items():
        values = list(values)
        cells = [format_number(v) for v in values] + [""] * (width - len(values))
        rows.append([metric, *cells, _median(values)])
    return header, rows


def _shorten(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _md_code(text: str) -> list[str]:
    runs = re.findall(r"`+", text)
    fence = "`" * max(3, 1 + max((len(r) for r in runs), default=0))
    return [fence, text.rstrip("\n"), fence]


def _md_section(r: ClaimResult) -> list[str]:
    out = [f"## {r.claim_id}", ""]
    if r.provisional:
        out += [f"> **{PROVISIONAL_TEXT}**", ""]
    for label, value in (("Paper", r.paper), ("Statement", r.statement), ("Paper reported", r.paper_reported),
                         ("Criterion", r.criterion)):
        if value:
            out.append(f"- **{label}:** {value}")
    out.append(f"- **Verdict:** **{_display_verdict(r)}**")
    out.append(f"- **Scale:** {r.scale}; **seeds:** {', '.join(map(str, r.seeds)) or '—'}; "
               f"**wall time:** {r.wall_time_s:.1f} s")
    if r.summary:
        out.append(f"- **Summary:** {format_summary(r.summary)}")
    out.append("")
    if r.numbers:
        header, rows = _seed_table(r)
        out += _md_table(header, rows) + [""]
    if r.notes:
        out += ["**Notes.** " + r.notes.strip(), ""]
    if r.status == "error":
        out += ["**Error** (the claim crashed):", "", *_md_code(r.error or "(no traceback recorded)"), ""]
    if r.figure:
        out += [f"![{r.claim_id}]({Path(r.figure).as_posix()})", ""]
    return out


def render_markdown(results: Iterable[ClaimResult], meta: Mapping[str, Any]) -> str:
    """The markdown report: title, run metadata, summary table, then one section per claim."""
    results = list(results)
    out = [f"# {_title(meta)}", ""]
    out += [f"- **{label}:** {value}" for label, value in _meta_lines(meta)] + [""]
    rows = [[r.claim_id, _display_verdict(r), format_headline(r), r.criterion] for r in results]
    out += ["## Summary", "", *_md_table(["claim", "verdict", "key numbers", "criterion"], rows), ""]
    for r in results:
        out += _md_section(r)
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#1f2328;line-height:1.45}
table{border-collapse:collapse;margin:.6rem 0}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto}.verdict{font-weight:600}
.provisional{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4rem .6rem}
img{max-width:100%}section{border-top:1px solid #d0d7de;margin-top:1.5rem}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _h_verdict(r: ClaimResult) -> str:
    v = _display_verdict(r)
    color = _VERDICT_COLORS.get(v, "#cf222e")
    return f'<span class="verdict" style="color:{color}">{_e(v)}</span>'


def _h_table(header: list[str], rows: list[list[str]], *, raw_cols: tuple[int, ...] = (),
             num_from: int | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = ' class="num"' if num_from is not None and i >= num_from else ""
            cells.append(f"<td{cls}>{c if i in raw_cols else _e(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _h_figure(r: ClaimResult, out_dir: Path) -> str:
    path = Path(r.figure) if Path(r.figure).is_absolute() else out_dir / r.figure
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return f"<p><em>figure missing: {_e(r.figure)}</em></p>"
    return f'<img alt="{_e(r.claim_id)}" src="data:image/png;base64,{data}">'


def _h_section(r: ClaimResult, out_dir: Path) -> str:
    parts = [f'<section id="{_e(r.claim_id)}"><h2>{_e(r.claim_id)}</h2>']
    if r.provisional:
        parts.append(f'<p class="provisional">{_e(PROVISIONAL_TEXT)}</p>')
    items = [f"<li><b>{label}:</b> {_e(value)}</li>" for label, value in
             (("Paper", r.paper), ("Statement", r.statement), ("Paper reported", r.paper_reported),
              ("Criterion", r.criterion)) if value]
    items.append(f"<li><b>Verdict:</b> {_h_verdict(r)}</li>")
    items.append(f"<li><b>Scale:</b> {_e(r.scale)}; <b>seeds:</b> {_e(', '.join(map(str, r.seeds)) or '—')}; "
                 f"<b>wall time:</b> {r.wall_time_s:.1f} s</li>")
    if r.summary:
        items.append(f"<li><b>Summary:</b> {_e(format_summary(r.summary))}</li>")
    parts.append("<ul>" + "".join(items) + "</ul>")
    if r.numbers:
        header, rows = _seed_table(r)
        parts.append(_h_table(header, rows, num_from=1))
    if r.notes:
        parts.append(f"<p><b>Notes.</b> {_e(r.notes.strip())}</p>")
    if r.status == "error":
        parts.append(f"<p><b>Error</b> (the claim crashed):</p><pre>{_e(r.error or '(no traceback recorded)')}</pre>")
    if r.figure:
        parts.append(_h_figure(r, out_dir))
    parts.append("</section>")
    return "\n".join(parts)


def render_html(results: Iterable[ClaimResult], meta: Mapping[str, Any], out_dir: str | os.PathLike) -> str:
    """The report as one self-contained HTML page; figures under ``out_dir`` are embedded as base64 data URIs."""
    results = list(results)
    out_dir = Path(out_dir)
    title = _e(_title(meta))
    meta_html = "".join(f"<li><b>{_e(k)}:</b> {_e(v)}</li>" for k, v in _meta_lines(meta))
    rows = [[f'<a href="#{_e(r.claim_id)}">{_e(r.claim_id)}</a>', _h_verdict(r), _e(format_headline(r)),
             _e(r.criterion)] for r in results]
    summary = _h_table(["claim", "verdict", "key numbers", "criterion"], rows, raw_cols=(0, 1, 2, 3))
    sections = "\n".join(_h_section(r, out_dir) for r in results)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head>\n<body><h1>{title}</h1><ul>{meta_html}</ul>"
            f"<h2>Summary</h2>{summary}\n{sections}\n</body></html>\n")


def write_report(out_dir: str | os.PathLike, results: Iterable[ClaimResult],
                 meta: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` and ``out_dir/report.html`` atomically; returns their paths."""
    out_dir = Path(out_dir)
    results = list(results)
    md, page = out_dir / "report.md", out_dir / "report.html"
    write_text_atomic(md, render_markdown(results, meta))
    write_text_atomic(page, render_html(results, meta, out_dir))
    return md, page
