"""The ``optimlab`` command: ``list``, ``reproduce`` (paper claims), ``bench`` (cost measurements) and ``report``
(render existing results files).

Exit codes: 0 when every selected claim ran (whatever its verdict), 1 when any crashed, 2 for a usage error
(unknown claim name, bad option, unusable device, a path that is not a results file).
"""

from __future__ import annotations

import enum
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from optimlab.evidence import Claim, all_benches, all_claims, check_device, run_claims, select
from optimlab.report.schema import ClaimResult, write_text_atomic
from optimlab.report.writer import format_headline, render_files

app = typer.Typer(
    help="Optimization methods with rerunnable evidence: reproduce each paper's claims, benchmark their cost.",
    no_args_is_help=True,
    add_completion=False,
)

_STYLES = {"holds": "bold green", "does not hold": "bold red", "inconclusive": "yellow", "error": "bold red"}


class Scale(str, enum.Enum):
    """Run size: ``smoke`` (seconds, verdict inconclusive), ``quick`` (≤ ~90 s a claim), ``full``."""

    smoke = "smoke"
    quick = "quick"
    full = "full"


def _shorten(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _verdict_text(r: ClaimResult) -> Text:
    v = "error" if r.status == "error" else r.verdict
    return Text(v, style=_STYLES.get(v, ""))


class _RichProgress:
    """Bridges the runner's callbacks (see ``optimlab.evidence.RunProgress``) to a rich progress bar, one step per claim."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=total, msg="")

    def claim_started(self, claim: Claim, index: int, total: int) -> None:
        self.progress.update(self.task, description=claim.id, msg="")

    def message(self, claim: Claim, msg: str) -> None:
        self.progress.update(self.task, msg=_shorten(msg, 50))

    def claim_finished(self, claim: Claim, result: ClaimResult) -> None:
        line = Text.assemble(f"{claim.id}: ", _verdict_text(result), f" ({result.wall_time_s:.1f} s)")
        self.progress.console.print(line)
        self.progress.advance(self.task)

    def claim_skipped(self, claim: Claim, previous: ClaimResult) -> None:
        self.progress.console.print(Text.assemble(f"{claim.id}: skipped, already done (", _verdict_text(previous),
                                                  ")"))
        self.progress.advance(self.task)


def _load(loader: Callable[[], dict[str, Claim]], what: str) -> dict[str, Claim]:
    """Import the registered claims/benchmarks; a module that fails to import is reported, exit code 1."""
    try:
        return loader()
    except Exception:
        err = Console(stderr=True, soft_wrap=True)
        err.print(f"[red]error:[/red] a module declaring {what} failed to import:", highlight=False)
        err.print(traceback.format_exc(), highlight=False, markup=False)
        raise typer.Exit(1) from None


def _results_table(results: list[ClaimResult], skipped: list[str], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for col in ("claim", "measured", "criterion", "verdict", "time"):
        table.add_column(col, overflow="fold")
    for r in results:
        time_s = "skipped" if r.claim_id in skipped else f"{r.wall_time_s:.1f} s"
        table.add_row(r.claim_id, format_headline(r, max_items=4) or "—", _shorten(r.criterion, 60),
                      _verdict_text(r), time_s)
    return table


def _run(loader: Callable[[], dict[str, Claim]], names: list[str] | None, scale: Scale, seeds: int | None,
         device: str, out: Path, resume: bool, what: str) -> None:
    """Shared body of ``reproduce`` and ``bench``."""
    console, err = Console(), Console(stderr=True, soft_wrap=True)
    table = _load(loader, what)
    try:
        chosen = select(table, names)
        check_device(device)
    except ValueError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    if not chosen:
        err.print(f"no {what} registered")
        raise typer.Exit(2)
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[msg]}", markup=False))
    with Progress(*columns, console=console, transient=True) as bar:
        try:
            summary = run_claims(chosen, scale=scale.value, seeds=seeds, device=device, out_dir=out,
                                 resume=resume, progress=_RichProgress(bar, len(chosen)))
        except ValueError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None
    console.print(_results_table(summary.results, summary.skipped, f"{what} ({scale.value} scale, {device})"))
    console.print(f"Report: {summary.report_md}", highlight=False)
    if summary.crashed:
        where = escape(str(summary.report_md))
        err.print(f"[red]crashed:[/red] {', '.join(summary.crashed)} (tracebacks in {where})", highlight=False)
        raise typer.Exit(1)


_NAMES = typer.Argument(None, help="Ids or id prefixes (e.g. 'sam' selects every 'sam.*'); default: all.",
                        show_default=False)
_SCALE = typer.Option(Scale.quick, "--scale", help="smoke (seconds; verdict inconclusive), quick, or full.")
_SEEDS = typer.Option(None, "--seeds", min=1, help="Use seeds 0..N-1 instead of each claim's default.",
                      show_default=False)
_DEVICE = typer.Option("cpu", "--device", help="Torch device: cpu, cuda or cuda:N.")
_RESUME = typer.Option(False, "--resume", help="Skip claims already done (status ok) in the output folder.")
_OUT_CLAIMS = typer.Option(Path("runs/latest"), "--out", help="Output folder (results.json, report.md/html).")
_OUT_BENCH = typer.Option(Path("runs/bench"), "--out", help="Output folder (results.json, report.md/html).")


@app.command("list")
def list_() -> None:
    """Show every claim and benchmark with its one-line statement."""
    console = Console()
    for title, table in (("Claims", _load(all_claims, "claims")), ("Benchmarks", _load(all_benches, "benchmarks"))):
        t = Table(title=title, title_justify="left")
        t.add_column("id", no_wrap=True)
        t.add_column("statement", overflow="fold")
        for cid, c in table.items():
            t.add_row(cid + (" (provisional)" if c.provisional else ""), _shorten(c.statement, 200))
        if not table:
            t.add_row("(none)", "")
        console.print(t)


@app.command()
def reproduce(
    names: list[str] | None = _NAMES,
    scale: Scale = _SCALE,
    seeds: int | None = _SEEDS,
    device: str = _DEVICE,
    out: Path = _OUT_CLAIMS,
    resume: bool = _RESUME,
) -> None:
    """Rerun papers' claims and write a report with a verdict per claim."""
    _run(all_claims, names, scale, seeds, device, out, resume, "claims")


@app.command()
def bench(
    names: list[str] | None = _NAMES,
    scale: Scale = _SCALE,
    seeds: int | None = _SEEDS,
    device: str = _DEVICE,
    out: Path = _OUT_BENCH,
    resume: bool = _RESUME,
) -> None:
    """Measure the cost (time, memory) of methods against their baselines and write a report."""
    _run(all_benches, names, scale, seeds, device, out, resume, "benchmarks")


_PATHS = typer.Argument(..., help="Results files (results.json) or run folders holding one, e.g. runs/latest "
                        "runs/bench; each becomes a part of the report, in this order.", show_default=False)
_MARKDOWN = typer.Option(None, "--markdown", help="Write the markdown report here ('-': standard output).",
                         show_default=False)
_HTML = typer.Option(None, "--html", help="Write the self-contained HTML report here.", show_default=False)
_TITLE = typer.Option(None, "--title", help="Report title (default: from the kind of results).", show_default=False)


@app.command()
def report(
    paths: list[Path] = _PATHS,
    markdown: Path | None = _MARKDOWN,
    html: Path | None = _HTML,
    title: str | None = _TITLE,
) -> None:
    """Render the report of existing results files without running anything.

    With neither --markdown nor --html, the markdown goes to standard output. Figures are embedded in the HTML
    when their files are next to the results; the markdown links to them relative to its own folder.
    """
    err = Console(stderr=True, soft_wrap=True)
    to_stdout = (markdown is None and html is None) or str(markdown) == "-"
    md_path = None if markdown is None or str(markdown) == "-" else markdown
    try:
        md_text, html_text = render_files(paths, markdown_path=md_path, html_path=html, title=title)
    except ValueError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from None
    written = []
    for path, text in ((md_path, md_text), (html, html_text)):
        if path is not None:
            write_text_atomic(path, text)
            written.append(str(path))
    if to_stdout:
        sys.stdout.write(md_text)
    if written:
        err.print(f"Report: {', '.join(written)}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    app()
