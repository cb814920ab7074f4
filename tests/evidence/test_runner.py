"""run_claims: per-claim results, crash isolation, smoke verdicts, atomic files, resume."""

from __future__ import annotations

import json
import os

import pytest

from optimlab.evidence import (
    AtMost,
    PairedSign,
    RunContext,
    RunProgress,
    register_claim,
    registry,
    run_claims,
)
from optimlab.report.schema import ClaimResult, load_results

FAKE_IDS = ("fake.ok", "fake.crash", "fake.quickonly", "fake.paired")


@pytest.fixture
def fakes():
    """Registers fake claims into the real registry; ``calls`` counts runs, ``crash`` toggles fake.crash."""
    state = {"calls": {i: 0 for i in FAKE_IDS}, "crash": True, "ctx": None, "diffs": [1.0] * 5}

    @register_claim(id="fake.ok", paper="Fake 2024", statement="Always holds.", metric="m",
                    criterion=AtMost(1.0, what="x"), paper_reported="no number in the paper (derived here)", headline=(("x", "x", ""),), seeds={"smoke": 2, "quick": 3, "full": 4})
    def ok(ctx: RunContext) -> ClaimResult:
        state["calls"]["fake.ok"] += 1
        state["ctx"] = ctx
        ctx.progress("working")
        ctx.cache["seen"] = True
        return ClaimResult(claim_id="", verdict="holds", numbers={"x": [float(s) for s in ctx.seeds]},
                           summary={"n": len(ctx.seeds)})

    @register_claim(id="fake.crash", paper="Fake 2024", statement="Crashes.", metric="m", criterion=AtMost(1.0, what="x"), paper_reported="no number in the paper (derived here)", headline=(("x", "x", ""),))
    def crash(ctx: RunContext) -> ClaimResult:
        state["calls"]["fake.crash"] += 1
        state["saw_cache"] = ctx.cache.get("seen", False)
        if state["crash"]:
            raise RuntimeError("deliberate failure")
        return ClaimResult(claim_id="fake.crash", verdict="does not hold")

    @register_claim(id="fake.quickonly", paper="Fake", statement="s", metric="m", criterion=AtMost(1.0, what="x"), paper_reported="no number in the paper (derived here)", headline=(("x", "x", ""),),
                    scales=("smoke", "quick"))
    def quickonly(ctx: RunContext) -> ClaimResult:
        state["calls"]["fake.quickonly"] += 1
        return ClaimResult(claim_id="fake.quickonly", verdict="holds")

    # PairedSign needs 5 seeds by default; the claim computes its verdict through ctx.result.
    @register_claim(id="fake.paired", paper="Fake", statement="New beats baseline.", metric="m",
                    criterion=PairedSign(0.5, 0.8, what="new − baseline", unit="pt"),
                    paper_reported="Table 1: +1.0 pt", headline=(("median_diff", "median gain", "pt"),),
                    seeds={"smoke": 2, "quick": 5, "full": 5})
    def paired(ctx: RunContext) -> ClaimResult:
        state["calls"]["fake.paired"] += 1
        diffs = state["diffs"][: len(ctx.seeds)]
        return ctx.result(verdict=ctx.claim.criterion.evaluate(diffs), numbers={"diff": diffs}, summary={})

    yield state
    for i in FAKE_IDS:
        registry._CLAIMS.pop(i, None)


def claims(*ids):
    return [registry._CLAIMS[i] for i in ids]


def test_results_filled_and_crash_isolated(fakes, tmp_path):
    events = []

    class Rec(RunProgress):
        def message(self, claim, msg):
            events.append((claim.id, msg))

    s = run_claims(claims("fake.ok", "fake.crash"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path,
                   progress=Rec())
    ok, bad = s.results
    assert (ok.claim_id, ok.verdict, ok.status, ok.seeds, ok.scale) == ("fake.ok", "holds", "ok", [0, 1, 2], "quick")
    assert ok.paper == "Fake 2024" and ok.criterion == AtMost(1.0, what="x").describe() and ok.kind == "claim" and ok.wall_time_s >= 0
    assert bad.status == "error" and bad.verdict == "inconclusive" and "deliberate failure" in bad.error
    assert s.crashed == ["fake.crash"] and events == [("fake.ok", "working")]
    assert fakes["saw_cache"], "one cache is shared by the claims of one invocation"
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"optimlab_version", "created", "scale", "device", "torch"} <= set(data)
    assert [r["claim_id"] for r in data["results"]] == ["fake.ok", "fake.crash"]
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.html").exists()


def test_seeds_override_and_scale_support(fakes, tmp_path):
    s = run_claims(claims("fake.ok", "fake.quickonly"), scale="full", seeds=2, device="cpu", out_dir=tmp_path)
    assert s.results[0].seeds == [0, 1]
    assert s.results[1].status == "error" and "does not support scale 'full'" in s.results[1].error
    assert fakes["calls"]["fake.quickonly"] == 0


