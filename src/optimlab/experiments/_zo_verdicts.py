"""Criteria of the ZO claims (fixed before any run; thresholds and their sources in the comments) and the verdict
functions, pure functions of the measured numbers (unit-tested in tests/experiments/test_zo_verdicts.py)."""

from __future__ import annotations

import math
import statistics

from optimlab.evidence import (
    HOLDS,
    INCONCLUSIVE,
    AllChecks,
    AtLeast,
    AtMost,
    Band,
    CountRule,
    Criterion,
    Gate,
    Outcome,
)

# zo.smoothing_bias — thresholds from the project's spec (§4.1), fixed before any run: the MC mean must match the
# smoothed-function prediction (≥ 95 % of |z| ≤ 3 holds, < 90 % does not hold) and the cubic's coordinate-averaged
# bias at eps = 0.5 must be visible (≥ 10 SE holds, < 3 SE does not hold: it would be ~0 for an unbiased estimator).
SMOOTHING = AllChecks(
    coverage=Band(0.90, 0.95, what="smallest fraction of coordinates with |z| ≤ 3 over the cases"),
    bias=Band(3.0, 10.0, what="z-score of the cubic's coordinate-averaged bias at eps = 0.5 (smallest kind)"),
)

# zo.toy_trace — spec §4.2: gate GD and DD median trace ratios (end/start) in [0.9, 1.1] (they keep the trace,
# paper Fig. 1b); holds if tr_ZO/tr_GD ≤ 0.75 in ≥ 4/5 chains, does not hold if ≥ 1.0 in as many (pilot 0.59).
_KEEP = AllChecks(gd_low=AtLeast(0.9, what="median GD trace end/start"),
                  gd_high=AtMost(1.1, what="median GD trace end/start"),
                  dd_low=AtLeast(0.9, what="median DD trace end/start"),
                  dd_high=AtMost(1.1, what="median DD trace end/start"))
TOY = Gate(_KEEP, CountRule(0.8, success="tr_ZO/tr_GD ≤ 0.75", failure="tr_ZO/tr_GD ≥ 1.0", min_seeds=5),
           why="GD and DD must keep the trace (median end/start in [0.9, 1.1]) for the comparison to isolate smoothing")

# zo.convex_flattest — spec §4.3: gate ZO's pre-polish loss ≤ 1e-4 (max over seeds); holds if tr_ZO/tr_min ≤ 1.05
# and tr_GD/tr_min ≥ 2 in ≥ 4/5 seeds, does not hold if tr_ZO ≥ tr_GD in as many (pilot: 1.009–1.015 vs 3.1–3.3).
CONVEX = Gate(AtMost(1e-4, what="largest ZO pre-polish loss"),
              CountRule(0.8, success="tr_ZO/tr_min ≤ 1.05 and tr_GD/tr_min ≥ 2", failure="tr_ZO ≥ tr_GD",
                        min_seeds=5),
              why="ZO must have reached the minimizer set (loss ≤ 1e-4) before its polished trace is read")

# zo.glm_control — spec §4.4: per data seed (a) GD from two inits: trace rel. difference ≤ 1e-6; (b) ZO (λ = 1):
# loss ≥ loss_GD + 0.005 and trace ≤ 0.9·tr_GD; (c) GD-polished ZO endpoint: |tr − tr_GD|/tr_GD ≤ 1e-3. Holds if
# (a)–(c) pass on every seed; does not hold if (a) or (c) fails on every seed; else inconclusive.
GLM = CountRule(1.0, success="(a), (b) and (c) all pass", failure="(a) or (c) fails", min_seeds=1)

# zo.memory_inference — spec §4.6 (MeZO's claim): holds if M_ZO/M_inf ≤ 1.10 and M_FO-SGD/M_inf ≥ 2.
MEMORY = AllChecks(zo=AtMost(1.10, what="peak memory ZOSGD / inference", unit="×"),
                   fo=AtLeast(2.0, what="peak memory FO-SGD / inference", unit="×"))


def median(xs) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


def smoothing_verdict(coverage: list[float], bias_z: list[float]) -> Outcome:
    """``coverage``: fraction of |z| ≤ 3 per case; ``bias_z``: z of the cubic bias at eps = 0.5 per kind."""
    return SMOOTHING.evaluate(coverage=min(coverage), bias=min(bias_z))


def toy_verdict(gd_ratio: list[float], dd_ratio: list[float], zo_over_gd: list[float]) -> Outcome:
    """Per chain: GD and DD trace end/start, and tr_ZO/tr_GD (polished)."""
    n = len(zo_over_gd)
    keep = {"gd_low": median(gd_ratio), "gd_high": median(gd_ratio), "dd_low": median(dd_ratio),
            "dd_high": median(dd_ratio)}
    s = sum(r <= 0.75 for r in zo_over_gd)
    f = sum(r >= 1.0 for r in zo_over_gd)
    return TOY.evaluate(keep, (s, f, n))


def convex_verdict(zo_loss: list[float], zo_ratio: list[float], gd_ratio: list[float]) -> Outcome:
    """Per seed: ZO pre-polish loss, tr_ZO/tr_min and tr_GD/tr_min (polished traces)."""
    s = sum(z <= 1.05 and g >= 2.0 for z, g in zip(zo_ratio, gd_ratio))
    f = sum(z >= g for z, g in zip(zo_ratio, gd_ratio))
    return CONVEX.evaluate(max(zo_loss), (s, f, len(zo_ratio)))


