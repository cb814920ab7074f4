"""Markdown / HTML report rendering (overview, summary by paper, sections), report files, and the plot helpers."""

from __future__ import annotations

import json
import os
import re

import pytest

from optimlab.report.plots import curves_plot, new_figure, paired_plot, save_figure
from optimlab.report.schema import ClaimResult, write_json_atomic
from optimlab.report.writer import (
    ReportPart,
    load_part,
    render_files,
    render_html,
    render_markdown,
    write_report,
)

META = {"scale": "quick", "device": "cpu", "torch": "2.x", "created": "2025-01-01T00:00:00+00:00",
        "commit": "abc1234+dirty", "platform": "Linux-x86_64", "cpu": "Some CPU", "cpu_count": 2, "threads": 2}
PAPER_A = "Someone et al., ICLR 2021, arXiv:0000.00000"
PAPER_B = "Other & Else, arXiv:1111.11111"


def _result(**kw) -> ClaimResult:
    base = {
        "claim_id": "fake.ok", "verdict": "holds", "numbers": {"trace_sam": [1.5, 2.25, 3.0], "trace_sgd": [4.0, 5, 6]},
        "summary": {"median_diff": 0.125, "wins": 3, "sam": 2.25, "sgd": 5.0},
        "criterion": "holds if SAM lower in >= 80% | of seeds", "seeds": [0, 1, 2], "paper": PAPER_A,
        "statement": "SAM is <flatter> & better. A second sentence.", "wall_time_s": 1.25, "notes": "A note.",
        "paper_reported": "Table 2: trace 1.20 vs 2.33", "headline": [["sam", "Hessian trace SAM", ""],
                                                                       ["sgd", "vs SGD", ""]],
    }
    return ClaimResult(**{**base, **kw})


def _results() -> list[ClaimResult]:
    return [_result(), _result(claim_id="other.one", paper=PAPER_B, verdict="does not hold", provisional=True,
                               headline=[["median_diff", "gain", "pt"]], paper_reported="no number in the paper"),
            _result(claim_id="fake.two", verdict="inconclusive", paper="Someone et al., arXiv:0000.00000")]


def test_overview_counts_and_one_line_per_paper():
    md = render_markdown(ReportPart(tuple(_results()), META))
    assert md.startswith("# optimlab report: paper claims\n")
    assert "**3 claims:** 1 holds · 1 does not hold · 1 inconclusive (1 provisional)" in md
    overview = md.split("## Overview")[1].split("## Summary")[0]
    lines = [line for line in overview.splitlines() if line.startswith("- ")]
    assert len(lines) == 2  # fake.ok and fake.two share the arXiv id, so one paper
    assert lines[0].startswith(f"- {PAPER_A.replace('arXiv:0000.00000', '[arXiv:0000.00000](https://arxiv.org/abs/0000.00000)')}: ")
    assert "[fake.ok](#claim-fake.ok) **holds** · [fake.two](#claim-fake.two) **inconclusive**" in lines[0]
    assert "[other.one](#claim-other.one) **does not hold** (provisional)" in lines[1]


def test_summary_grouped_by_paper_with_paper_reported_beside_measured():
    md = render_markdown(ReportPart(tuple(_results()), META))
    summary = md.split("## Summary")[1].split("## The claims one by one")[0]
    assert summary.count("| claim | paper reported | measured here | verdict |") == 2
    assert summary.index("### Someone") < summary.index("fake.two") < summary.index("### Other")
    row = ("| [fake.ok](#claim-fake.ok): SAM is <flatter> & better. | Table 2: trace 1.20 vs 2.33 | "
           "Hessian trace SAM 2.25; vs SGD 5; 3 seeds | **holds** |")
    assert row in summary
    assert "gain 0.125 pt; 3 seeds | **does not hold** (provisional) |" in summary
    assert "median_diff=" not in summary and "wins=" not in summary  # no dump of every summary key
    # sections follow the paper order of the summary, each with an anchor
    assert md.index('<a id="claim-fake.two"></a>') < md.index('<a id="claim-other.one"></a>')


