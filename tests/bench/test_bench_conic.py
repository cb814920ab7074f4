"""Verdict paths of the conic.scaling bench and its helpers on hand-made numbers."""

import math

from optimlab.bench.conic import CRITERION, _slope, scaling_verdict


def test_scaling_verdict_paths():
    assert scaling_verdict(2000, 0.05).verdict == "holds"
    assert scaling_verdict(2000, 0.5).verdict == "does not hold"
    assert scaling_verdict(400, 0.01).verdict == "inconclusive"  # SCS not run at n >= 2000
    assert scaling_verdict(math.nan, math.nan).verdict == "inconclusive"
    assert "0.1" in CRITERION.describe() and "2000" in CRITERION.describe()


def test_log_log_slope():
    ns = [100, 200, 400, 800]
    assert abs(_slope(ns, [n * 10.0 for n in ns]) - 1.0) < 1e-12
    assert abs(_slope(ns, [n * n * 8.0 for n in ns]) - 2.0) < 1e-12
    assert math.isnan(_slope([100], [1.0]))
