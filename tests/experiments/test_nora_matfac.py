"""The matrix-factorisation claims of arXiv:2410.18965 (``nora.*``) and ``optimlab bench matfac`` run end to end at
smoke scale (m = 30, 2 seeds) and return a well-formed ClaimResult. Verdicts are not checked here."""

import math

import pytest

from optimlab.experiments.registry import RunContext, all_benches, all_claims
from optimlab.report.schema import VERDICTS, ClaimResult

MATFAC_CLAIMS = ["nora.asym_one_step", "nora.sym_init_sensitivity", "nora.sym_quadratic", "nora.up_linear"]


def _check(result, claim_id, out_dir):
    assert isinstance(result, ClaimResult) and result.claim_id == claim_id and result.status == "ok"
    assert result.verdict in VERDICTS
    assert result.numbers and all(isinstance(v, list) and v for v in result.numbers.values())
    assert all(isinstance(x, (int, float)) for v in result.numbers.values() for x in v)
    assert result.summary and all(isinstance(v, (int, float)) for v in result.summary.values())
    assert result.figure and (out_dir / result.figure).is_file() and result.figure.endswith(".png")
    assert "UNVERIFIED" in result.notes or result.kind == "bench"
    result.to_dict()  # JSON-safe


@pytest.mark.parametrize("claim_id", MATFAC_CLAIMS)
def test_matfac_claim_runs_at_smoke_scale(claim_id, tmp_path):
    claim = all_claims()[claim_id]
    assert claim.seeds["smoke"] == 2 and claim.seeds["quick"] == 5 and claim.criterion
    result = claim.run(RunContext(scale="smoke", seeds=[0, 1], out_dir=tmp_path))
    _check(result, claim_id, tmp_path)
    assert all(len(v) == 2 for v in result.numbers.values())  # one value per seed
    if claim_id == "nora.sym_quadratic":  # the quadratic ratio e_{t+1}/e_t^2 is reported against its bound
        ratios = [x for k, v in result.numbers.items() if k.endswith("max (e+/e^2)/B_t nystrom") for x in v]
        assert ratios and all(math.isnan(x) or x > 0 for x in ratios)


@pytest.mark.parametrize("bench_id", ["matfac.init", "matfac.step"])
def test_matfac_bench_runs_at_smoke_scale(bench_id, tmp_path):
    bench = all_benches()[bench_id]
    result = bench.run(RunContext(scale="smoke", seeds=bench.default_seeds("smoke"), out_dir=tmp_path))
    assert result.claim_id == bench_id and result.verdict in VERDICTS
    assert result.numbers and result.summary and all(isinstance(v, list) and v for v in result.numbers.values())
    assert all(k in result.summary for k in ("iterations random/nystrom", "seconds random/nystrom",
                                             "seconds nystrom/eigsh")) if bench_id == "matfac.init" else \
        all(k in result.summary for k in ("symmetric scaledgd/gd", "asymmetric torch/numpy"))
