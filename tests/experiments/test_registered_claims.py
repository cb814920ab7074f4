"""Every registered claim and benchmark runs end to end at smoke scale (docs/DESIGN.md, adding a claim).

All of them run once, in one invocation per kind (the ``smoke_runs`` fixture of tests/conftest.py, which family
smoke tests share); one test per claim id reads its result, so a broken claim is named in the failure. Verdicts
are not checked here (at smoke scale they are inconclusive by construction); the schema of the result is.
"""

import json

import pytest

from conftest import smoke_result
from optimlab.evidence import all_benches, all_claims
from optimlab.report.schema import VERDICTS

CLAIMS = all_claims()
BENCHES = all_benches()


def _check(result, claim, out_dir):
    assert result.status == "ok", result.error
    assert result.claim_id == claim.id
    assert result.verdict == "inconclusive"  # forced at smoke scale
    assert result.scale == "smoke"
    assert result.numbers and all(isinstance(v, list) and v for v in result.numbers.values())
    assert result.criterion
    if result.figure is not None:
        assert (out_dir / result.figure).is_file()


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_claim_runs_at_smoke_scale(claim_id, smoke_runs):
    claim = CLAIMS[claim_id]
    assert "smoke" in claim.scales
    result, out_dir = smoke_result(smoke_runs, claim_id)
    _check(result, claim, out_dir)
    data = {r["claim_id"]: r for r in json.loads((out_dir / "results.json").read_text())["results"]}
    assert data[claim_id]["verdict"] in VERDICTS
    assert claim_id in (out_dir / "report.md").read_text()


@pytest.mark.parametrize("bench_id", sorted(BENCHES))
def test_bench_runs_at_smoke_scale(bench_id, smoke_runs):
    bench = BENCHES[bench_id]
    result, out_dir = smoke_result(smoke_runs, bench_id)
    _check(result, bench, out_dir)
    assert result.kind == "bench"


def test_sam_claim_is_registered_with_its_criterion():
    claim = CLAIMS["sam.flat_minima"]
    assert "80%" in claim.criterion_text and "0.05" in claim.criterion_text
    assert claim.seeds["quick"] == 5
