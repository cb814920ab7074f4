"""Markdown / HTML report rendering and the plot helpers."""

from __future__ import annotations

import os

import pytest

from optimlab.report.plots import curves_plot, new_figure, paired_plot, save_figure
from optimlab.report.schema import ClaimResult
from optimlab.report.writer import format_number, render_html, render_markdown, write_report

META = {"scale": "quick", "device": "cpu", "torch": "2.x", "created": "2025-01-01T00:00:00+00:00"}


def _result(**kw) -> ClaimResult:
    base = {
        "claim_id": "fake.ok", "verdict": "holds", "numbers": {"trace_sam": [1.5, 2.25, 3.0], "trace_sgd": [4.0, 5, 6]},
        "summary": {"median_diff": 0.125, "wins": 3}, "criterion": "holds if SAM lower in >= 80% | of seeds",
        "seeds": [0, 1, 2], "paper": "Someone et al., arXiv:0000.00000", "statement": "SAM is <flatter> & better.",
        "wall_time_s": 1.25, "notes": "A note.",
    }
    return ClaimResult(**{**base, **kw})


def test_format_number():
    assert format_number(3) == "3"
    assert format_number(0.123456) == "0.1235"
    assert format_number(float("nan")) == "nan" and format_number(float("-inf")) == "-inf"


def test_markdown_summary_row_and_seed_table():
    md = render_markdown([_result()], META)
    assert "# optimlab report" in md and "quick" in md and "2025-01-01" in md
    # summary row: claim | verdict | key numbers | criterion (pipe escaped)
    assert "| fake.ok | holds | median_diff=0.125, wins=3 | holds if SAM lower in >= 80% \\| of seeds |" in md
    assert "| metric | seed 0 | seed 1 | seed 2 | median |" in md
    assert "| trace_sam | 1.5 | 2.25 | 3 | 2.25 |" in md
    assert "| trace_sgd | 4 | 5 | 6 | 5 |" in md
    assert "Someone et al." in md and "A note." in md and "1.2 s" in md
    assert "provisional" not in md and "![" not in md


def test_markdown_provisional_error_and_figure():
    r = _result(provisional=True, status="error", verdict="inconclusive", error="Traceback\n```boom```\n",
                figure="figures/fake.ok.png", numbers={})
    md = render_markdown([r], META)
    assert "provisional: the tested algorithm is a provisional design (see notes)" in md
    assert "| fake.ok | error |" in md
    assert "````\nTraceback\n```boom```\n````" in md  # fence longer than any backtick run inside
    assert "![fake.ok](figures/fake.ok.png)" in md


def test_html_self_contained_and_escaped(tmp_path):
    fig, ax = new_figure()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "figures" / "fake.ok.png")
    page = render_html([_result(figure="figures/fake.ok.png")], META, tmp_path)
    assert "data:image/png;base64,iVBOR" in page
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    assert "SAM is &lt;flatter&gt; &amp; better." in page
    assert ">seed 2<" in page and ">2.25<" in page


def test_html_missing_figure(tmp_path):
    page = render_html([_result(figure="figures/none.png")], META, tmp_path)
    assert "figure missing" in page and "data:image" not in page


def test_write_report_writes_both(tmp_path):
    md, page = write_report(tmp_path, [_result()], META)
    assert md.read_text().startswith("# ") and page.read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


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


def test_paper_reported_and_headline(tmp_path):
    r = _result(paper_reported="Table 2: 1.20 vs 2.33", headline=[["median_diff", "median gain", "pt"],
                                                                  ["wins", "wins", ""], ["absent", "missing", "%"]])
    md = render_markdown([r], META)
    assert "- **Paper reported:** Table 2: 1.20 vs 2.33" in md
    assert "| fake.ok | holds | median gain 0.125 pt; wins 3; missing — |" in md
    page = render_html([r], META, tmp_path)
    assert "<b>Paper reported:</b> Table 2: 1.20 vs 2.33" in page and "median gain 0.125 pt; wins 3" in page
    assert "Paper reported" not in render_markdown([_result()], META)