def test_header_states_commit_scale_machine():
    md = render_markdown(ReportPart((_result(),), META))
    assert "- **commit:** abc1234+dirty" in md and "- **scale:** quick" in md
    assert "- **machine:** Linux-x86_64; Some CPU, 2 logical CPUs; torch 2.x (2 threads); device cpu" in md
    page = render_html(ReportPart((_result(),), META))
    assert "abc1234+dirty" in page and "Some CPU, 2 logical CPUs" in page


def test_section_seed_table_and_escaping():
    md = render_markdown(ReportPart((_result(),), META))
    assert "- **Criterion:** holds if SAM lower in >= 80% | of seeds" in md
    assert "- **Paper reported:** Table 2: trace 1.20 vs 2.33" in md
    assert "| metric | median | seed 0 | seed 1 | seed 2 |" in md
    assert "| trace_sam | 2.25 | 1.5 | 2.25 | 3 |" in md and "| trace_sgd | 5 | 4 | 5 | 6 |" in md
    assert "A note." in md and "1.2 s" in md and "provisional" not in md and "![" not in md


def test_wide_seed_tables_are_split():
    r = _result(numbers={"x": [float(i) for i in range(20)]}, seeds=[0])
    md = render_markdown(ReportPart((r,), META))
    headers = [line for line in md.splitlines() if line.startswith("| metric |")]
    assert headers == ["| metric | median | #0 | #1 | #2 | #3 | #4 | #5 | #6 |",
                       "| metric | #7 | #8 | #9 | #10 | #11 | #12 | #13 |",
                       "| metric | #14 | #15 | #16 | #17 | #18 | #19 |"]
    page = render_html(ReportPart((r,), META))
    assert page.count('<table class="seeds">') == 3


def test_provisional_error_and_figure(tmp_path):
    run = tmp_path / "run"
    fig, ax = new_figure()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, run / "figures" / "fake.ok.png")
    r = _result(provisional=True, status="error", verdict="inconclusive", error="Traceback\n```boom```\n",
                figure="figures/fake.ok.png", numbers={})
    md = render_markdown(ReportPart((r,), META, base_dir=run), md_dir=run)
    assert "provisional: the tested algorithm is a provisional design (see notes)" in md
    assert "— (crashed) | **error** (provisional) |" in md
    assert "````\nTraceback\n```boom```\n````" in md  # fence longer than any backtick run inside
    assert "![fake.ok](figures/fake.ok.png)" in md
    # seen from another folder, the link is relative to that folder; a missing figure is left out
    other = render_markdown(ReportPart((r,), META, base_dir=run), md_dir=tmp_path / "docs")
    assert "![fake.ok](../run/figures/fake.ok.png)" in other
    assert "![" not in render_markdown(ReportPart((r,), META, base_dir=tmp_path / "nowhere"))


def test_html_self_contained_escaped_with_toc(tmp_path):
    fig, ax = new_figure()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "figures" / "fake.ok.png")
    results = [*_results()[:2], _result(claim_id="fake.two", figure="figures/fake.ok.png")]
    page = render_html(ReportPart(tuple(results), META, base_dir=tmp_path))
    assert "data:image/png;base64,iVBOR" in page
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    assert "SAM is &lt;flatter&gt; &amp; better." in page
    assert ">seed 2<" in page and ">2.25<" in page
    assert '<nav class="toc">' in page and 'href="#claim-other.one"' in page
    assert page.count('<tr class="paper">') == 2 and '<table class="summary">' in page
    for anchor in re.findall(r'href="#([^"]+)"', page):  # every internal link has its target
        assert f'id="{anchor}"' in page, anchor
    page_missing = render_html(ReportPart((_result(figure="figures/none.png"),), META, base_dir=tmp_path))
    assert "data:image" not in page_missing


