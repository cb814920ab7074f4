"""Verdict logic of the ``bar.*`` claims and bench on hand-made numbers (no training): each reaches holds, does not
hold and inconclusive."""

from __future__ import annotations

import math

import pytest

from optimlab.bench.bar import bench_verdict
from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, AtMost
from optimlab.experiments._bar_verdicts import (
    BothWays,
    accuracy_verdict,
    balance_verdict,
    decreasing_fraction,
    dilution_verdict,
    mimic_verdict,
    msharp_verdict,
    nop_verdict,
    op_verdict,
    overhead_verdict,
)

SGD_OK = [1.0, 0.999, 0.995, 1.001, 0.998]


def sam(r01, r05, r10, bad_seeds=0):
    rows = {0.1: [r01] * 5, 0.5: [r05] * 5, 1.0: [r10] * 5}
    for s in range(bad_seeds):  # these seeds are not decreasing over alpha
        rows[1.0][s] = rows[0.1][s] + 0.01
    return rows


def test_bothways_describes_and_refuses_missing_inputs():
    c = BothWays(holds={"a": AtMost(1, what="a")}, fails={"b": AtMost(1, what="b")})
    assert "holds if all of" in c.describe()
    with pytest.raises(ValueError):
        c.evaluate({}, {"b": 0})
    assert decreasing_fraction([[3, 2, 1], [1, 2, 3]]) == 0.5


def test_nop_verdicts():
    assert nop_verdict(SGD_OK, sam(0.6, 0.2, 0.1)).verdict == HOLDS
    assert nop_verdict(SGD_OK, sam(0.9, 0.8, 0.7, bad_seeds=5)).verdict == DOES_NOT_HOLD
    assert nop_verdict(SGD_OK, sam(0.9, 0.4, 0.7, bad_seeds=5)).verdict == INCONCLUSIVE
    assert nop_verdict([1.0, 0.9], sam(0.6, 0.2, 0.1)).verdict == INCONCLUSIVE  # conservation check failed


def test_op_verdicts():
    good = {0.1: [0.09] * 5, 0.5: [0.005] * 5, 1.0: [0.0001] * 5}
    bad = {0.1: [0.9] * 5, 0.5: [0.8] * 5, 1.0: [0.7] * 5}
    assert op_verdict(-0.01, good, [2.0] * 10, [3.0] * 10).verdict == HOLDS
    assert op_verdict(-0.01, bad, [3.0] * 10, [3.0] * 10).verdict == DOES_NOT_HOLD
    assert op_verdict(-0.01, good, [3.5] * 10, [3.0] * 10).verdict == INCONCLUSIVE
    assert op_verdict(0.5, good, [2.0] * 10, [3.0] * 10).verdict == INCONCLUSIVE


def test_mimic_verdicts():
    r = {"nbar": {a: [0.2] * 5 for a in (0.1, 0.5, 1.0)}, "obar": {a: [0.0] * 5 for a in (0.1, 0.5, 1.0)}}
    assert mimic_verdict(SGD_OK, r).verdict == HOLDS
    r_bad = {"nbar": {a: [0.8] * 5 for a in (0.1, 0.5, 1.0)}, "obar": r["obar"]}
    assert mimic_verdict(SGD_OK, r_bad).verdict == DOES_NOT_HOLD
    r_mid = {"nbar": {0.1: [0.8] * 5, 0.5: [0.3] * 5, 1.0: [0.3] * 5}, "obar": r["obar"]}
    assert mimic_verdict(SGD_OK, r_mid).verdict == INCONCLUSIVE


def test_msharp_verdicts():
    assert msharp_verdict([0.5] * 5, [0.4] * 5).verdict == HOLDS
    assert msharp_verdict([0.4] * 5, [0.5] * 5).verdict == DOES_NOT_HOLD
    assert msharp_verdict([0.5, 0.4, 0.5, 0.4, 0.5], [0.4, 0.5, 0.4, 0.5, 0.5]).verdict == INCONCLUSIVE


def test_dilution_verdicts():
    r1 = [0.2] * 5
    assert dilution_verdict(r1, [0.4] * 5, 0.0).verdict == HOLDS
    assert dilution_verdict(r1, [0.4] * 5, 1e-6).verdict == DOES_NOT_HOLD  # BAR diluted
    assert dilution_verdict(r1, [0.1] * 5, 0.0).verdict == DOES_NOT_HOLD  # no gap
    assert dilution_verdict(r1, [0.25] * 5, 0.0).verdict == INCONCLUSIVE  # gap below 0.1


def test_overhead_verdicts():
    assert overhead_verdict({"nbar": 0.9, "obar": 0.8}, {"nbar": 1.02, "obar": 1.05}).verdict == HOLDS
    assert overhead_verdict({"nbar": 0.5, "obar": 0.8}, {"nbar": 1.02, "obar": 1.05}).verdict == DOES_NOT_HOLD
    assert overhead_verdict({"nbar": 0.9, "obar": math.nan}, {"nbar": 1.02, "obar": 1.05}).verdict == INCONCLUSIVE


def test_balance_verdicts():
    base = {"lora": [1.0] * 5}
    assert balance_verdict({**base, "sam": [0.5] * 5, "nbar": [0.7] * 5, "obar": [0.8] * 5}).verdict == HOLDS
    assert balance_verdict({**base, "sam": [1.1] * 5, "nbar": [0.7] * 5, "obar": [0.8] * 5}).verdict == DOES_NOT_HOLD
    assert balance_verdict({**base, "sam": [0.95] * 5, "nbar": [0.7] * 5, "obar": [0.8] * 5}).verdict == INCONCLUSIVE
    assert balance_verdict({"lora": [1.2] * 5, "sam": [0.5] * 5, "nbar": [0.5] * 5,
                            "obar": [0.5] * 5}).verdict == INCONCLUSIVE  # conservation check failed


def test_accuracy_verdicts():
    assert accuracy_verdict([0.81, 0.82, 0.80], [0.80, 0.80, 0.79]).verdict == HOLDS
    assert accuracy_verdict([0.79, 0.78, 0.78], [0.80, 0.80, 0.79]).verdict == DOES_NOT_HOLD
    assert accuracy_verdict([0.80, 0.80, 0.79], [0.80, 0.80, 0.79]).verdict == INCONCLUSIVE
    out = accuracy_verdict([0.81, 0.82, 0.80], [0.80, 0.80, 0.79], majority=0.85)  # not learned: gate fails
    assert out.verdict == INCONCLUSIVE and "majority" in out.reason


def test_bench_verdicts():
    assert bench_verdict({"nbar/lora": 1.01, "obar/lora": 1.04}).verdict == HOLDS
    assert bench_verdict({"nbar/lora": 1.2, "obar/lora": 1.04}).verdict == DOES_NOT_HOLD
    assert bench_verdict({"nbar/lora": math.nan, "obar/lora": 1.04}).verdict == INCONCLUSIVE