def glm_checks(tr_gd1: float, tr_gd2: float, loss_gd: float, loss_zo: float, tr_zo: float,
               tr_polished: float) -> dict[str, bool]:
    return {"a": abs(tr_gd1 - tr_gd2) <= 1e-6 * abs(tr_gd1),
            "b": loss_zo >= loss_gd + 0.005 and tr_zo <= 0.9 * tr_gd1,
            "c": abs(tr_polished - tr_gd1) <= 1e-3 * abs(tr_gd1)}


def glm_verdict(checks: list[dict[str, bool]]) -> Outcome:
    s = sum(all(c.values()) for c in checks)
    f = sum(not (c["a"] and c["c"]) for c in checks)
    return GLM.evaluate(s, f, len(checks))


def memory_verdict(zo_ratio: float, fo_ratio: float) -> Outcome:
    return MEMORY.evaluate(zo=zo_ratio, fo=fo_ratio)


class Requires(Criterion):
    """Side conditions that ``holds`` needs: ``evaluate(**flags)`` holds if every named flag is true, else
    inconclusive (never "does not hold": failing a side condition leaves the claim undecided)."""

    def __init__(self, **conditions: str) -> None:
        self.conditions = conditions  # name -> the condition in words

    def describe(self) -> str:
        return "holds if " + " and ".join(self.conditions.values()) + "; inconclusive otherwise"

    def evaluate(self, **flags: bool) -> Outcome:
        missing = set(self.conditions) - set(flags)
        if missing:
            raise ValueError(f"missing flags: {sorted(missing)}")
        details = {k: int(bool(v)) for k, v in flags.items()}
        ok = all(flags[k] for k in self.conditions)
        return Outcome(HOLDS if ok else INCONCLUSIVE, details,
                       "" if ok else "a side condition failed: " + ", ".join(k for k in self.conditions
                                                                           if not flags[k]))


# zo.balancing — spec §4.7 (Prop. 2.2's closed form): gate GD control |B/B_raw − 1| ≤ 1 %; per λ the interval
# mean ± 2 SE of B_T/B₀ over the prediction exp(−2λ²·lr·T): holds if inside [0.85, 1.15] for both λ; does not hold
# if entirely outside for either; else inconclusive. Encoded per λ as a position: +1 inside, −1 entirely outside,
# 0 overlapping an edge (Band: ≥ 0.5 holds, ≤ −0.5 does not hold).
def _position(what: str) -> Band:
    return Band(-0.5, 0.5, what=f"{what} (+1: mean ± 2SE inside [0.85, 1.15]·prediction; −1: entirely outside; "
                "0: across an edge)")


BALANCING = Gate(AtMost(0.01, what="GD control |B_polished/B_raw − 1|"),
                 AllChecks(lam_small=_position("smaller λ"), lam_large=_position("larger λ")),
                 why="gradient descent must keep the imbalance (within 1 %) for the decay to be ZO's")

# zo.equal_loss_trace — spec §4.5 (ours): traces at the lowest loss level every chain of every run reached; gate:
# median tr_DD/tr_GD ∈ [0.9, 1.1]; holds if tr_ZO(0.2)/tr_GD ≤ 0.85 in ≥ 4/5 chains with median tr_ZO(0.1)/tr_GD < 1
# and median ZO(0.2) < median ZO(0.1); does not hold if tr_ZO(0.2)/tr_GD ≥ 1.0 in ≥ 4/5 chains.
_DD_GATE = AllChecks(dd_low=AtLeast(0.9, what="median tr_DD/tr_GD at the matched level"),
                     dd_high=AtMost(1.1, what="median tr_DD/tr_GD at the matched level"),
                     level=AtLeast(1.0, what="levels reached by every chain of every run", unit="levels"))
EQUAL_LOSS = AllChecks(
    count=Gate(_DD_GATE, CountRule(0.8, success="tr_ZO(0.2)/tr_GD ≤ 0.85", failure="tr_ZO(0.2)/tr_GD ≥ 1.0",
                                   min_seeds=5),
               why="DD must match GD (isolating smoothing from estimator noise) at a level every chain reached"),
    side=Requires(zo01="median tr_ZO(0.1)/tr_GD < 1", order="median tr_ZO(0.2)/tr_GD < median tr_ZO(0.1)/tr_GD"),
)


def _interval_position(values: list[float]) -> float:
    n = len(values)
    mean = sum(values) / n
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else math.inf
    lo, hi = mean - 2 * se, mean + 2 * se
    if 0.85 <= lo and hi <= 1.15:
        return 1.0
    if hi < 0.85 or lo > 1.15:
        return -1.0
    return 0.0


def balancing_verdict(gd_control: float, small: list[float], large: list[float]) -> Outcome:
    """``small``/``large``: per chain B_T/B₀ over the prediction, for the two λ."""
    return BALANCING.evaluate(gd_control, {"lam_small": _interval_position(small),
                                           "lam_large": _interval_position(large)})


def equal_loss_verdict(levels_reached: int, dd_over_gd: list[float], zo1_over_gd: list[float],
                       zo2_over_gd: list[float]) -> Outcome:
    """Per chain ratios at the lowest level every chain reached (``levels_reached`` = how many levels that is)."""
    n = len(zo2_over_gd)
    if levels_reached < 1:
        dd = math.nan
    else:
        dd = median(dd_over_gd)
    gate = {"dd_low": dd, "dd_high": dd, "level": float(levels_reached)}
    s = sum(r <= 0.85 for r in zo2_over_gd)
    f = sum(r >= 1.0 for r in zo2_over_gd)
    m1, m2 = median(zo1_over_gd), median(zo2_over_gd)
    return EQUAL_LOSS.evaluate(count=(gate, (s, f, n)), side={"zo01": m1 < 1, "order": m2 < m1})
