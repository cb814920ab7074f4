"""Every registered claim and benchmark runs end to end at smoke scale (DESIGN.md, Scales).

One test per claim id, so a slow or broken claim is named in the failure. Verdicts are not checked here (at smoke
scale they are inconclusive by construction); the schema of the result is.
"""

import json

import pytest

from optimlab.experiments.registry import all_benches, all_claims
from optimlab.experiments.runner import run_claims
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
def test_claim_runs_at_smoke_scale(claim_id, tmp_path):
    claim = CLAIMS[claim_id]
    assert "smoke" in claim.scales
    summary = run_claims([claim], scale="smoke", seeds=None, device="cpu", out_dir=tmp_path)
    (result,) = summary.results
    _check(result, claim, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["claim_id"] for r in data["results"]] == [claim_id]
    assert data["results"][0]["verdict"] in VERDICTS
    assert claim_id in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("bench_id", sorted(BENCHES))
def test_bench_runs_at_smoke_scale(bench_id, tmp_path):
    bench = BENCHES[bench_id]
    summary = run_claims([bench], scale="smoke", seeds=None, device="cpu", out_dir=tmp_path)
    (result,) = summary.results
    _check(result, bench, tmp_path)
    assert result.kind == "bench"


def test_sam_claim_is_registered_with_its_criterion():
    claim = CLAIMS["sam.flat_minima"]
    assert "80%" in claim.criterion and "0.05" in claim.criterion
    assert claim.seeds["quick"] == 5
