"""What is specific to the SAM-family claims beyond the generic smoke run: shared runs, flags, exact checks."""

import optimlab.experiments.sam_label_noise as ln
from optimlab.experiments.registry import RunContext, all_claims
from optimlab.experiments.runner import run_claims


def test_label_noise_group_trains_once_for_its_four_claims(tmp_path, monkeypatch):
    calls = []
    real = ln._run

    def counting(method, seed, scale, device):
        calls.append((method, seed))
        return real(method, seed, scale, device)

    monkeypatch.setattr(ln, "_run", counting)
    claims = all_claims()
    ids = ["sam.label_noise", "vasso.adversary_alignment", "vasso.label_noise", "infosam.label_noise"]
    assert {claims[i].group for i in ids} == {ln.GROUP}
    summary = run_claims([claims[i] for i in ids], scale="smoke", seeds=1, device="cpu", out_dir=tmp_path)
    assert all(r.status == "ok" for r in summary.results), [r.error for r in summary.results]
    assert sorted(calls) == sorted((m, 0) for m in ln.METHODS)  # 5 runs, not 20
    info = {r.claim_id: r for r in summary.results}["infosam.label_noise"]
    assert info.provisional and claims["infosam.label_noise"].provisional
    assert "provisional" in info.notes.lower()
    align = {r.claim_id: r for r in summary.results}["vasso.adversary_alignment"]
    assert len(align.numbers["mean_alignment_gain"]) == 1


def test_presam_special_cases_errors_are_within_threshold(tmp_path):
    claim = all_claims()["presam.special_cases"]
    result = claim.run(RunContext(scale="smoke", seeds=[0], out_dir=tmp_path))
    assert result.summary["cases"] == 6
    assert result.summary["max_relative_error"] <= 1e-6
    assert result.verdict == "holds"
