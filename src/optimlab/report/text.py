"""What the markdown and the HTML report both show, as plain text: numbers, headlines, paper groups, tables.

The two renderers only lay these pieces out, so they carry the same content. Everything here is deterministic:
the report of a results file depends on that file alone (no clock, no machine state).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimlab.report.schema import VERDICTS, ClaimResult

__all__ = [
    "MAX_SEED_COLUMNS",
    "PROVISIONAL_TEXT",
    "PaperGroup",
    "ReportPart",
    "anchor",
    "arxiv_ids",
    "display_verdict",
    "document_title",
    "figure_file",
    "format_headline",
    "format_measured",
    "format_number",
    "format_summary",
    "headline_items",
    "kind_words",
    "meta_lines",
    "paper_groups",
    "part_keys",
    "seed_tables",
    "seeds_text",
    "short_reported",
    "short_statement",
    "shorten",
    "verdict_counts",
]

PROVISIONAL_TEXT = "provisional: the tested algorithm is a provisional design (see notes)"
MAX_SEED_COLUMNS = 8  # per-seed tables wider than this are split, so that they fit a laptop screen
STATEMENT_CHARS = 150  # the summary table shows the statement and the paper's report up to this many characters
REPORTED_CHARS = 190
_ARXIV = re.compile(r"arXiv:(\d{4}\.\d{4,5})(?:v\d+)?")


@dataclass(frozen=True)
class ReportPart:
    """One results file's worth of a report: its results, its metadata, where its figures are.

    ``base_dir`` is the folder the results' figure paths are relative to (the run's output folder); ``source``
    the results file, named in a report rendered from files (``optimlab report``).
    """

    results: tuple[ClaimResult, ...]
    meta: Mapping[str, Any]
    base_dir: Path | None = None
    source: Path | None = None


def document_title(parts: Sequence[ReportPart], title: str | None = None) -> str:
    """``title``, else ``optimlab report: paper claims`` (or ``benchmarks``) for one part, ``optimlab results``."""
    if title:
        return title
    if len(parts) == 1:
        return f"optimlab report: {kind_words(parts[0].results)[0].lower()}"
    return "optimlab results"


def part_keys(parts: Sequence[ReportPart]) -> list[str]:
    """A distinct anchor prefix per part: ``claims`` / ``bench``, numbered from the second of a kind on."""
    keys: list[str] = []
    for p in parts:
        base = "bench" if kind_words(p.results)[0] == "Benchmarks" else "claims"
        n = sum(k == base or k.startswith(base + "-") for k in keys)
        keys.append(base if n == 0 else f"{base}-{n + 1}")
    return keys


def figure_file(r: ClaimResult, base_dir: Path | None) -> Path | None:
    """The result's figure as a path that exists here, or ``None`` (no figure, or its file is not here)."""
    if not r.figure:
        return None
    path = Path(r.figure)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path if path.is_file() else None


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
    """``"key=value, ..."`` of a summary (the first ``max_items`` entries, then ``…``)."""
    items = list(summary.items())
    text = ", ".join(f"{k}={format_number(v)}" for k, v in items[:max_items])
    if max_items is not None and len(items) > max_items:
        text += ", …"
    return text


def headline_items(r: ClaimResult) -> list[tuple[str, str, str]]:
    """The headline numbers as ``(label, value, unit)`` text triples (``"—"`` for a key missing from the summary).

    A result without a headline (older files) shows its first three summary entries, named by their keys.
    """
    if not r.headline:
        return [(str(k), format_number(v), "") for k, v in list(r.summary.items())[:3]]
    return [(label, format_number(r.summary[key]) if key in r.summary else "—", unit)
            for key, label, unit in r.headline]


def _value_unit(value: str, unit: str) -> str:
    if not unit or value == "—":
        return value
    return f"{value}{'' if unit in ('%', '×', 'x') else ' '}{unit}"


def format_headline(r: ClaimResult, max_items: int | None = None) -> str:
    """``"label value unit; ..."`` of :func:`headline_items` (the first ``max_items``)."""
    items = headline_items(r)[:max_items]
    return "; ".join(f"{label} {_value_unit(value, unit)}".strip() for label, value, unit in items)


def seeds_text(r: ClaimResult) -> str:
    """``"5 seeds"`` / ``"1 seed"`` (the number of seeds the run used)."""
    n = len(r.seeds)
    return f"{n} seed" if n == 1 else f"{n} seeds"


def format_measured(r: ClaimResult) -> str:
    """The summary table's *measured here*: the headline numbers and the seed count, or ``—`` after a crash."""
    if r.status == "error":
        return "— (crashed)"
    head = format_headline(r)
    return f"{head}; {seeds_text(r)}" if head else seeds_text(r)


def display_verdict(r: ClaimResult) -> str:
    """The verdict, or ``error`` for a result whose run crashed."""
    return "error" if r.status == "error" else r.verdict


def verdict_counts(results: Iterable[ClaimResult]) -> list[tuple[str, int]]:
    """``[(verdict, count), ...]`` in the order holds, does not hold, inconclusive, error; zero counts left out."""
    shown = [display_verdict(r) for r in results]
    return [(v, shown.count(v)) for v in (*VERDICTS, "error") if shown.count(v)]


