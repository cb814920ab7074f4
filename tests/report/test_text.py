"""The text pieces both renderers share: numbers, headlines, paper groups, shortening, metadata lines."""

from __future__ import annotations

from optimlab.report.schema import ClaimResult
from optimlab.report.text import (
    ReportPart,
    arxiv_ids,
    format_headline,
    format_measured,
    format_number,
    meta_lines,
    paper_groups,
    part_keys,
    seed_tables,
    short_statement,
    shorten,
    verdict_counts,
)


def _r(cid="a.b", paper="P, arXiv:2010.01412", **kw) -> ClaimResult:
    return ClaimResult(claim_id=cid, verdict=kw.pop("verdict", "holds"), paper=paper, **kw)


def test_format_number():
    assert format_number(3) == "3"
    assert format_number(0.123456) == "0.1235"
    assert format_number(float("nan")) == "nan" and format_number(float("-inf")) == "-inf"


def test_headline_measured_and_fallback():
    r = _r(summary={"x": 1.5, "y": 2}, seeds=[0, 1], headline=[["x", "ratio", "×"], ["y", "gap", "pt"],
                                                              ["z", "absent", "%"]])
    assert format_headline(r) == "ratio 1.5×; gap 2 pt; absent —"
    assert format_measured(r) == "ratio 1.5×; gap 2 pt; absent —; 2 seeds"
    old = _r(summary={"k1": 1, "k2": 2, "k3": 3, "k4": 4}, seeds=[0])  # a file written before headlines
    assert format_measured(old) == "k1 1; k2 2; k3 3; 1 seed"
    assert format_measured(_r(status="error", verdict="inconclusive")) == "— (crashed)"


def test_verdict_counts_in_fixed_order():
    results = [_r(verdict="inconclusive"), _r(), _r(status="error", verdict="inconclusive"), _r()]
    assert verdict_counts(results) == [("holds", 2), ("inconclusive", 1), ("error", 1)]


def test_paper_groups_by_arxiv_id_in_first_seen_order():
    results = [_r("s.1", "Foret et al., arXiv:2010.01412"), _r("v.1", "Li & Giannakis, arXiv:2309.15639"),
               _r("s.2", "Foret, Kleiner, Mobahi, Neyshabur, ICLR 2021, arXiv:2010.01412"), _r("x.1", "No id"),
               _r("x.2", "No  id")]
    groups = paper_groups(results)
    assert [[r.claim_id for r in g.results] for g in groups] == [["s.1", "s.2"], ["v.1"], ["x.1", "x.2"]]
    assert groups[0].paper == "Foret, Kleiner, Mobahi, Neyshabur, ICLR 2021, arXiv:2010.01412"  # the longest
    assert arxiv_ids("a arXiv:2010.01412v2; b arXiv:2309.15639") == ("2010.01412", "2309.15639")


def test_shorten_and_short_statement():
    assert shorten("a  b\nc", 10) == "a b c"
    cut = shorten("word " * 40, 50)
    assert len(cut) <= 50 and cut.endswith("word…")
    assert short_statement("First sentence here. Second one.") == "First sentence here."
    assert short_statement("e.g. lower. Then") == "e.g. lower."


def test_meta_lines_skip_absent_keys():
    assert meta_lines({"scale": "quick"}) == [("scale", "quick")]
    lines = dict(meta_lines({"commit": "unknown", "device": "cuda", "gpu": "H100", "torch": "2.x"}))
    assert lines == {"commit": "unknown", "machine": "torch 2.x; device cuda (H100)"}


def test_seed_table_median_first_and_repeats():
    (header, rows), = seed_tables(_r(numbers={"m": [3.0, 1.0, 2.0]}, seeds=[0, 1, 2]))
    assert header == ["metric", "median", "seed 0", "seed 1", "seed 2"] and rows == [["m", "2", "3", "1", "2"]]
    (header, rows), = seed_tables(_r(numbers={"m": [1.0, 2.0], "n": [5.0]}, seeds=[0]))
    assert header == ["metric", "median", "#0", "#1"] and rows[1] == ["n", "5", "5", ""]


def test_part_keys_distinct():
    claims, bench = ReportPart((_r(),), {}), ReportPart((_r(kind="bench"),), {})
    assert part_keys([claims, bench, claims]) == ["claims", "bench", "claims-2"]
