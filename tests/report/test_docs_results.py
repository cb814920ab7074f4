"""docs/results.md is exactly the report of the results files committed beside it, and the README copies no number.

To refresh it: see the README ("Results on this project's machine").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from optimlab.report.writer import render_files

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SOURCES = [DOCS / "results" / "claims.json", DOCS / "results" / "bench.json"]
COMMAND = "optimlab report docs/results/claims.json docs/results/bench.json --markdown docs/results.md"


def test_docs_results_md_is_the_rendering_of_the_committed_results():
    expected, _ = render_files(SOURCES, markdown_path=DOCS / "results.md")
    assert (DOCS / "results.md").read_text(encoding="utf-8") == expected, f"stale: rerun `{COMMAND}`"


def test_committed_results_state_commit_scale_and_machine():
    for path in SOURCES:
        meta = json.loads(path.read_text(encoding="utf-8"))
        assert meta["scale"] == "quick" and meta["commit"] and meta["results"], path
        for key in ("platform", "cpu", "cpu_count", "torch", "threads", "device"):
            assert key in meta, (path, key)


def test_docs_results_md_links_only_to_what_is_in_the_repository():
    text = (DOCS / "results.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#][^)]*)\)", text):
        if not target.startswith(("http://", "https://")):
            assert (DOCS / target).is_file(), f"docs/results.md links to {target}, which is not in docs/"
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert f'<a id="{anchor}"></a>' in text, anchor


def test_readme_links_to_the_results_and_copies_no_result_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/results.md)" in readme
    assert not re.search(r"^\|\s*(claim|benchmark)\s*\|", readme, flags=re.MULTILINE)
    claim_ids = {r["claim_id"] for p in SOURCES for r in json.loads(p.read_text(encoding="utf-8"))["results"]}
    rows = [line for line in readme.splitlines() if line.startswith("|") and any(f"`{c}`" in line for c in claim_ids)]
    assert not rows, f"the README lists results by hand: {rows}"
