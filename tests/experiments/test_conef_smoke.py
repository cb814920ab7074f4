"""The ConEF claims and the comm benchmarks at smoke scale (their results come from the shared ``smoke_runs``
fixture, one invocation for every claim, so the claims of a group share their runs as in ``optimlab reproduce``).

Verdicts are not checked (inconclusive by construction at smoke scale); the result schema and the exact counts that
do not depend on scale are.
"""

import json

from conftest import smoke_result
from optimlab.evidence import Criterion, all_benches, all_claims, select

CLAIM_IDS = ["conef.memory_saving", "conef.accuracy_vs_sgd", "conef.bytes_per_step", "conef.speedup",
             "conef.sketch_contraction"]


def test_conef_claims_and_comm_benches_at_smoke_scale(smoke_runs):
    claims = select(all_claims(), ["conef"])
    assert sorted(c.id for c in claims) == sorted(CLAIM_IDS)
    benches = select(all_benches(), ["comm"])
    assert sorted(b.id for b in benches) == ["comm.ddp_hooks", "comm.memory_ops"]
    for c in claims + benches:
        assert isinstance(c.criterion, Criterion) and c.paper and c.paper_reported and c.headline
        assert "smoke" in c.scales
    found = {c.id: smoke_result(smoke_runs, c.id) for c in claims + benches}
    results = {cid: r for cid, (r, _) in found.items()}
    for cid, r in results.items():
        assert r.status == "ok", (cid, r.error)
        assert r.verdict == "inconclusive" and r.scale == "smoke"
        assert r.numbers and all(isinstance(v, list) and v for v in r.numbers.values()), cid
        assert r.figure and (found[cid][1] / r.figure).is_file()
        assert "computed verdict was" in r.notes
    # Scale-independent facts measured in the run (claims 1 and 3):
    b = results["conef.bytes_per_step"].summary
    assert b["randomblock_numel"] == 8969 and b["powersgd2_numel"] == b["pytorch_powersgd2_numel"] == 2718
    assert b["steps_checked"] == 2 and "computed verdict was holds" in results["conef.bytes_per_step"].notes
    m = results["conef.memory_saving"].summary
    assert m["fp16_exactly_half"] == 1.0 and m["measured_equals_predicted"] == 1.0
    assert m["max_ratio_to_ef_s0.2"] <= 0.205 and m["processes_hold_same_bytes"] == 1.0
    assert 0 < m["max_peak_ratio_to_ef"] < 1  # the peak (persistent + transient) is gated, and below EF's
    assert len(results["conef.memory_saving"].numbers["peak_ratio_to_ef"]) == 2  # digits MLP and CNN, s=0.2, fp32
    assert "computed verdict was holds" in results["conef.memory_saving"].notes
    for r in results.values():  # the headline keys name numbers the run produced
        assert all(key in r.summary for key, _, _ in r.headline), r.claim_id
    assert results["comm.ddp_hooks"].summary["payload_our_powersgd_over_pytorch"] == 1.0
    data = json.loads((found["conef.memory_saving"][1] / "results.json").read_text())
    assert set(CLAIM_IDS) <= {r["claim_id"] for r in data["results"]}