def test_markdown_and_html_carry_the_same_content():
    results = _results()
    md = render_markdown(ReportPart(tuple(results), META))
    page = render_html(ReportPart(tuple(results), META))
    text = re.sub(r"<[^>]+>", " ", page)
    for r in results:
        for piece in (r.claim_id, r.paper_reported, "3 seeds", r.verdict):
            assert piece in md and piece in text
    for heading in ("Overview", "Summary", "The claims one by one"):
        assert heading in md and heading in text


def test_bench_report_and_multi_part_document(tmp_path):
    bench = _result(claim_id="sam.step_time", kind="bench", headline=[["sam", "SAM / SGD", "×"]])
    md = render_markdown(ReportPart((bench,), META))
    assert md.startswith("# optimlab report: benchmarks\n") and "**1 benchmark:** 1 holds" in md
    assert "| benchmark | paper reported | measured here | verdict |" in md and "SAM / SGD 2.25×" in md
    both = render_markdown([ReportPart(tuple(_results()), META), ReportPart((bench,), META)])
    assert both.startswith("# optimlab results\n")
    assert "Contents: [Paper claims](#claims) · [Benchmarks](#bench)" in both
    assert "## Paper claims" in both and "## Benchmarks" in both and "#### Summary" not in both
    assert '<a id="bench-sam.step_time"></a>' in both and "### Summary" in both


def test_rendering_is_deterministic(tmp_path):
    part = ReportPart(tuple(_results()), META, base_dir=tmp_path)
    assert render_markdown(part) == render_markdown(part)
    assert render_html(part) == render_html(part)


def test_write_report_writes_both(tmp_path):
    md, page = write_report(tmp_path, [_result()], META)
    assert md.read_text().startswith("# ") and page.read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_load_part_and_render_files(tmp_path):
    run = tmp_path / "run"
    write_json_atomic(run / "results.json", {**META, "results": [r.to_dict() for r in _results()]})
    part = load_part(run)
    assert part.meta["commit"] == "abc1234+dirty" and part.results[0].claim_id == "fake.ok"
    assert load_part(run / "results.json").source == run / "results.json"
    md, page = render_files([run], markdown_path=tmp_path / "docs" / "r.md", html_path=tmp_path / "r.html")
    assert "- **results file:** [../run/results.json](../run/results.json)" in md
    assert 'href="run/results.json"' in page
    with pytest.raises(ValueError, match="does not exist"):
        load_part(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no results.json"):
        load_part(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"no": "results"}))
    with pytest.raises(ValueError, match="not a results file"):
        load_part(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="at least one"):
        render_files([])


def test_plots_save_atomically(tmp_path):
    fig = paired_plot({"SGD": [3.0, 4.0], "SAM": [1.0, 2.0]}, seeds=[0, 1], ylabel="trace", logy=True)
    path = save_figure(fig, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    save_figure(paired_plot({"a": [1.0, 2.0], "b": [2.0, 3.0]}, style="lines", logy=True), tmp_path / "b.png")
    fig = curves_plot({"SGD": [[1.0, 0.5, 0.1], [1.0, 0.4, 0.2]], "SAM": [1.0, 0.3, 0.05]}, logy=True)
    save_figure(fig, tmp_path / "c.png")
    panels = {"trace": {"SGD": [3.0, 4.0], "SAM": [1.0, 2.0]}, "lambda": {"SGD": [5.0, 6.0], "SAM": [2.0, 1.0]}}
    save_figure(paired_plot(panels, labels=["w8/s0", "w8/s1"], title="two panels"), tmp_path / "d.png")
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png", "c.png", "d.png"]


def test_plots_validate_input():
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_plot({"a": [1.0], "b": [1.0, 2.0]})
    with pytest.raises(ValueError, match="not a mix"):
        paired_plot({"a": [1.0], "panel": {"b": [1.0]}})
    with pytest.raises(ValueError, match="x has"):
        curves_plot({"a": [1.0, 2.0]}, x=[0.0])