def test_smoke_forces_inconclusive(fakes, tmp_path):
    (r,) = run_claims(claims("fake.ok"), scale="smoke", seeds=None, device="cpu", out_dir=tmp_path).results
    assert r.verdict == "inconclusive" and r.seeds == [0, 1]
    assert "smoke scale: verdict inconclusive by construction; computed verdict was holds" in r.notes


def test_other_claims_kept(fakes, tmp_path):
    run_claims(claims("fake.ok"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path)
    run_claims(claims("fake.quickonly"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path)
    assert list(load_results(tmp_path / "results.json")) == ["fake.ok", "fake.quickonly"]


def test_resume_skips_ok_and_reruns_errors(fakes, tmp_path):
    run_claims(claims("fake.ok", "fake.crash"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path)
    assert fakes["calls"] == {"fake.ok": 1, "fake.crash": 1, "fake.quickonly": 0, "fake.paired": 0}
    fakes["crash"] = False
    s = run_claims(claims("fake.ok", "fake.crash"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path,
                   resume=True)
    assert fakes["calls"]["fake.ok"] == 1 and fakes["calls"]["fake.crash"] == 2
    assert s.skipped == ["fake.ok"] and s.crashed == []
    assert load_results(tmp_path / "results.json")["fake.crash"].status == "ok"
    # a different scale is not "already done"
    run_claims(claims("fake.ok"), scale="smoke", seeds=None, device="cpu", out_dir=tmp_path, resume=True)
    assert fakes["calls"]["fake.ok"] == 2


def test_killed_write_keeps_previous_results(fakes, tmp_path, monkeypatch):
    run_claims(claims("fake.ok"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path)
    before = (tmp_path / "results.json").read_text()
    real_replace = os.replace

    def killed(src, dst, *a, **kw):
        if str(dst).endswith("results.json"):
            raise OSError("simulated kill during rename")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError, match="simulated kill"):
        run_claims(claims("fake.quickonly"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path)
    assert (tmp_path / "results.json").read_text() == before
    assert list(json.loads(before)["results"][0]) and list(load_results(tmp_path / "results.json")) == ["fake.ok"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_killed_mid_write_leaves_no_temp(fakes, tmp_path, monkeypatch):
    run_claims(claims("fake.ok"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path)
    before = (tmp_path / "results.json").read_text()

    def killed(fd):
        raise OSError("simulated kill during write")

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(OSError, match="during write"):
        run_claims(claims("fake.quickonly"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path)
    assert (tmp_path / "results.json").read_text() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_bad_arguments(fakes, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_claims(claims("fake.ok"), scale="quick", seeds=None, device="cuda", out_dir=tmp_path)
    with pytest.raises(ValueError, match="scale must be one of"):
        run_claims(claims("fake.ok"), scale="huge", seeds=None, device="cpu", out_dir=tmp_path)
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        run_claims(claims("fake.ok"), scale="quick", seeds=0, device="cpu", out_dir=tmp_path)
    assert fakes["calls"]["fake.ok"] == 0


def test_context_carries_the_claim(fakes, tmp_path):
    run_claims(claims("fake.ok"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path)
    assert fakes["ctx"].claim is registry._CLAIMS["fake.ok"]


def test_enough_seeds_keeps_the_verdict(fakes, tmp_path):
    (r,) = run_claims(claims("fake.paired"), scale="quick", seeds=None, device="cpu", out_dir=tmp_path).results
    assert r.status == "ok" and r.verdict == "holds" and r.seeds == [0, 1, 2, 3, 4]
    assert r.summary["wins"] == 5 and r.summary["needed"] == 4 and r.paper_reported == "Table 1: +1.0 pt"
    assert r.headline == [["median_diff", "median gain", "pt"]] and "needs ≥ 5 seeds" in r.criterion
    assert "too few seeds" not in r.notes
    assert "median gain 1 pt" in (tmp_path / "report.md").read_text()
    assert load_results(tmp_path / "results.json")["fake.paired"].headline == r.headline


def test_too_few_seeds_forces_inconclusive(fakes, tmp_path):
    """4 seeds against the criterion's min_seeds=5: inconclusive, and the notes say why."""
    (r,) = run_claims(claims("fake.paired"), scale="quick", seeds=4, device="cpu", out_dir=tmp_path).results
    assert r.verdict == "inconclusive" and r.seeds == [0, 1, 2, 3]
    assert "too few seeds: the criterion needs at least 5 seeds and this run used 4" in r.notes
    assert "computed verdict was holds" in r.notes
    assert "too few seeds" in (tmp_path / "report.md").read_text()


def test_text_criterion_needs_one_seed(fakes, tmp_path):
    (r,) = run_claims(claims("fake.ok"), scale="quick", seeds=1, device="cpu", out_dir=tmp_path).results
    assert r.verdict == "holds" and "too few seeds" not in r.notes
