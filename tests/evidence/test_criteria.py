"""Every criterion on known numbers: holds, does not hold, inconclusive; describe() shows its constants."""

from __future__ import annotations

import math

import pytest

from optimlab.evidence import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    VERDICTS,
    AllChecks,
    AtLeast,
    AtMost,
    CountRule,
    Criterion,
    Gate,
    Outcome,
    PairedSign,
    RatioAtMost,
    WithinRelative,
    count_rule,
    paired_sign_rule,
)

NAN = math.nan


def test_verdict_constants():
    assert (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE) == VERDICTS == ("holds", "does not hold", "inconclusive")
    with pytest.raises(ValueError, match="verdict must be one of"):
        Outcome("maybe", {})


# ---------------------------------------------------------------- PairedSign

RULE = PairedSign(0.5, 0.8, what="VaSSO − SAM accuracy", unit="pt")


@pytest.mark.parametrize(("diffs", "verdict"), [
    ([1.0, 0.8, 0.6, 0.9, -0.1], HOLDS),                # median 0.8 ≥ 0.5, 4/5 positive
    ([1.0, 0.8, 0.6, -0.9, -0.1], INCONCLUSIVE),        # median 0.6 but only 3/5 positive
    ([0.4, 0.3, 0.45, 0.3, 0.2], INCONCLUSIVE),         # 5/5 positive, median 0.3 < 0.5
    ([-1.0, -0.8, -0.6, -0.9, 0.1], DOES_NOT_HOLD),     # mirror image of the first case
    ([-1.0, -0.8, -0.6, 0.9, 0.1], INCONCLUSIVE),       # median −0.6 but only 3/5 negative (old rule: not hold)
    ([-0.1, -0.2, -0.3, -0.4, 5.0], INCONCLUSIVE),      # 4/5 negative but median −0.2 > −0.5: symmetric rule
    ([1.0, 1.0, 0.0, 0.0, 1.0], INCONCLUSIVE),          # ties count for neither: 3 wins < 4
    ([1.0, 1.0, 1.0, 1.0, 0.0], HOLDS),                 # one tie, still 4 wins
    ([1.0, 1.0, NAN, 1.0, 1.0], INCONCLUSIVE),          # a NaN difference
])
def test_paired_sign(diffs, verdict):
    out = RULE.evaluate(diffs)
    assert out.verdict == verdict == RULE.verdict(diffs)
    assert set(out.details) == {"median_diff", "wins", "losses", "n", "needed"}
    assert out.details["n"] == 5 and out.details["needed"] == 4


def test_paired_sign_details_and_reason():
    out = RULE.evaluate([1.0, 1.0, 0.0, -2.0, 3.0])
    assert out.details == {"median_diff": 1.0, "wins": 3, "losses": 1, "n": 5, "needed": 4} and out.reason == ""
    nan = RULE.evaluate([1.0, NAN])
    assert math.isnan(nan.details["median_diff"]) and "NaN" in nan.reason


def test_paired_sign_describe_and_defaults():
    text = RULE.describe()
    for piece in ("VaSSO − SAM accuracy", "+0.5 pt", "−0.5 pt", "80%", "4 of 5", "ties count for neither",
                  "5 seeds"):
        assert piece in text, piece
    assert RULE.min_seeds == 5 and PairedSign(0.1).min_fraction == 0.8
    assert "3 of 3" in PairedSign(0.1, 1.0, min_seeds=3).describe()


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"min_effect": -0.1}, "min_effect"), ({"min_effect": NAN}, "min_effect"), ({"min_effect": True}, "min_effect"),
    ({"min_effect": 0.1, "min_fraction": 0.5}, "min_fraction"),
    ({"min_effect": 0.1, "min_fraction": 1.2}, "min_fraction"),
    ({"min_effect": 0.1, "min_seeds": 0}, "min_seeds"), ({"min_effect": 0.1, "what": ""}, "what"),
])
def test_paired_sign_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PairedSign(**kwargs)


def test_paired_sign_rule_function_is_the_class():
    verdict, details = paired_sign_rule([-0.1, -0.2, -0.3, -0.4, 5.0], min_effect=0.5, min_fraction=0.8)
    assert verdict == INCONCLUSIVE and details["losses"] == 4
    assert paired_sign_rule([2.0], min_effect=0.5, min_fraction=0.8) == (HOLDS, {
        "median_diff": 2.0, "wins": 1, "losses": 0, "n": 1, "needed": 1})
    with pytest.raises(ValueError, match="non-empty"):
        paired_sign_rule([], min_effect=0.5, min_fraction=0.8)


# ---------------------------------------------------------------- CountRule

COUNT = CountRule(0.8, success="SAM's trace below SGD's", failure="SAM's trace above SGD's")


