"""Verdict paths of the meta.* claims on hand-made numbers (no training)."""

from __future__ import annotations

import math

from optimlab.experiments._meta_verdicts import EXP_GEOMETRY, POISSON, QUADRATIC

FLOOR = {1: 10.558, 3: 5.340}


def test_exp_geometry_paths():
    lin = {1: 10.6, 3: 5.4}
    assert EXP_GEOMETRY.verdict({1: 2.7, 3: 0.66}, lin, lin, FLOOR) == "holds"
    assert EXP_GEOMETRY.verdict({1: 11.0, 3: 0.66}, lin, lin, FLOOR) == "does not hold"
    assert EXP_GEOMETRY.verdict({1: 2.7, 3: 5.5}, lin, lin, FLOOR) == "does not hold"
    assert EXP_GEOMETRY.verdict({1: 6.0, 3: 0.66}, lin, lin, FLOOR) == "inconclusive"  # between margin and 1
    assert EXP_GEOMETRY.verdict({1: 4.5, 3: 0.66}, lin, lin, FLOOR) == "inconclusive"  # fails the cross-step test
    weak = {1: 12.0, 3: 5.4}  # Meta-SGD > 10 % above its floor: under-trained baseline
    out = EXP_GEOMETRY.evaluate({1: 2.7, 3: 0.66}, lin, weak, FLOOR)
    assert out.verdict == "inconclusive" and "under-trained" in out.reason
    assert EXP_GEOMETRY.verdict({1: math.nan, 3: 0.66}, lin, lin, FLOOR) == "inconclusive"
    assert "best_K" in EXP_GEOMETRY.describe()


def test_poisson_paths():
    assert POISSON.verdict({1: 0.7}, 0.0) == "holds"
    assert POISSON.verdict({1: 1.02}, 0.0) == "does not hold"
    assert POISSON.verdict({1: 0.95}, 0.0) == "inconclusive"
    assert POISSON.verdict({1: 0.7, 3: 1.0}, 0.0) == "does not hold"
    assert POISSON.verdict({1: 0.7}, 0.06) == "inconclusive"
    assert POISSON.verdict({1: math.nan}, 0.0) == "inconclusive"


def test_quadratic_paths():
    floor = 1.229
    assert QUADRATIC.verdict({1: 0.98, 3: 0.99}, 1.31, 1.34, floor) == "holds"
    assert QUADRATIC.verdict({1: 0.7, 3: 0.99}, 1.31, 1.34, floor) == "does not hold"
    assert QUADRATIC.verdict({1: 0.98, 3: 1.3}, 1.31, 1.34, floor) == "does not hold"
    assert QUADRATIC.verdict({1: 0.84, 3: 0.99}, 1.31, 1.34, floor) == "inconclusive"
    out = QUADRATIC.evaluate({1: 0.98, 3: 0.99}, 1.31, 1.40, floor)  # Meta-SGD > 10 % above the floor
    assert out.verdict == "inconclusive" and "under-trained" in out.reason
    out = QUADRATIC.evaluate({1: 0.98, 3: 0.99}, 1.10, 1.34, floor)  # below 0.93 x floor: a leak
    assert out.verdict == "inconclusive" and "leak" in out.reason


def test_sinusoid_paths():
    from optimlab.experiments._meta_verdicts import SINUSOID

    assert SINUSOID.verdict(0.95) == "holds" and SINUSOID.verdict(1.05) == "holds"
    assert SINUSOID.verdict(1.10) == "inconclusive"
    assert SINUSOID.verdict(1.2) == "does not hold"
    assert SINUSOID.verdict(math.nan) == "inconclusive"


def test_digits_paths():
    from optimlab.experiments._meta_verdicts import DIGITS

    assert DIGITS.verdict([1.5, 2.0], [3.0, 4.0]) == "holds"
    assert DIGITS.verdict([0.5, 2.0], [3.0, 4.0]) == "inconclusive"  # one seed's lower bound below +1 pt
    assert DIGITS.verdict([-3.0, -2.0], [-0.5, -0.1]) == "does not hold"
    assert DIGITS.verdict([-3.0, -2.0], [-0.5, 0.1]) == "inconclusive"
    assert DIGITS.verdict([], []) == "inconclusive"