def kind_words(results: Sequence[ClaimResult]) -> tuple[str, str, str]:
    """``(part title, singular, plural)``: benchmarks when every result is one, else claims."""
    if results and all(r.kind == "bench" for r in results):
        return "Benchmarks", "benchmark", "benchmarks"
    return "Paper claims", "claim", "claims"


def anchor(r: ClaimResult) -> str:
    """The id of the result's section (its kind and its id, e.g. ``claim-sam.flat_minima``)."""
    return f"{'bench' if r.kind == 'bench' else 'claim'}-{r.claim_id}"


def shorten(text: str, n: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``n`` characters (``…`` marks the cut)."""
    text = " ".join(str(text).split())
    if len(text) <= n:
        return text
    cut = text[: n - 1]
    if " " in cut[n // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def short_statement(text: str, n: int = STATEMENT_CHARS) -> str:
    """The statement's first sentence when that is short enough, else the statement cut to ``n`` characters."""
    text = " ".join(str(text).split())
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text, maxsplit=1)[0]
    return shorten(first, n)


def short_reported(text: str) -> str:
    """What the paper reported, cut for the summary table (the claim's section has it in full)."""
    return shorten(text, REPORTED_CHARS) if text else "—"


def arxiv_ids(paper: str) -> tuple[str, ...]:
    """The arXiv ids named in a paper reference, in order (``"... arXiv:2010.01412"`` → ``("2010.01412",)``)."""
    return tuple(dict.fromkeys(_ARXIV.findall(paper)))


@dataclass(frozen=True)
class PaperGroup:
    """The results of one paper (one reference, or the same arXiv ids), in the order they appear."""

    paper: str
    results: tuple[ClaimResult, ...]


def paper_groups(results: Iterable[ClaimResult]) -> list[PaperGroup]:
    """Group results by paper: by their arXiv ids when the reference names some, else by the reference text.

    Groups come in the order of their first result; the heading is the longest reference text of the group.
    """
    keys: dict[Any, list[ClaimResult]] = {}
    for r in results:
        ids = arxiv_ids(r.paper)
        keys.setdefault(ids if ids else " ".join(r.paper.split()), []).append(r)
    groups = []
    for members in keys.values():
        paper = max((" ".join(m.paper.split()) for m in members), key=len) or "(paper not given)"
        groups.append(PaperGroup(paper=paper, results=tuple(members)))
    return groups


def meta_lines(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run's metadata as ``(label, text)`` lines: commit, scale, date, machine; keys absent are skipped."""
    lines = []
    if "commit" in meta:
        lines.append(("commit", str(meta["commit"])))
    if "scale" in meta:
        lines.append(("scale", str(meta["scale"])))
    if "created" in meta:
        lines.append(("run started", str(meta["created"])))
    machine = []
    if meta.get("platform"):
        machine.append(str(meta["platform"]))
    if meta.get("cpu") or meta.get("cpu_count"):
        count = f"{meta['cpu_count']} logical CPUs" if meta.get("cpu_count") else ""
        machine.append(", ".join(x for x in (str(meta.get("cpu") or ""), count) if x))
    if meta.get("python"):
        machine.append(f"Python {meta['python']}")
    if meta.get("torch"):
        machine.append(f"torch {meta['torch']}" + (f" ({meta['threads']} threads)" if meta.get("threads") else ""))
    if meta.get("device"):
        machine.append(f"device {meta['device']}" + (f" ({meta['gpu']})" if meta.get("gpu") else ""))
    if machine:
        lines.append(("machine", "; ".join(machine)))
    if "optimlab_version" in meta:
        lines.append(("optimlab", str(meta["optimlab_version"])))
    return lines


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


def seed_tables(r: ClaimResult, max_columns: int = MAX_SEED_COLUMNS) -> list[tuple[list[str], list[list[str]]]]:
    """The per-seed numbers as ``[(header, rows), ...]``: one metric a row, its median, then one column a seed.

    Columns are named ``seed s`` when every list has one value per seed, else ``#i`` (repeated measurements).
    More than ``max_columns`` value columns are split into several tables of balanced width (the median in the
    first), so that no table is wider than a laptop screen.
    """
    width = max((len(v) for v in r.numbers.values()), default=0)
    if width == len(r.seeds) and all(len(v) == width for v in r.numbers.values()):
        cols = [f"seed {s}" for s in r.seeds]
    else:
        cols = [f"#{i}" for i in range(width)]
    cells = {m: [format_number(v) for v in values] + [""] * (width - len(values)) for m, values in r.numbers.items()}
    n_tables = max(1, math.ceil(width / max_columns))
    per = math.ceil(width / n_tables) if width else 0
    tables = []
    for t in range(n_tables):
        lo, hi = t * per, min(width, (t + 1) * per)
        header = ["metric", *(["median"] if t == 0 else []), *cols[lo:hi]]
        rows = [[m, *([_median(list(r.numbers[m]))] if t == 0 else []), *c[lo:hi]] for m, c in cells.items()]
        tables.append((header, rows))
    return tables
