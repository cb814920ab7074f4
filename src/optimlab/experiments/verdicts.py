"""Pass rules shared by claims. Each claim fixes its thresholds in its own code and cites their source."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def paired_sign_rule(
    diffs: Sequence[float], *, min_effect: float, min_fraction: float
) -> tuple[str, dict[str, float]]:
    """Verdict for paired differences ``d_s = new_s - baseline_s`` where larger is better for ``new``.

    ``holds`` if median(d) >= ``min_effect`` and d > 0 in at least ``ceil(min_fraction * n)`` seeds;
    ``does not hold`` if median(d) <= -``min_effect``; else ``inconclusive``.
    Returns the verdict and the numbers it was computed from.
    """
    if not diffs:
        raise ValueError("diffs must be non-empty")
    n = len(diffs)
    med = statistics.median(diffs)
    wins = sum(1 for d in diffs if d > 0)
    need = math.ceil(min_fraction * n - 1e-9)
    if med >= min_effect and wins >= need:
        verdict = "holds"
    elif med <= -min_effect:
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return verdict, {"median_diff": med, "wins": wins, "n": n, "wins_needed": need}


def count_rule(successes: int, failures: int, n: int, *, min_fraction: float) -> str:
    """``holds`` if ``successes >= ceil(min_fraction*n)``; ``does not hold`` if ``failures`` does; else inconclusive."""
    need = math.ceil(min_fraction * n - 1e-9)
    if successes >= need:
        return "holds"
    if failures >= need:
        return "does not hold"
    return "inconclusive"
