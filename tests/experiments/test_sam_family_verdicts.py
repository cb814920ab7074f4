"""Verdict logic of every SAM-family claim on hand-made numbers (no training): each claim's pure verdict function
reaches holds, does not hold and inconclusive (docs/DESIGN.md, adding a claim; criteria as landed; the one
change of issue #8 is the symmetric paired sign rule)."""

import math

import pytest

from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, Agreement, Band, Claim, run_claims
from optimlab.experiments import infosam, presam, sam, vasso

NAN = math.nan


# sam.flat_minima and sam.m_sharpness (revised in issue #10): tests/experiments/test_sam_revised_verdicts.py


# ---------------------------------------------------------------- paired sign rule (sam/vasso label noise)


@pytest.mark.parametrize(("verdict_fn", "e"), [(sam._label_noise_verdict, 1.0), (vasso._label_noise_verdict, 0.5)])
def test_paired_sign_rule_of_the_label_noise_claims(verdict_fn, e):
    assert verdict_fn([2 * e, 2 * e, 2 * e, 2 * e, -e]).verdict == HOLDS
    assert verdict_fn([-2 * e, -2 * e, -2 * e, -2 * e, e]).verdict == DOES_NOT_HOLD
    # Ties count for neither side: 3 wins and 2 ties is not 4 of 5 (the landed rule counted ties as wins).
    assert verdict_fn([3 * e, 3 * e, 3 * e, 0.0, 0.0]).verdict == INCONCLUSIVE
    assert verdict_fn([-3 * e, -3 * e, -3 * e, 0.0, 0.0]).verdict == INCONCLUSIVE
    # Median and signs disagreeing.
    assert verdict_fn([0.9 * e] * 4 + [-5 * e]).verdict == INCONCLUSIVE        # 4/5 positive, median below e
    assert verdict_fn([3 * e, 3 * e, 3 * e, -0.1, -0.1]).verdict == INCONCLUSIVE  # median above e, 3 wins
    # Symmetric: a median <= −e with only 3 losses is no longer "does not hold".
    assert verdict_fn([-2 * e, -2 * e, -2 * e, 5 * e, 5 * e]).verdict == INCONCLUSIVE
    assert verdict_fn([e, e, e, e, NAN]).verdict == INCONCLUSIVE


@pytest.mark.parametrize(("n_seeds", "verdict"), [(4, INCONCLUSIVE), (5, HOLDS)])
def test_fewer_than_five_seeds_give_inconclusive(tmp_path, n_seeds, verdict):
    # The criterion says 4/4 positive holds; the runner makes it inconclusive below the criterion's min_seeds (5).
    def run(ctx):
        diffs = [2.0] * len(ctx.seeds)
        return ctx.result(verdict=sam._label_noise_verdict(diffs), numbers={"sam_minus_sgd": diffs}, summary={})

    claim = Claim(id="test.label_noise", paper="p", statement="s", metric="m", run=run,
                  criterion=sam.LABEL_NOISE_CRITERION, paper_reported="p", headline=(("median_diff", "d", "pt"),))
    (result,) = run_claims([claim], scale="quick", seeds=n_seeds, device="cpu", out_dir=tmp_path).results
    assert result.status == "ok", result.error
    assert result.verdict == verdict
    assert ("too few seeds" in result.notes) == (verdict == INCONCLUSIVE)


# ---------------------------------------------------------------- vasso.adversary_alignment


def test_adversary_alignment_verdict():
    assert vasso._alignment_verdict([0.02, 0.01, 0.03, 0.02, -0.01]).verdict == HOLDS
    assert vasso._alignment_verdict([-0.02, -0.01, -0.03, -0.02, 0.01]).verdict == DOES_NOT_HOLD
    assert vasso._alignment_verdict([0.02, 0.01, 0.03, -0.02, -0.01]).verdict == INCONCLUSIVE
    # A NaN (or exactly zero) mean counts for neither side.
    assert vasso._alignment_verdict([0.02, 0.01, 0.03, NAN, 0.0]).verdict == INCONCLUSIVE


# ---------------------------------------------------------------- infosam.label_noise


