"""The matrix-factorisation claims of arXiv:2410.18965 (``nora.*``) and ``optimlab bench matfac`` run end to end at
smoke scale (m = 30, 2 seeds) and return a well-formed ClaimResult. Verdicts are not checked here (see
test_nora_verdicts.py for the verdict logic on known numbers)."""

import math

import pytest

from conftest import smoke_result
from optimlab.evidence import all_benches, all_claims
from optimlab.report.schema import VERDICTS, ClaimResult

MATFAC_CLAIMS = ["nora.asym_one_step", "nora.sym_init_sensitivity", "nora.sym_quadratic", "nora.up_linear"]


def _check(result, claim, out_dir):
    assert isinstance(result, ClaimResult) and result.claim_id == claim.id and result.status == "ok"
    assert result.verdict in VERDICTS and result.criterion == claim.criterion.describe()
    assert result.numbers and all(isinstance(v, list) and v for v in result.numbers.values())
    assert all(isinstance(x, (int, float)) for v in result.numbers.values() for x in v)
    assert result.summary and all(isinstance(v, (int, float, str)) for v in result.summary.values())
    assert all(key in result.summary for key, _, _ in claim.headline)
    assert result.figure and (out_dir / result.figure).is_file() and result.figure.endswith(".png")
    result.to_dict()  # JSON-safe


@pytest.mark.parametrize("claim_id", MATFAC_CLAIMS)
def test_matfac_claim_runs_at_smoke_scale(claim_id, smoke_runs):
    claim = all_claims()[claim_id]
    assert claim.seeds["smoke"] == 2 and claim.seeds["quick"] == 5 and claim.min_seeds == 5
    assert claim.paper_reported and 1 <= len(claim.headline) <= 3 and "arXiv:2410.18965" in claim.paper
    result, out_dir = smoke_result(smoke_runs, claim_id)  # seeds [0, 1]: the smoke default
    assert result.seeds == [0, 1]
    _check(result, claim, out_dir)
    assert "UNVERIFIED" in result.notes and "UNVERIFIED" in result.paper_reported + result.notes
    assert all(len(v) == 2 for v in result.numbers.values())  # one value per seed
    if claim_id == "nora.sym_quadratic":  # the quadratic ratio e_{t+1}/e_t^2 is reported against its bound
        ratios = [x for k, v in result.numbers.items() if k.endswith("max (e+/e^2)/B_t nystrom") for x in v]
        assert ratios and all(math.isnan(x) or x > 0 for x in ratios)
        assert "r=5,kappa=10 median tail nystrom" in result.summary  # always 1e-2 -> 1e-12
        assert not any("eps0->floor" in k for k in result.summary)  # the declared window: kappa = 1e4, full only
        assert "r=10,kappa=10 N1e-10 gd" in result.numbers  # the GD curve of Fig. 1(a), not gated
    if claim_id == "nora.sym_init_sensitivity":  # (b) in both perturb_modes
        assert {"OP tail perturbed 1e-3 relative", "OP tail perturbed 1e-3 absolute"} <= set(result.numbers)


@pytest.mark.parametrize("bench_id", ["matfac.init", "matfac.step"])
def test_matfac_bench_runs_at_smoke_scale(bench_id, smoke_runs):
    bench = all_benches()[bench_id]
    result, _ = smoke_result(smoke_runs, bench_id)
    assert result.claim_id == bench_id and result.verdict in VERDICTS and result.kind == "bench"
    assert result.numbers and result.summary and all(isinstance(v, list) and v for v in result.numbers.values())
    assert all(key in result.summary for key, _, _ in bench.headline)
    assert all(k in result.summary for k in ("iterations random/nystrom", "seconds random/nystrom",
                                             "seconds nystrom/eigsh")) if bench_id == "matfac.init" else \
        all(k in result.summary for k in ("symmetric scaledgd/gd", "asymmetric torch/numpy"))
