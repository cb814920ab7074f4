"""Claim declarations, ctx.result / ctx.save_figure, and discovery of claim modules."""

from __future__ import annotations

import sys
import textwrap

import pytest

from optimlab.evidence import (
    AtMost,
    Claim,
    ClaimResult,
    Outcome,
    PairedSign,
    RunContext,
    registry,
)
from optimlab.report.plots import new_figure
from optimlab.report.schema import load_results, write_json_atomic

CRITERION = PairedSign(0.5, 0.8, what="new − old", unit="pt")


def _run(ctx: RunContext) -> ClaimResult:  # never called
    raise AssertionError


def _claim(**kw) -> Claim:
    decl = {"id": "fake.ctx", "paper": "Fake 2024, arXiv:0000.00000", "statement": "New beats old.",
            "metric": "accuracy", "criterion": CRITERION, "run": _run,
            "paper_reported": "Table 2: +1.2 pt (ResNet-18, CIFAR-10)",
            "headline": (("median_diff", "median gain", "pt"), ("new_acc", "new", "%"))}
    return Claim(**{**decl, **kw})


def test_claim_declaration():
    c = _claim()
    assert c.criterion is CRITERION and c.criterion_text == CRITERION.describe() and c.min_seeds == 5
    assert c.headline == (("median_diff", "median gain", "pt"), ("new_acc", "new", "%"))
    assert _claim(headline=[["a", "b", "c"]]).headline == (("a", "b", "c"),)
    with pytest.raises(ValueError, match="headline"):
        _claim(headline=(("a", "b"),))
    with pytest.raises(ValueError, match="headline"):
        _claim(headline=(("a", "b", "c"),) * 4)
    with pytest.raises(ValueError, match="criterion must be a Criterion"):
        _claim(criterion=0.5)
    with pytest.raises(ValueError, match="paper.name"):
        _claim(id="nodot")


def test_claims_must_say_what_the_paper_reported_and_name_a_headline():
    for bad in ("", "  ", None):
        with pytest.raises(ValueError, match="paper_reported"):
            _claim(paper_reported=bad)
    with pytest.raises(ValueError, match="headline"):
        _claim(headline=())
    with pytest.raises(ValueError, match="criterion must be a Criterion"):
        _claim(criterion="holds if it wins")


def test_result_fills_what_the_context_knows(tmp_path):
    ctx = RunContext(scale="quick", seeds=[0, 1, 2, 3, 4], out_dir=tmp_path, claim=_claim(provisional=True))
    out = CRITERION.evaluate([1.0, 1.0, 1.0, 1.0, -1.0])
    fig, ax = new_figure()
    ax.plot([0, 1], [1, 0])
    r = ctx.result(verdict=out, numbers={"diff": (1.0, 1.0, 1.0, 1.0, -1.0)},
                   summary={"new_acc": 91.5, "wins": "kept"}, figure=fig, notes=["First.", "Second."])
    assert (r.claim_id, r.verdict, r.scale, r.seeds) == ("fake.ctx", "holds", "quick", [0, 1, 2, 3, 4])
    assert r.criterion == CRITERION.describe() and r.paper == "Fake 2024, arXiv:0000.00000"
    assert r.statement == "New beats old." and r.paper_reported.startswith("Table 2")
    assert r.headline == [["median_diff", "median gain", "pt"], ["new_acc", "new", "%"]]
    assert r.summary["median_diff"] == 1.0 and r.summary["needed"] == 4 and r.summary["wins"] == "kept"
    assert r.numbers == {"diff": [1.0, 1.0, 1.0, 1.0, -1.0]} and r.provisional and r.kind == "claim"
    assert r.notes == "First. Second." and r.figure == "figures/fake.ctx.png"
    assert (tmp_path / "figures" / "fake.ctx.png").read_bytes()[:4] == b"\x89PNG"


def test_result_with_a_reason_a_string_verdict_and_paths(tmp_path):
    ctx = RunContext(scale="full", seeds=[0], out_dir=tmp_path, claim=_claim())
    gated = Outcome("inconclusive", {"value": 0.2}, "precondition not met: the loss is too high")
    r = ctx.result(verdict=gated, numbers={}, summary={}, notes="A note.")
    assert r.verdict == "inconclusive" and r.notes == "A note. Verdict: precondition not met: the loss is too high."
    r = ctx.result(verdict="does not hold", numbers={}, summary={"x": 1}, figure=tmp_path / "figures" / "a.png")
    assert r.verdict == "does not hold" and r.summary == {"x": 1} and r.figure == "figures/a.png" and r.notes == ""
    assert ctx.result(verdict="holds", numbers={}, summary={}, figure="figures/b.png").figure == "figures/b.png"
    with pytest.raises(ValueError, match="verdict must be one of"):
        ctx.result(verdict="maybe", numbers={}, summary={})
    with pytest.raises(TypeError, match="figure must be"):
        ctx.result(verdict="holds", numbers={}, summary={}, figure=3)


def test_save_figure_names_and_needs_the_claim(tmp_path):
    ctx = RunContext(scale="smoke", seeds=[0], out_dir=tmp_path, claim=_claim())
    fig, _ = new_figure()
    assert ctx.save_figure(fig, "curves") == "figures/fake.ctx-curves.png"
    assert (tmp_path / "figures" / "fake.ctx-curves.png").is_file()
    with pytest.raises(ValueError, match="name"):
        ctx.save_figure(fig, "a/b")
    bare = RunContext(scale="smoke", seeds=[0], out_dir=tmp_path)
    with pytest.raises(ValueError, match="claim=claim"):
        bare.result(verdict="holds", numbers={}, summary={})
    with pytest.raises(ValueError, match="claim=claim"):
        bare.save_figure(fig)


def test_old_results_files_still_load(tmp_path):
    """A results.json written before paper_reported/headline existed loads with their defaults."""
    old = {"claim_id": "fake.old", "verdict": "holds", "numbers": {"x": [1.0, "nan"]}, "summary": {"m": "inf"},
           "criterion": "c", "seeds": [0, 1], "scale": "quick", "paper": "P", "statement": "S"}
    write_json_atomic(tmp_path / "results.json", {"results": [old]})
    r = load_results(tmp_path / "results.json")["fake.old"]
    assert r.paper_reported == "" and r.headline == [] and r.summary == {"m": float("inf")}
    new = ClaimResult(claim_id="fake.new", verdict="holds", paper_reported="Fig. 1", headline=[["m", "M", "s"]])
    assert ClaimResult.from_dict(new.to_dict()) == new


def test_discovery_skips_helper_modules(tmp_path, monkeypatch):
    """Every module whose name does not start with "_" is imported; "_" modules are helpers, never imported."""
    pkg = tmp_path / "fakeclaims_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "paper.py").write_text(textwrap.dedent("""
        from optimlab.evidence import AtMost, register_claim

        @register_claim(id="fakepkg.one", paper="P", statement="S", metric="m",
                        criterion=AtMost(1.0, what="x"), paper_reported="none", headline=(("x", "x", ""),))
        def one(ctx):
            raise AssertionError
    """))
    (pkg / "_helper.py").write_text("raise RuntimeError('a helper module must not be imported as a claim module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry._import_all("fakeclaims_pkg")
        assert "fakeclaims_pkg.paper" in sys.modules and "fakeclaims_pkg._helper" not in sys.modules
        assert registry._CLAIMS["fakepkg.one"].criterion == AtMost(1.0, what="x")
    finally:
        registry._CLAIMS.pop("fakepkg.one", None)
        for name in ("fakeclaims_pkg", "fakeclaims_pkg.paper"):
            sys.modules.pop(name, None)