@pytest.mark.parametrize(("counts", "verdict"), [
    ((4, 1, 5), HOLDS), ((5, 0, 5), HOLDS), ((1, 4, 5), DOES_NOT_HOLD), ((3, 2, 5), INCONCLUSIVE),
    ((3, 0, 5), INCONCLUSIVE), ((16, 0, 20), HOLDS), ((15, 5, 20), INCONCLUSIVE),
])
def test_count_rule(counts, verdict):
    assert COUNT.verdict(*counts) == verdict == count_rule(*counts, min_fraction=0.8)
    assert COUNT.evaluate(*counts).details["needed"] == math.ceil(0.8 * counts[2] - 1e-9)


def test_count_rule_describe_and_arguments():
    text = COUNT.describe()
    assert "SAM's trace below SGD's" in text and "SAM's trace above SGD's" in text and "80%" in text
    assert "4 of 5" in text and COUNT.min_seeds == 5
    for kwargs, name in (({"min_fraction": 0.3}, "min_fraction"), ({"min_fraction": 0.8, "success": ""}, "success"),
                         ({"min_fraction": 0.8, "min_seeds": 1.5}, "min_seeds")):
        with pytest.raises(ValueError, match=name):
            CountRule(**{"success": "s", "failure": "f", **kwargs})
    with pytest.raises(ValueError, match="successes"):
        COUNT.evaluate(-1, 0, 5)
    with pytest.raises(ValueError, match="successes \\+ failures <= n"):
        COUNT.evaluate(4, 4, 5)


# ---------------------------------------------------------------- thresholds


def test_at_most_and_at_least():
    below = AtMost(0.05, what="the largest training loss")
    assert below.verdict(0.05) == HOLDS and below.verdict(0.06) == DOES_NOT_HOLD
    assert below.evaluate(NAN).verdict == INCONCLUSIVE and "NaN" in below.evaluate(NAN).reason
    assert below.evaluate(0.01).details == {"value": 0.01, "threshold": 0.05}
    assert "the largest training loss ≤ 0.05" in below.describe()
    above = AtLeast(90, what="test accuracy", unit="%")
    assert above.verdict(90) == HOLDS and above.verdict(89.9) == DOES_NOT_HOLD and above.verdict(NAN) == INCONCLUSIVE
    assert "test accuracy ≥ 90%" in above.describe()
    with pytest.raises(ValueError, match="threshold"):
        AtMost(math.inf, what="x")
    with pytest.raises(ValueError, match="what"):
        AtLeast(1.0, what=" ")


def test_ratio_at_most():
    r = RatioAtMost(2.05, what="SAM/SGD step time")
    assert r.verdict(2.0) == HOLDS and r.verdict(2.05) == HOLDS and r.verdict(2.1) == DOES_NOT_HOLD
    assert r.verdict(NAN) == INCONCLUSIVE and r.evaluate(1.5).details == {"ratio": 1.5, "target": 2.05}
    assert "ratio SAM/SGD step time ≤ 2.05" in r.describe()
    for bad in (0.0, -1.0, NAN):
        with pytest.raises(ValueError, match="target"):
            RatioAtMost(bad, what="x")


def test_within_relative():
    w = WithinRelative(0.1, what="the measured bytes")
    assert w.verdict(105.0, 100.0) == HOLDS and w.verdict(110.0, 100.0) == HOLDS
    assert w.verdict(111.0, 100.0) == DOES_NOT_HOLD and w.verdict(-95.0, -100.0) == HOLDS
    assert w.verdict(NAN, 1.0) == INCONCLUSIVE and w.verdict(1.0, NAN) == INCONCLUSIVE
    assert w.verdict(0.0, 0.0) == HOLDS and w.verdict(1e-9, 0.0) == DOES_NOT_HOLD
    assert w.evaluate(105.0, 100.0).details["rel_diff"] == pytest.approx(0.05)
    assert "within a relative 0.1 (10%)" in w.describe()
    with pytest.raises(ValueError, match="rtol"):
        WithinRelative(-0.1, what="x")


# ---------------------------------------------------------------- AllChecks and Gate

BOTH = AllChecks(trace=RULE, speed=RatioAtMost(2.0, what="step time"))
GOOD, BAD, MIXED = [1.0] * 5, [-1.0] * 5, [1.0, -1.0, 1.0, -1.0, 0.0]


