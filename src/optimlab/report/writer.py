"""The human-readable report: ``report.md`` and a self-contained ``report.html``, from a run or from files.

:func:`write_report` is what the runner calls after each claim; :func:`load_part` and :func:`render_files` are
what ``optimlab report`` uses to render one or more existing results files (say, the claims run and the
benchmark run) without running anything. Both renderers (:mod:`optimlab.report.markdown`,
:mod:`optimlab.report.html`) show the same content: the run's commit, scale and machine, an overview (counts
per verdict, one line per paper), a summary table grouped by paper (what the paper reported beside what was
measured here), then one section per claim. The output depends on the results files alone, so rendering the
same files twice gives the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optimlab.report.html import render_html
from optimlab.report.markdown import render_markdown
from optimlab.report.schema import ClaimResult, write_text_atomic
from optimlab.report.text import ReportPart, format_headline, format_number, format_summary

__all__ = [
    "ReportPart",
    "format_headline",
    "format_number",
    "format_summary",
    "load_part",
    "render_files",
    "render_html",
    "render_markdown",
    "write_report",
]


def write_report(out_dir: str | os.PathLike, results: Iterable[ClaimResult],
                 meta: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` and ``out_dir/report.html`` atomically; returns their paths.

    Figure paths of ``results`` are relative to ``out_dir`` (as the runner stores them).
    """
    out_dir = Path(out_dir)
    part = ReportPart(tuple(results), dict(meta), base_dir=out_dir)
    md, page = out_dir / "report.md", out_dir / "report.html"
    write_text_atomic(md, render_markdown(part, md_dir=out_dir))
    write_text_atomic(page, render_html(part, html_dir=out_dir))
    return md, page


def load_part(path: str | os.PathLike) -> ReportPart:
    """Read a results file (``results.json``, or a folder holding one) as a :class:`ReportPart`.

    Raises ``ValueError`` naming the path when it is missing or is not a results file.
    """
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        where = f"{path} holds no results.json" if path.is_dir() else f"{path} does not exist"
        raise ValueError(f"results must be a results.json file or a folder holding one; {where}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        results = tuple(ClaimResult.from_dict(d) for d in data["results"])
    except (ValueError, KeyError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{file} is not a results file written by optimlab ({type(e).__name__}: {e})") from None
    meta = {k: v for k, v in data.items() if k != "results"}
    return ReportPart(results, meta, base_dir=file.parent, source=file)


def render_files(paths: Sequence[str | os.PathLike], *, markdown_path: str | os.PathLike | None = None,
                 html_path: str | os.PathLike | None = None, title: str | None = None) -> tuple[str, str]:
    """``(markdown, html)`` of the report of the results files ``paths``, in that order.

    Links (figures, results files) are made relative to the folders of ``markdown_path`` and ``html_path``
    (default: the current folder). Raises ``ValueError`` for a path that is not a results file.
    """
    if not paths:
        raise ValueError("paths must name at least one results file or folder, got none")
    parts = [load_part(p) for p in paths]
    md_dir = Path(markdown_path).parent if markdown_path is not None else Path.cwd()
    html_dir = Path(html_path).parent if html_path is not None else Path.cwd()
    return (render_markdown(parts, title=title, md_dir=md_dir),
            render_html(parts, title=title, html_dir=html_dir))
