"""Verdict paths of the conic.* claims on hand-made numbers (no solving)."""

import math

import pytest

from optimlab.experiments._conic_verdicts import (
    DENSE_2000_BYTES,
    MC,
    MedianShare,
    certificate_verdict,
    faster_verdict,
    gw_verdict,
    lowrank_verdict,
    mc_verdict,
)


def test_faster_holds_fails_and_is_inconclusive():
    good, bad, mixed = [0.5, 0.6, 0.7, 0.9, 1.2], [1.0, 1.1, 1.3, 1.0, 0.7], [0.5, 1.2, 0.7, 1.1, 0.95]
    assert faster_verdict({"completion": good, "maxcut": good}).verdict == "holds"
    assert faster_verdict({"completion": bad, "maxcut": bad}).verdict == "does not hold"
    assert faster_verdict({"completion": good, "maxcut": bad}).verdict == "inconclusive"
    assert faster_verdict({"completion": mixed, "maxcut": mixed}).verdict == "inconclusive"
    assert faster_verdict({"completion": good, "maxcut": [math.nan] * 5}).verdict == "inconclusive"


def test_median_share_is_symmetric_and_describes_its_constants():
    rule = MedianShare(0.8, 1.0, 1.0, what="ratio")
    assert rule.verdict([0.8, 0.8, 0.8, 0.8, 2.0]) == "holds"
    assert rule.verdict([1.0, 1.0, 1.0, 1.0, 0.1]) == "does not hold"
    assert rule.verdict([0.9, 0.9, 0.9, 0.9, 0.9]) == "inconclusive"  # median between the thresholds
    assert "0.8" in rule.describe() and "80%" in rule.describe()


def test_certificate_verdict_paths():
    assert certificate_verdict(0, 0, [1.5, 3.0, 9.0]).verdict == "holds"
    assert certificate_verdict(0, 1, [1.5, 3.0, 9.0]).verdict == "does not hold"  # one violation disproves
    assert certificate_verdict(0, 0, [20.0, 30.0, 11.0]).verdict == "does not hold"  # useless bound
    assert certificate_verdict(1, 0, [1.5]).verdict == "inconclusive"  # SCS failed


def test_lowrank_verdict_paths():
    assert lowrank_verdict(1e-3, 5e-3, 1e6, 0.2).verdict == "holds"
    assert lowrank_verdict(2e-2, 5e-3, 1e6, 0.2).verdict == "does not hold"
    assert lowrank_verdict(1e-3, 5e-3, DENSE_2000_BYTES + 1, 0.2).verdict == "does not hold"
    assert lowrank_verdict(1e-3, 5e-3, 1e6, 1.5).verdict == "does not hold"
    assert lowrank_verdict(1e-3, math.nan, 1e6, 0.2).verdict == "inconclusive"


def test_gw_verdict_paths():
    assert gw_verdict([0.95, 0.90, 0.88]).verdict == "holds"
    assert gw_verdict([0.95, 0.87]).verdict == "does not hold"
    assert gw_verdict([]).verdict == "inconclusive"


@pytest.mark.parametrize("gaps,verdict", [([1e-4] * 9 + [1e-2], "holds"), ([1e-2] * 9 + [1e-4], "does not hold"),
                                          ([1e-4] * 5 + [1e-2] * 5, "inconclusive")])
def test_mc_verdict_paths(gaps, verdict):
    assert mc_verdict(gaps).verdict == verdict
    assert MC.min_seeds == 5
