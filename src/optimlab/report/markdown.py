"""The markdown report: overview, summary grouped by paper, one section per claim (or benchmark).

Same content as :mod:`optimlab.report.html`, laid out for a markdown viewer (GitHub renders the anchors).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from optimlab.report.schema import ClaimResult
from optimlab.report.text import (
    PROVISIONAL_TEXT,
    ReportPart,
    anchor,
    display_verdict,
    document_title,
    figure_file,
    format_measured,
    format_summary,
    kind_words,
    meta_lines,
    paper_groups,
    part_keys,
    seed_tables,
    short_reported,
    short_statement,
    verdict_counts,
)

__all__ = ["render_markdown"]

_ARXIV = re.compile(r"arXiv:(\d{4}\.\d{4,5})")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _code(text: str) -> list[str]:
    runs = re.findall(r"`+", text)
    fence = "`" * max(3, 1 + max((len(r) for r in runs), default=0))
    return [fence, text.rstrip("\n"), fence]


def _paper(text: str) -> str:
    """The reference with each arXiv id linked to its abstract page."""
    return _ARXIV.sub(lambda m: f"[arXiv:{m.group(1)}](https://arxiv.org/abs/{m.group(1)})", text)


def _verdict(r: ClaimResult) -> str:
    return f"**{display_verdict(r)}**" + (" (provisional)" if r.provisional else "")


def _link(r: ClaimResult) -> str:
    return f"[{r.claim_id}](#{anchor(r)})"


def _rel(path: Path, md_dir: Path | None) -> str:
    if md_dir is None:
        return path.as_posix()
    try:
        return Path(os.path.relpath(path.resolve(), md_dir.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return path.resolve().as_posix()


def _overview(part: ReportPart, h: str, key: str) -> list[str]:
    results = list(part.results)
    _, one, many = kind_words(results)
    counts = " · ".join(f"{n} {v}" for v, n in verdict_counts(results))
    n_prov = sum(r.provisional for r in results)
    prov = f" ({n_prov} provisional)" if n_prov else ""
    out = [f'<a id="{key}-overview"></a>', "", f"{h} Overview", "",
           f"**{len(results)} {one if len(results) == 1 else many}:** {counts or 'none'}{prov}", ""]
    for g in paper_groups(results):
        verdicts = " · ".join(f"{_link(r)} {_verdict(r)}" for r in g.results)
        out.append(f"- {_paper(g.paper)}: {verdicts}")
    return [*out, ""]


def _summary(part: ReportPart, h: str, key: str) -> list[str]:
    out = [f'<a id="{key}-summary"></a>', "", f"{h} Summary", ""]
    one = kind_words(part.results)[1]
    for g in paper_groups(part.results):
        rows = [[f"{_link(r)}: {short_statement(r.statement)}", short_reported(r.paper_reported),
                 format_measured(r), _verdict(r)] for r in g.results]
        out += [f"{h}# {_paper(g.paper)}", "", *_table([one, "paper reported", "measured here", "verdict"], rows), ""]
    return out


def _section(r: ClaimResult, h: str, base_dir: Path | None, md_dir: Path | None) -> list[str]:
    out = [f'<a id="{anchor(r)}"></a>', "", f"{h} {r.claim_id}", ""]
    if r.provisional:
        out += [f"> **{PROVISIONAL_TEXT}**", ""]
    for label, value in (("Paper", _paper(r.paper)), ("Statement", r.statement), ("Paper reported", r.paper_reported),
                         ("Criterion", r.criterion)):
        if value:
            out.append(f"- **{label}:** {' '.join(value.split())}")
    out.append(f"- **Measured here:** {format_measured(r)}")
    out.append(f"- **Verdict:** {_verdict(r)}")
    out.append(f"- **Scale:** {r.scale}; **seeds:** {', '.join(map(str, r.seeds)) or '—'}; "
               f"**wall time:** {r.wall_time_s:.1f} s")
    if r.summary:
        out.append(f"- **Summary:** {format_summary(r.summary)}")
    out.append("")
    for header, rows in seed_tables(r) if r.numbers else []:
        out += [*_table(header, rows), ""]
    if r.notes:
        out += ["**Notes.** " + r.notes.strip(), ""]
    if r.status == "error":
        out += ["**Error** (the run crashed):", "", *_code(r.error or "(no traceback recorded)"), ""]
    fig = figure_file(r, base_dir)
    if fig is not None:
        out += [f"![{r.claim_id}]({_rel(fig, md_dir)})", ""]
    return out


def _part(part: ReportPart, key: str, level: int, md_dir: Path | None, *, heading: bool) -> list[str]:
    h = "#" * level
    title, _, many = kind_words(part.results)
    out = [f'<a id="{key}"></a>', "", f"{'#' * (level - 1)} {title}", ""] if heading else []
    lines = meta_lines(part.meta)
    if part.source is not None:
        lines.insert(0, ("results file", f"[{_rel(part.source, md_dir)}]({_rel(part.source, md_dir)})"))
    out += [f"- **{label}:** {value}" for label, value in lines] + ([""] if lines else [])
    out += _overview(part, h, key) + _summary(part, h, key)
    out += [f'<a id="{key}-details"></a>', "", f"{h} The {many} one by one", ""]
    for r in (r for g in paper_groups(part.results) for r in g.results):
        out += _section(r, h + "#", part.base_dir, md_dir)
    return out


def render_markdown(parts: ReportPart | Sequence[ReportPart], *, title: str | None = None,
                    md_dir: str | os.PathLike | None = None) -> str:
    """The markdown report of one or more parts (e.g. the claims run and the benchmark run).

    ``md_dir`` is the folder the markdown will be written to: figure and results-file links are made relative
    to it (default: as stored). Figures whose file is not found are left out.
    """
    parts = [parts] if isinstance(parts, ReportPart) else list(parts)
    md_dir = Path(md_dir) if md_dir is not None else None
    out = [f"# {document_title(parts, title)}", ""]
    keys = part_keys(parts)
    if len(parts) == 1:
        out += _part(parts[0], keys[0], 2, md_dir, heading=False)
    else:
        titles = [kind_words(p.results)[0] for p in parts]
        out += ["Contents: " + " · ".join(f"[{t}](#{k})" for t, k in zip(titles, keys)), ""]
        for p, k in zip(parts, keys):
            out += _part(p, k, 3, md_dir, heading=True)
    return "\n".join(out).rstrip("\n") + "\n"

