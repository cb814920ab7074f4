"""Verdict logic of the rlhf.* claims on hand-made numbers (no simulation): holds / does not hold / inconclusive."""

import math

import numpy as np
import pytest

from optimlab.experiments._rlhf_verdicts import (
    MarginWithinSE,
    early_verdict,
    identity_verdict,
    margin,
    misspec_verdict,
    no_negative_verdict,
    null_verdict,
    robust_verdict,
    spearman,
)

S = 5


def const(v, jitter=0.0):
    """Five per-seed values with median exactly v, spread by ``jitter``."""
    return list(v + jitter * np.array([-2.0, 1.0, 0.0, -1.0, 2.0]))


def test_margin_within_se_three_ways():
    c = MarginWithinSE("x")
    assert c.evaluate(-0.2, 0.1).verdict == "holds"
    assert c.evaluate(0.2, 0.1).verdict == "does not hold"
    assert c.evaluate(0.05, 0.1).verdict == "inconclusive"
    assert c.evaluate(math.nan, 0.1).verdict == "inconclusive"


def test_margin_is_paired_and_deterministic():
    m, se = margin({"a": [1, 2, 3, 4, 5], "b": [1, 2, 3, 4, 5]}, lambda d: d["a"] - d["b"])
    assert m == 0 and se == 0  # paired resampling: identical keys never differ
    assert margin({"a": [1, 5, 2]}, lambda d: d["a"]) == margin({"a": [1, 5, 2]}, lambda d: d["a"])


def test_spearman():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_identity_verdicts():
    assert identity_verdict(1e-14, 0, const(0.95, 0.01)).verdict == "holds"
    assert identity_verdict(1e-6, 0, const(0.95, 0.01)).verdict == "does not hold"
    assert identity_verdict(1e-14, 1, const(0.95, 0.01)).verdict == "does not hold"
    assert identity_verdict(1e-14, 0, const(0.8, 0.1)).verdict == "inconclusive"


def _early(tpo, nt=1.0, best=0.3, others=1.0):
    d = {"tpo": const(tpo, 0.01), "no_transfer": const(nt, 0.01), "fixed_best": const(best, 0.01),
         "fixed_worst": const(2.0)}
    d.update({m: const(others, 0.01) for m in ("optimistic", "ref", "uniform")})
    return d


def test_early_verdicts():
    assert early_verdict(_early(0.3)).verdict == "holds"
    assert early_verdict(_early(0.3, others=0.3)).verdict == "does not hold"  # beats greedy no-transfer only
    assert early_verdict(_early(0.6)).verdict == "does not hold"
    edge = {**_early(0.3, best=0.3), "tpo": const(0.35, 0.05), "fixed_best": [0.3] * 5}
    assert early_verdict(edge).verdict == "inconclusive"  # on the + 0.05 threshold


def test_no_negative_verdicts():
    usual = {"tpo": const(0.1, 0.01), "no_transfer": const(0.12, 0.01)}
    bad = {m: const(1.0, 0.01) for m in ("tpo", "no_transfer", "optimistic", "ref", "uniform")}
    assert no_negative_verdict(usual, bad, bad).verdict == "holds"
    worse = {**bad, "tpo": const(2.0, 0.01)}
    assert no_negative_verdict(usual, worse, bad).verdict == "does not hold"
    edge = {**{m: [1.0] * 5 for m in bad}, "tpo": const(1.1, 0.3)}
    assert no_negative_verdict(usual, edge, bad).verdict == "inconclusive"


def test_robust_verdicts():
    reg = {"tpo": const(100, 1), "no_transfer": const(150, 1), "fixed_best": const(100, 1),
           "fixed_worst": const(900, 1), "mixture": const(300, 1)}
    assert robust_verdict(reg, const(0.8, 0.01)).verdict == "holds"
    assert robust_verdict(reg, const(0.3, 0.01)).verdict == "does not hold"
    assert robust_verdict({**reg, "mixture": const(100, 30)}, const(0.8, 0.01)).verdict == "inconclusive"


def test_null_verdicts():
    assert null_verdict({"null=0.55": const(100, 1), "null=0.5": const(130, 1)}).verdict == "holds"
    assert null_verdict({"null=0.55": const(140, 1), "null=0.5": const(100, 1)}).verdict == "does not hold"
    assert null_verdict({"null=0.55": const(100, 20), "null=0.5": [100.0] * 5}).verdict == "inconclusive"


def _misspec(q_by_rho, jitter=0.001):
    d = {}
    for r, q in q_by_rho.items():
        d[f"{r:g}/tpo"] = const(q, jitter)
        for m in ("no_transfer", "optimistic", "ref", "uniform"):
            d[f"{r:g}/{m}"] = [1.0] * 5
    return d


def test_misspec_verdicts():
    rhos = (1.0, 0.7, 0.3, 0.0, -0.5)
    good = dict(zip(rhos, (0.3, 0.5, 0.8, 0.95, 1.0)))
    assert misspec_verdict(_misspec(good), rhos).verdict == "holds"
    assert misspec_verdict(_misspec({**good, -0.5: 1.5}), rhos).verdict == "does not hold"
    edge = _misspec(dict(zip(rhos, (0.7, 0.5, 0.8, 0.9, 1.0))))  # q(1) exactly on the 0.7 threshold, noisy
    edge["1/tpo"] = const(0.7, 0.2)
    assert misspec_verdict(edge, rhos).verdict == "inconclusive"


def test_sequence_verdicts():
    from optimlab.experiments._rlhf_verdicts import sequence_verdict

    win = {"no_transfer": const(0.53, 0.005), "ref": const(0.52, 0.005), "fixed_worst": const(0.54, 0.005)}
    gap = {"tpo": const(1.6, 0.01), "no_transfer": const(1.8, 0.01), "ref": const(1.9, 0.01),
           "uniform": const(1.7, 0.01)}
    assert sequence_verdict(win, gap).verdict == "holds"
    assert sequence_verdict({**win, "ref": const(0.45, 0.005)}, gap).verdict == "does not hold"
    assert sequence_verdict({**win, "no_transfer": const(0.5, 0.02)}, gap).verdict == "inconclusive"
