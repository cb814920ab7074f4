"""The ConEF claims and the comm benchmarks run end to end at smoke scale in one invocation (shared runs).

Verdicts are not checked (inconclusive by construction at smoke scale); the result schema and the exact counts that
do not depend on scale are.
"""

import json

from optimlab.experiments.registry import all_benches, all_claims, select
from optimlab.experiments.runner import run_claims

CLAIM_IDS = ["conef.memory_saving", "conef.accuracy_vs_sgd", "conef.bytes_per_step", "conef.speedup",
             "conef.sketch_contraction"]


def test_conef_claims_and_comm_benches_at_smoke_scale(tmp_path):
    claims = select(all_claims(), ["conef"])
    assert sorted(c.id for c in claims) == sorted(CLAIM_IDS)
    benches = select(all_benches(), ["comm"])
    assert sorted(b.id for b in benches) == ["comm.ddp_hooks", "comm.memory_ops"]
    for c in claims + benches:
        assert c.criterion and c.paper and "smoke" in c.scales
    summary = run_claims(claims, scale="smoke", seeds=None, device="cpu", out_dir=tmp_path / "claims")
    bench = run_claims(benches, scale="smoke", seeds=None, device="cpu", out_dir=tmp_path / "bench")
    results = {r.claim_id: r for r in summary.results + bench.results}
    for cid, r in results.items():
        assert r.status == "ok", (cid, r.error)
        assert r.verdict == "inconclusive" and r.scale == "smoke"
        assert r.numbers and all(isinstance(v, list) and v for v in r.numbers.values()), cid
        assert r.figure and ((tmp_path / ("bench" if cid.startswith("comm.") else "claims")) / r.figure).is_file()
        assert "computed verdict was" in r.notes
    # Scale-independent facts measured in the run (specs/comm.md §4.1, §4.3):
    b = results["conef.bytes_per_step"].summary
    assert b["randomblock_numel"] == 8969 and b["powersgd2_numel"] == b["pytorch_powersgd2_numel"] == 2718
    m = results["conef.memory_saving"].summary
    assert m["fp16_exactly_half"] == 1.0 and m["measured_equals_predicted"] == 1.0
    assert m["max_ratio_to_ef_s0.2"] <= 0.205
    assert results["comm.ddp_hooks"].summary["payload_our_powersgd_over_pytorch"] == 1.0
    data = json.loads((tmp_path / "claims" / "results.json").read_text())
    assert sorted(r["claim_id"] for r in data["results"]) == sorted(CLAIM_IDS)
