"""Pass criteria as objects: each one renders its text and computes the verdict from the same constants.

A claim fixes its criterion once, next to a comment giving the source of its thresholds::

    # +0.5 pt in 4 of 5 paired seeds, fixed before any run (4 of 5 signs agree by chance: p = 6/32)
    CRITERION = PairedSign(0.5, 0.8, what="VaSSO − SAM test accuracy", unit="pt")

    CRITERION.describe()           # the text shown by ``optimlab list`` and the report
    CRITERION.evaluate(diffs)      # Outcome(verdict, details, reason)

No criterion text is written by hand: :meth:`Criterion.describe` builds it from the attributes that
:meth:`Criterion.evaluate` applies. Composite criteria (:class:`AllChecks`, :class:`Gate`) live in
:mod:`optimlab.evidence.combinators`.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from optimlab._validation import Interval, check
from optimlab.report.schema import VERDICTS

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = VERDICTS

__all__ = ["DOES_NOT_HOLD", "HOLDS", "INCONCLUSIVE", "VERDICTS", "Above", "AtLeast", "AtMost", "Band", "CountRule", "Criterion",
           "Outcome", "PairedSign", "RatioAtMost", "WithinRelative", "count_rule", "paired_sign_rule"]


@dataclass(frozen=True)
class Outcome:
    """What a criterion concluded: the ``verdict`` (one of :data:`VERDICTS`), the numbers it was computed from
    (``details``, merged into a result's summary by ``ctx.result``) and, for a verdict forced by a special case
    (a NaN, a failed precondition), the ``reason``."""

    verdict: str
    details: dict[str, float | int | str] = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


class Criterion:
    """Base of every pass criterion.

    ``min_seeds``: with fewer seeds the runner reports the claim ``inconclusive`` and says why.
    ``describe()``: the rule in words, rendered from the constants ``evaluate`` applies.
    ``evaluate(...)``: an :class:`Outcome`; each subclass documents its arguments.
    ``verdict(...)``: ``evaluate(...).verdict``.
    """

    min_seeds: int = 1

    def describe(self) -> str:
        raise NotImplementedError

    def evaluate(self, *args: Any, **kwargs: Any) -> Outcome:
        raise NotImplementedError

    def verdict(self, *args: Any, **kwargs: Any) -> str:
        """The verdict alone: ``evaluate(*args, **kwargs).verdict``."""
        return self.evaluate(*args, **kwargs).verdict

    def requirement(self) -> str:
        """What must be true for ``holds``, as a phrase (how :class:`Gate` names its precondition)."""
        return f"this holds: {self.describe()}"


# ---------------------------------------------------------------- argument checks and formatting


_FRACTION = Interval(0.5, 1.0, closed="right")  # above 1/2: "holds" and "does not hold" can never both be met
_SEEDS = Interval(1, None, integer=True)


def _number(name: str, value: Any, *, low: float | None = None, low_open: bool = False) -> float:
    """``value`` as a finite float (≥ ``low``, or > it with ``low_open``), else ``ValueError`` naming ``name``."""
    return check(Interval(low, None, closed="right" if low_open else "both"), value, name)


def _fraction(value: Any) -> float:
    return check(_FRACTION, value, "min_fraction")


def _min_seeds(value: Any) -> int:
    return check(_SEEDS, value, "min_seeds")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _needed(min_fraction: float, n: int) -> int:
    """``ceil(min_fraction · n)``, robust to rounding (0.8 · 5 is 4, not 5)."""
    return math.ceil(min_fraction * n - 1e-9)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _qty(x: float, unit: str, *, sign: bool = False) -> str:
    text = (f"{x:+g}" if sign else f"{x:g}").replace("-", "−")
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("%", "×", "x") else f"{text} {unit}"


def _share(min_fraction: float, min_seeds: int, noun: str) -> str:
    return (f"≥ {_fmt(100 * min_fraction)}% of the {noun} (⌈{_fmt(min_fraction)}·n⌉: "
            f"{_needed(min_fraction, min_seeds)} of {min_seeds})")


# ---------------------------------------------------------------- seed-counting rules


@dataclass(frozen=True)
class PairedSign(Criterion):
    """Paired differences ``d_s = new_s − baseline_s`` over seeds, larger is better for ``new``.

    ``evaluate(diffs)``: ``holds`` if median(d) ≥ +``min_effect`` and d_s > 0 in at least
    ``ceil(min_fraction·n)`` seeds; ``does not hold`` if median(d) ≤ −``min_effect`` and d_s < 0 in at least as
    many seeds (symmetric: saying "does not hold" needs as much evidence as saying "holds"); ties (d_s == 0)
    count for neither side; any NaN difference gives ``inconclusive``; else ``inconclusive``.
    Details: ``median_diff``, ``wins``, ``losses``, ``n``, ``needed``.
    """

    min_effect: float
    min_fraction: float = 0.8
    what: str = field(default="new − baseline", kw_only=True)
    unit: str = field(default="", kw_only=True)
    min_seeds: int = field(default=5, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_effect", _number("min_effect", self.min_effect, low=0.0))
        object.__setattr__(self, "min_fraction", _fraction(self.min_fraction))
        _text("what", self.what)
        _min_seeds(self.min_seeds)

    def describe(self) -> str:
        e, share = self.min_effect, _share(self.min_fraction, self.min_seeds, "seeds")
        return (f"paired over seeds, d = {self.what}: holds if median(d) ≥ {_qty(e, self.unit, sign=True)} and "
                f"d > 0 in {share}; does not hold if median(d) ≤ {_qty(-e, self.unit, sign=True)} and d < 0 in as "
                f"many; ties count for neither; inconclusive otherwise (or if any d is NaN); "
                f"needs ≥ {self.min_seeds} seeds")

    def evaluate(self, diffs: Sequence[float]) -> Outcome:
        values = [float(d) for d in diffs]
        if not values:
            raise ValueError("diffs must be non-empty")
        n = len(values)
        need = _needed(self.min_fraction, n)
        wins = sum(d > 0 for d in values)
        losses = sum(d < 0 for d in values)
        if any(math.isnan(d) for d in values):
            details = {"median_diff": math.nan, "wins": wins, "losses": losses, "n": n, "needed": need}
            return Outcome(INCONCLUSIVE, details, f"a paired difference ({self.what}) is NaN")
        med = statistics.median(values)
        details = {"median_diff": med, "wins": wins, "losses": losses, "n": n, "needed": need}
        if med >= self.min_effect and wins >= need:
            return Outcome(HOLDS, details)
        if med <= -self.min_effect and losses >= need:
            return Outcome(DOES_NOT_HOLD, details)
        return Outcome(INCONCLUSIVE, details)


def paired_sign_rule(diffs: Sequence[float], *, min_effect: float,
                     min_fraction: float) -> tuple[str, dict[str, float | int | str]]:
    """``(verdict, details)`` of :class:`PairedSign` ``(min_effect, min_fraction)`` on ``diffs``."""
    out = PairedSign(min_effect, min_fraction, min_seeds=1).evaluate(diffs)
    return out.verdict, out.details


@dataclass(frozen=True)
class CountRule(Criterion):
    """Counts of paired runs that went one way or the other (e.g. "SAM's trace below SGD's").

    ``evaluate(successes, failures, n)``: ``holds`` if successes ≥ ``ceil(min_fraction·n)``; ``does not hold``
    if failures ≥ that; else ``inconclusive``. ``success``/``failure`` say in words what is counted.
    Details: ``successes``, ``failures``, ``n``, ``needed``.
    """

    min_fraction: float
    success: str = field(kw_only=True)
    failure: str = field(kw_only=True)
    min_seeds: int = field(default=5, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_fraction", _fraction(self.min_fraction))
        _text("success", self.success)
        _text("failure", self.failure)
        _min_seeds(self.min_seeds)

    def describe(self) -> str:
        share = _share(self.min_fraction, self.min_seeds, "runs")
        return (f"over n paired runs: holds if {self.success} in {share}; does not hold if {self.failure} in as "
                f"many; inconclusive otherwise; needs ≥ {self.min_seeds} seeds")

    def evaluate(self, successes: int, failures: int, n: int) -> Outcome:
        for name, v in (("successes", successes), ("failures", failures), ("n", n)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if n < 1 or successes + failures > n:
            raise ValueError(f"need n >= 1 and successes + failures <= n; got {successes}, {failures}, n={n}")
        need = _needed(self.min_fraction, n)
        details = {"successes": successes, "failures": failures, "n": n, "needed": need}
        if successes >= need:
            return Outcome(HOLDS, details)
        if failures >= need:
            return Outcome(DOES_NOT_HOLD, details)
        return Outcome(INCONCLUSIVE, details)


def count_rule(successes: int, failures: int, n: int, *, min_fraction: float) -> str:
    """The verdict of :class:`CountRule` ``(min_fraction)`` on these counts."""
    rule = CountRule(min_fraction, success="a success", failure="a failure", min_seeds=1)
    return rule.verdict(successes, failures, n)


# ---------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class AtMost(Criterion):
    """``evaluate(value)``: ``holds`` if value ≤ ``threshold``, ``does not hold`` if above, ``inconclusive`` if
    NaN. Details: ``value``, ``threshold``."""

    threshold: float
    what: str = field(kw_only=True)
    unit: str = field(default="", kw_only=True)
    min_seeds: int = field(default=1, kw_only=True)

    _symbol = "≤"

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", _number("threshold", self.threshold))
        _text("what", self.what)
        _min_seeds(self.min_seeds)

    def _passes(self, value: float) -> bool:
        return value <= self.threshold

    def requirement(self) -> str:
        return f"{self.what} {self._symbol} {_qty(self.threshold, self.unit)}"

    def describe(self) -> str:
        return f"holds if {self.requirement()}; does not hold otherwise; inconclusive if it is NaN"

    def evaluate(self, value: float) -> Outcome:
        value = float(value)
        details = {"value": value, "threshold": self.threshold}
        if math.isnan(value):
            return Outcome(INCONCLUSIVE, details, f"{self.what} is NaN")
        return Outcome(HOLDS if self._passes(value) else DOES_NOT_HOLD, details)


@dataclass(frozen=True)
class AtLeast(AtMost):
    """``evaluate(value)``: ``holds`` if value ≥ ``threshold``, ``does not hold`` if below, ``inconclusive`` if
    NaN. Details: ``value``, ``threshold``."""

    _symbol = "≥"

    def _passes(self, value: float) -> bool:
        return value >= self.threshold


@dataclass(frozen=True)
class Above(AtLeast):
    """``evaluate(value)``: ``holds`` if value > ``threshold`` (strictly), ``does not hold`` otherwise,
    ``inconclusive`` if NaN. Details: ``value``, ``threshold``."""

    _symbol = ">"

    def _passes(self, value: float) -> bool:
        return value > self.threshold


@dataclass(frozen=True)
class RatioAtMost(Criterion):
    """A cost ratio against a target (benchmarks). ``evaluate(ratio)``: ``holds`` if ratio ≤ ``target``,
    ``does not hold`` if above, ``inconclusive`` if NaN. Details: ``ratio``, ``target``."""

    target: float
    what: str = field(kw_only=True)
    min_seeds: int = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _number("target", self.target, low=0.0, low_open=True))
        _text("what", self.what)
        _min_seeds(self.min_seeds)

    def requirement(self) -> str:
        return f"the ratio {self.what} ≤ {_fmt(self.target)}"

    def describe(self) -> str:
        return f"holds if {self.requirement()}; does not hold if above"

    def evaluate(self, ratio: float) -> Outcome:
        ratio = float(ratio)
        details = {"ratio": ratio, "target": self.target}
        if math.isnan(ratio):
            return Outcome(INCONCLUSIVE, details, f"the ratio {self.what} is NaN")
        return Outcome(HOLDS if ratio <= self.target else DOES_NOT_HOLD, details)


@dataclass(frozen=True)
class WithinRelative(Criterion):
    """Agreement with a reference value. ``evaluate(value, reference)``: ``holds`` if
    |value − reference| ≤ ``rtol``·|reference|, ``does not hold`` otherwise, ``inconclusive`` if either is NaN.
    Details: ``value``, ``reference``, ``rel_diff`` (|value − reference| / |reference|)."""

    rtol: float
    what: str = field(kw_only=True)
    min_seeds: int = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rtol", _number("rtol", self.rtol, low=0.0))
        _text("what", self.what)
        _min_seeds(self.min_seeds)

    def requirement(self) -> str:
        return f"{self.what} is within a relative {_fmt(self.rtol)} ({_fmt(100 * self.rtol)}%) of its reference"

    def describe(self) -> str:
        return f"holds if {self.requirement()}; does not hold otherwise"

    def evaluate(self, value: float, reference: float) -> Outcome:
        value, reference = float(value), float(reference)
        gap = abs(value - reference)
        rel = gap / abs(reference) if reference != 0 else (0.0 if gap == 0 else math.inf)
        details = {"value": value, "reference": reference, "rel_diff": rel}
        if math.isnan(value) or math.isnan(reference):
            return Outcome(INCONCLUSIVE, {**details, "rel_diff": math.nan}, f"{self.what} or its reference is NaN")
        return Outcome(HOLDS if gap <= self.rtol * abs(reference) else DOES_NOT_HOLD, details)


@dataclass(frozen=True)
class Band(Criterion):
    """``evaluate(value)``: ``holds`` if value ≥ ``high``; ``does not hold`` if value ≤ ``low``; ``inconclusive``
    strictly between them or if the value is NaN. Needs ``low < high``. Details: ``value``, ``low``, ``high``."""

    low: float
    high: float
    what: str = field(kw_only=True)
    unit: str = field(default="", kw_only=True)
    min_seeds: int = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", _number("low", self.low))
        object.__setattr__(self, "high", _number("high", self.high))
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low!r}, high={self.high!r}")
        _text("what", self.what)
        _min_seeds(self.min_seeds)

    def _qty(self, x: float) -> str:
        return f"{x:g} {self.unit}".strip()

    def describe(self) -> str:
        return (f"holds if {self.what} ≥ {self._qty(self.high)}; does not hold if it is ≤ {self._qty(self.low)}; "
                f"inconclusive in between or if it is NaN")

    def evaluate(self, value: float) -> Outcome:
        value = float(value)
        details = {"value": value, "low": self.low, "high": self.high}
        if math.isnan(value):
            return Outcome(INCONCLUSIVE, details, f"{self.what} is NaN")
        if value >= self.high:
            return Outcome(HOLDS, details)
        if value <= self.low:
            return Outcome(DOES_NOT_HOLD, details)
        return Outcome(INCONCLUSIVE, details)
