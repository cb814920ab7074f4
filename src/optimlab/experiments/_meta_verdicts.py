"""Criteria of the ``meta.*`` claims (mirror-descent meta-learning, arXiv:2312.13486), fixed before any run, and
the pure functions that turn per-seed numbers into verdicts (unit-tested on hand-made numbers in
tests/experiments/test_meta_verdicts.py). Every threshold comes from this project's design notes for the family,
written before these claims ran; the comment above each criterion gives its justification."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from optimlab.evidence.criteria import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, Criterion, Outcome


def median(xs: Sequence[float]) -> float:
    xs = [float(x) for x in xs]
    return statistics.median(xs) if xs else math.nan


def _nan(*xs: float) -> bool:
    return any(math.isnan(float(x)) for x in xs)


@dataclass(frozen=True)
class BeatsLinearFloor(Criterion):
    """Claim ``meta.exp_geometry``. ``evaluate(mirror, maml, metasgd, floor)``: dicts K → value (Mirror: median
    over seeds). best_K = min(floor_K, MAML_K, Meta-SGD_K). ``holds`` if Mirror_K ≤ ``margin``·best_K for every K
    and Mirror_{K₁} ≤ ``cross``·best_{K_last} (one mirror step beats the linear learners' most steps);
    ``does not hold`` if Mirror_K ≥ best_K for any K; else ``inconclusive``; ``inconclusive`` too if Meta-SGD is
    more than ``slack`` above floor_K (under-trained baseline) or a value is NaN."""

    margin: float = 0.5
    cross: float = 0.75
    slack: float = 0.10
    min_seeds: int = field(default=3, kw_only=True)

    def describe(self) -> str:
        return (f"with best_K = min(linear floor_K, trained MAML_K, trained Meta-SGD_K) and Mirror_K the median over "
                f"seeds: holds if Mirror_K <= {self.margin:g} best_K for every K run and Mirror at the smallest K <= "
                f"{self.cross:g} best at the largest K; does not hold if Mirror_K >= best_K for any K; inconclusive "
                f"otherwise, or if trained Meta-SGD is more than {100 * self.slack:g}% above floor_K")

    def evaluate(self, mirror: Mapping[int, float], maml: Mapping[int, float], metasgd: Mapping[int, float],
                 floor: Mapping[int, float]) -> Outcome:
        ks = sorted(mirror)
        best = {k: min(floor[k], maml[k], metasgd[k]) for k in ks}
        details: dict[str, float] = {}
        for k in ks:
            details[f"K={k} mirror/best"] = mirror[k] / best[k]
            details[f"K={k} metasgd/floor"] = metasgd[k] / floor[k]
        details["mirror first K/best last K"] = mirror[ks[0]] / best[ks[-1]]
        if _nan(*mirror.values(), *maml.values(), *metasgd.values(), *floor.values()):
            return Outcome(INCONCLUSIVE, details, "a gap is NaN")
        if any(mirror[k] >= best[k] for k in ks):
            return Outcome(DOES_NOT_HOLD, details)
        if any(metasgd[k] > (1 + self.slack) * floor[k] for k in ks):
            return Outcome(INCONCLUSIVE, details, f"trained Meta-SGD is more than {100 * self.slack:g}% above the "
                           "linear floor (under-trained baseline)")
        ok = all(mirror[k] <= self.margin * best[k] for k in ks) and mirror[ks[0]] <= self.cross * best[ks[-1]]
        return Outcome(HOLDS if ok else INCONCLUSIVE, details)


@dataclass(frozen=True)
class RatioBelow(Criterion):
    """Claim ``meta.poisson_glm``. ``evaluate(ratios, skipped_fraction)``: ratios K → r_K (median over seeds of
    Mirror ÷ min(MAML, Meta-SGD), paired by seed). ``holds`` if r_K ≤ ``high`` for every K; ``does not hold``
    if r_K ≥ ``low`` for any K; else ``inconclusive``; ``inconclusive`` too if more than ``max_skipped`` of the
    meta-steps were skipped as non-finite or a ratio is NaN."""

    high: float = 0.9
    low: float = 1.0
    max_skipped: float = 0.05
    min_seeds: int = field(default=3, kw_only=True)

    def describe(self) -> str:
        return (f"r_K = median over seeds of Mirror / min(MAML, Meta-SGD) (paired by seed): holds if r_K <= "
                f"{self.high:g} at every K run; does not hold if r_K >= {self.low:g} at any K; inconclusive otherwise, "
                f"or if more than {100 * self.max_skipped:g}% of meta-steps were skipped as non-finite")

    def evaluate(self, ratios: Mapping[int, float], skipped_fraction: float) -> Outcome:
        details = {f"K={k} ratio": float(r) for k, r in ratios.items()}
        details["skipped fraction"] = float(skipped_fraction)
        if _nan(*ratios.values()):
            return Outcome(INCONCLUSIVE, details, "a ratio is NaN")
        if skipped_fraction > self.max_skipped:
            return Outcome(INCONCLUSIVE, details, f"more than {100 * self.max_skipped:g}% of meta-steps skipped")
        if any(r >= self.low for r in ratios.values()):
            return Outcome(DOES_NOT_HOLD, details)
        return Outcome(HOLDS if all(r <= self.high for r in ratios.values()) else INCONCLUSIVE, details)


@dataclass(frozen=True)
class TieBand(Criterion):
    """Claim ``meta.quadratic_tie`` (negative control). ``evaluate(rho, mirror_k1, metasgd_k1, floor)``: rho K →
    ρ_K (median over seeds of gap(Mirror)/gap(Meta-SGD)). ``holds`` if every ρ_K ∈ [tie_low, tie_high] and
    gap(Mirror, K=1) ≥ ``leak``·floor; ``does not hold`` if any ρ_K is outside [fail_low, fail_high]; else
    ``inconclusive``; ``inconclusive`` too if Meta-SGD at K = 1 is more than ``slack`` above the floor."""

    tie_low: float = 0.87
    tie_high: float = 1.15
    fail_low: float = 0.8
    fail_high: float = 1.25
    leak: float = 0.93
    slack: float = 0.10
    min_seeds: int = field(default=3, kw_only=True)

    def describe(self) -> str:
        return (f"rho_K = median over seeds of gap(Mirror)/gap(Meta-SGD): holds if rho_K in [{self.tie_low:g}, "
                f"{self.tie_high:g}] for every K and gap(Mirror, K=1) >= {self.leak:g} x the diagonal floor; does not "
                f"hold if any rho_K is outside [{self.fail_low:g}, {self.fail_high:g}]; inconclusive otherwise, or if "
                f"Meta-SGD at K=1 is more than {100 * self.slack:g}% above the floor")

    def evaluate(self, rho: Mapping[int, float], mirror_k1: float, metasgd_k1: float, floor: float) -> Outcome:
        details = {f"K={k} rho": float(r) for k, r in rho.items()}
        details.update({"mirror K=1/floor": mirror_k1 / floor, "metasgd K=1/floor": metasgd_k1 / floor})
        if _nan(*rho.values(), mirror_k1, metasgd_k1, floor):
            return Outcome(INCONCLUSIVE, details, "a gap is NaN")
        if any(not self.fail_low <= r <= self.fail_high for r in rho.values()):
            return Outcome(DOES_NOT_HOLD, details)
        if metasgd_k1 > (1 + self.slack) * floor:
            return Outcome(INCONCLUSIVE, details, f"Meta-SGD at K=1 is more than {100 * self.slack:g}% above the "
                           "diagonal floor (under-trained baseline)")
        if mirror_k1 < self.leak * floor:
            return Outcome(INCONCLUSIVE, details, "Mirror beats the population floor by more than test noise "
                           "(a bug or a leak)")
        ok = all(self.tie_low <= r <= self.tie_high for r in rho.values())
        return Outcome(HOLDS if ok else INCONCLUSIVE, details)


# Claim 1: 0.5 is a wide margin below the best linear learner (the oracle map reaches 0); the cross-step
# comparison and the 10% under-training gate are from the family's design notes (fixed before any run).
EXP_GEOMETRY = BeatsLinearFloor(margin=0.5, cross=0.75, slack=0.10)
# Claim 2: r <= 0.9 (a 10% gain) to hold, r >= 1 (no gain) to fail; 5% skipped steps (design notes).
POISSON = RatioBelow(high=0.9, low=1.0, max_skipped=0.05)
# Claim 3: the tie band [0.87, 1.15] / failure band [0.8, 1.25] and the 0.93 leak bound (test noise ~2% s.d. at
# 2048 tasks), from the design notes; the K = 1 tie is a theorem of the notes, the K = 3 band a heuristic.
QUADRATIC = TieBand()

__all__ = ["EXP_GEOMETRY", "POISSON", "QUADRATIC", "BeatsLinearFloor", "RatioBelow", "TieBand", "median"]


@dataclass(frozen=True)
class NoRegression(Criterion):
    """Claim ``meta.sinusoid``. ``evaluate(ratio)``: ratio = median over seeds of Mirror ÷ Meta-SGD query MSE.
    ``holds`` if ratio ≤ ``ok``; ``does not hold`` if ratio > ``fail``; else (or NaN) ``inconclusive``."""

    ok: float = 1.05
    fail: float = 1.15
    min_seeds: int = field(default=2, kw_only=True)

    def describe(self) -> str:
        return (f"ratio = median over seeds of Mirror / Meta-SGD query MSE at K: holds if <= {self.ok:g}; does not "
                f"hold if > {self.fail:g}; inconclusive in between")

    def evaluate(self, ratio: float) -> Outcome:
        details = {"ratio": float(ratio)}
        if _nan(ratio):
            return Outcome(INCONCLUSIVE, details, "the ratio is NaN")
        if ratio <= self.ok:
            return Outcome(HOLDS, details)
        return Outcome(DOES_NOT_HOLD if ratio > self.fail else INCONCLUSIVE, details)


@dataclass(frozen=True)
class PairedCI(Criterion):
    """Claim ``meta.digits_fewshot``. ``evaluate(lows, highs)``: per seed, the 95% CI (mean ± 1.96·sd/√N over
    test tasks) of the paired accuracy difference Mirror − best(MAML, Meta-SGD), in points. ``holds`` if every
    lower bound > ``margin``; ``does not hold`` if every upper bound < 0; else ``inconclusive``."""

    margin: float = 1.0
    min_seeds: int = field(default=1, kw_only=True)

    def describe(self) -> str:
        return (f"per seed, the 95% CI of the paired test accuracy difference Mirror - best(MAML, Meta-SGD): holds if "
                f"the lower bound is > +{self.margin:g} pt in every seed; does not hold if the upper bound is < 0 in "
                f"every seed; inconclusive otherwise")

    def evaluate(self, lows: Sequence[float], highs: Sequence[float]) -> Outcome:
        details = {"smallest lower bound": min(lows, default=math.nan), "largest upper bound": max(highs, default=math.nan)}
        if not lows or _nan(*lows, *highs):
            return Outcome(INCONCLUSIVE, details, "no finite interval")
        if all(lo > self.margin for lo in lows):
            return Outcome(HOLDS, details)
        if all(hi < 0 for hi in highs):
            return Outcome(DOES_NOT_HOLD, details)
        return Outcome(INCONCLUSIVE, details)


# Claim 5: "no regression" band; Meta-SGD alone ranged 0.53-0.68 over 3 seeds in the design notes' reference runs,
# hence the loose 1.05 / 1.15 band (fixed before any run).
SINUSOID = NoRegression(ok=1.05, fail=1.15)
# Claim 4: 1 pt ~ the seed-to-seed spread of the baselines in the design notes' reference runs (fixed before any run).
DIGITS = PairedCI(margin=1.0)
__all__ += ["DIGITS", "SINUSOID", "NoRegression", "PairedCI"]