@pytest.mark.parametrize(("trace", "ratio", "verdict"), [
    (GOOD, 1.5, HOLDS), (GOOD, 2.5, DOES_NOT_HOLD), (BAD, 1.5, DOES_NOT_HOLD), (MIXED, 1.5, INCONCLUSIVE),
    (MIXED, 2.5, DOES_NOT_HOLD), (GOOD, NAN, INCONCLUSIVE),
])
def test_all_checks(trace, ratio, verdict):
    out = BOTH.evaluate(trace=trace, speed=ratio)
    assert out.verdict == verdict
    assert out.details["speed_ratio"] == ratio or math.isnan(ratio)
    assert out.details["trace_verdict"] in VERDICTS and "trace_wins" in out.details


def test_all_checks_inputs_describe_and_seeds():
    by_dict = AllChecks({"gap": WithinRelative(0.1, what="gap")}, low=AtMost(1.0, what="loss"))
    assert by_dict.verdict(gap=(1.05, 1.0), low={"value": 0.5}) == HOLDS
    assert by_dict == AllChecks(gap=WithinRelative(0.1, what="gap"), low=AtMost(1.0, what="loss"))
    text = BOTH.describe()
    assert "(1) trace:" in text and "+0.5 pt" in text and "(2) speed:" in text and "≤ 2" in text
    assert BOTH.min_seeds == 5 and by_dict.min_seeds == 1
    with pytest.raises(ValueError, match="missing \\['speed'\\]"):
        BOTH.evaluate(trace=GOOD)
    with pytest.raises(ValueError, match="at least one"):
        AllChecks()
    with pytest.raises(ValueError, match="Criterion"):
        AllChecks(a="holds if good")


GATE = Gate(AtMost(0.05, what="the largest training loss"), RULE,
            why="sharpness is comparable only between minima at a similar loss")


@pytest.mark.parametrize(("loss", "diffs", "verdict"), [
    (0.01, GOOD, HOLDS), (0.01, BAD, DOES_NOT_HOLD), (0.01, MIXED, INCONCLUSIVE),
    (0.2, GOOD, INCONCLUSIVE), (0.2, BAD, INCONCLUSIVE), (NAN, GOOD, INCONCLUSIVE),
])
def test_gate(loss, diffs, verdict):
    out = GATE.evaluate(loss, diffs)
    assert out.verdict == verdict
    assert out.details["gate_value"] == loss or math.isnan(loss)
    if loss != 0.01:
        assert "sharpness is comparable only" in out.reason and "the comparison alone gave" in out.reason


def test_gate_describe_and_arguments():
    text = GATE.describe()
    assert "inconclusive unless the largest training loss ≤ 0.05" in text and "+0.5 pt" in text
    assert GATE.min_seeds == 5
    with pytest.raises(ValueError, match="why"):
        Gate(AtMost(1.0, what="x"), RULE, why="")
    with pytest.raises(ValueError, match="then"):
        Gate(AtMost(1.0, what="x"), "text", why="w")


def test_base_class_is_abstract_in_practice():
    c = Criterion()
    assert c.min_seeds == 1
    with pytest.raises(NotImplementedError):
        c.describe()
    with pytest.raises(NotImplementedError):
        c.verdict(1.0)


# ---------------------------------------------------------------- Band and Agreement
def test_band_reaches_every_verdict_and_describes_its_constants():
    from optimlab.evidence import Band

    band = Band(0.0, 0.1, what="τ(4) − τ(n)")
    assert band.verdict(0.1) == "holds" and band.verdict(0.0) == "does not hold"
    assert band.verdict(0.05) == "inconclusive" and band.verdict(float("nan")) == "inconclusive"
    assert "0.1" in band.describe() and "τ(4) − τ(n)" in band.describe()
    for kwargs in ({"low": 1.0, "high": 0.5}, {"low": True, "high": 1.0}, {"low": 0.0, "high": float("inf")}):
        with pytest.raises(ValueError):
            Band(kwargs["low"], kwargs["high"], what="x")


def test_agreement_of_arms():
    from optimlab.evidence import Agreement, AtMost

    crit = Agreement(AtMost(1.0, what="error"), arms=("a", "b"), what="arm")
    assert crit.verdict(a=0.5, b=0.7) == "holds"
    assert crit.verdict(a=2.0, b=3.0) == "does not hold"
    out = crit.evaluate(a=0.5, b=3.0)
    assert out.verdict == "inconclusive" and "disagree" in out.reason and out.details["b_verdict"] == "does not hold"
    with pytest.raises(ValueError, match="one input per arm"):
        crit.evaluate(a=0.5)
    with pytest.raises(ValueError, match="arms must be distinct"):
        Agreement(AtMost(1.0, what="e"), arms=("a", "a"), what="arm")


def test_above_is_strict():
    from optimlab.evidence import Above

    crit = Above(1.0, what="ratio", unit="×")
    assert crit.verdict(1.01) == "holds" and crit.verdict(1.0) == "does not hold"
    assert crit.verdict(float("nan")) == "inconclusive" and "> 1" in crit.describe()