WIN, LOSS, FLAT = [1.0] * 4 + [-1.0], [-1.0] * 4 + [1.0], [0.1] * 5


@pytest.mark.parametrize(("vs_sam", "vs_asam", "verdict"), [
    (WIN, WIN, HOLDS),
    (WIN, LOSS, DOES_NOT_HOLD),   # beats SAM but loses to ASAM: the arm does not hold
    (LOSS, WIN, DOES_NOT_HOLD),
    (WIN, FLAT, INCONCLUSIVE),
    (FLAT, FLAT, INCONCLUSIVE),
])
def test_infosam_arm_verdict(vs_sam, vs_asam, verdict):
    arm = {"vs_sam": vs_sam, "vs_asam": vs_asam}
    assert infosam.ARM_CRITERION.evaluate(**arm).verdict == verdict
    # Both arms giving the same numbers agree, so the claim's verdict is that arm verdict.
    out = infosam._verdict({"snr": arm, "invvar": arm})
    assert out.verdict == verdict and out.details["snr_verdict"] == out.details["invvar_verdict"] == verdict


def test_infosam_arms_agreeing_give_their_verdict_and_differing_give_inconclusive():
    assert infosam.CRITERION == Agreement(infosam.ARM_CRITERION, arms=("snr", "invvar"), what="InfoSAM arm")
    win, loss = {"vs_sam": WIN, "vs_asam": WIN}, {"vs_sam": LOSS, "vs_asam": LOSS}
    assert infosam._verdict({"snr": win, "invvar": win}).verdict == HOLDS
    assert infosam._verdict({"snr": loss, "invvar": loss}).verdict == DOES_NOT_HOLD
    out = infosam._verdict({"snr": win, "invvar": loss})
    assert out.verdict == INCONCLUSIVE and "disagree" in out.reason
    assert out.details["snr_verdict"] == HOLDS and out.details["invvar_verdict"] == DOES_NOT_HOLD
    # An arm beating SAM but losing to ASAM does not hold; with the other arm holding, the arms differ.
    mixed = {"vs_sam": WIN, "vs_asam": LOSS}
    out = infosam._verdict({"snr": mixed, "invvar": win})
    assert out.details["snr_verdict"] == DOES_NOT_HOLD and out.verdict == INCONCLUSIVE
    assert infosam._verdict({"snr": mixed, "invvar": mixed}).verdict == DOES_NOT_HOLD
    with pytest.raises(ValueError, match="one input per arm"):
        infosam._verdict({"invvar": win})


# ---------------------------------------------------------------- presam.special_cases


def test_presam_special_cases_verdict():
    assert presam._verdict({"sam / a": [1.5e-7], "fisher / a": [3e-8, 1e-6]}).verdict == HOLDS
    assert presam._verdict({"sam / a": [1.5e-7], "fisher / a": [2e-6]}).verdict == DOES_NOT_HOLD
    assert presam._verdict({"sam / a": [NAN], "fisher / a": [1e-7]}).verdict == INCONCLUSIVE


# ---------------------------------------------------------------- the two helper criteria


def test_band_renders_its_constants_and_rejects_bad_bounds():
    band = Band(0.0, 0.1, what="x")
    assert "≥ 0.1" in band.describe() and "≤ 0" in band.describe()
    assert band.evaluate(0.1).details == {"value": 0.1, "low": 0.0, "high": 0.1}
    with pytest.raises(ValueError, match="low must be below high"):
        Band(0.1, 0.0, what="x")
    with pytest.raises(ValueError, match="high must be a finite number"):
        Band(0.0, NAN, what="x")


def test_agreement_rejects_bad_arms():
    with pytest.raises(ValueError, match="arms must be distinct"):
        Agreement(Band(0.0, 1.0, what="x"), arms=("a", "a"), what="arm")
    with pytest.raises(ValueError, match="part must be a Criterion"):
        Agreement("holds if ...", arms=("a",), what="arm")
    crit = Agreement(Band(0.0, 1.0, what="x"), arms=("a", "b"), what="arm")
    assert crit.min_seeds == 1 and "for each arm (a, b)" in crit.describe()
