"""Stopping certificates of conic descent and MOCO (derived here; the MOCO paper's own criterion is UNVERIFIED).

Notation: σ(G) = min(0, min_{v ∈ K, size(v) ≤ 1} ⟨G, v⟩) the LMO value (PSD: min(0, λ_min(G)), with the Ritz
value θ replaced by θ − ρ, ρ = ‖Gu − θu‖), η(G) = −σ(G) ≥ 0, and R ≥ size(x*) in the cone's slice functional.

* single point (conic descent): by convexity f* ≥ f(x) − ⟨G, x⟩ + ⟨G, x*⟩ ≥ f(x) − ⟨G, x⟩ − R·η(G), so
  gap_bound = f(x) − lower = |⟨G, x⟩| + R·η(G) when ⟨G, x⟩ = 0 after an exact ray step;
* averaged (MOCO, no extra oracle call): with D_t = Σ_j w_j G_j, w_j = δ_j Π_{i>j}(1 − δ_i) (Σ w_j = 1 since
  δ_0 = 1), f* ≥ Σ_j w_j (f(x_j) − ⟨G_j, x_j⟩) − R·η(D_t) (convexity at each x_j, weighted sum, then
  ⟨D_t, x*⟩ ≥ −R·η(D_t)); the weighted sum is a running scalar with D_t's recursion;
* every bound is kept as a running maximum of the lower bounds, so gap_bound = f(x_t) − max_j lower_j.

The relative gap is gap_bound / max(1, |objective|).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["CERTIFICATES", "MOMENTA", "averaged_weights", "momentum_schedule", "rel_gap"]

MOMENTA = ("2/(t+2)", "1/(t+1)")
CERTIFICATES = ("averaged", "exact")


def momentum_schedule(momentum: Any, *, owner: str = "moco") -> Callable[[int], float]:
    """t ↦ δ_t for ``"2/(t+2)"`` (the default, as in heavy-ball Frank–Wolfe), ``"1/(t+1)"``, a constant in
    (0, 1] or a callable; δ_0 = 1 always (so D_0 = G_0). Values outside (0, 1] raise ``ValueError``."""
    if isinstance(momentum, str):
        if momentum == "2/(t+2)":
            base = lambda t: 2.0 / (t + 2.0)
        elif momentum == "1/(t+1)":
            base = lambda t: 1.0 / (t + 1.0)
        else:
            raise ValueError(f"{owner}: momentum must be one of {MOMENTA}, a number in (0, 1] or a callable, got "
                             f"{momentum!r}")
    elif callable(momentum):
        base = momentum
    elif isinstance(momentum, (int, float)) and not isinstance(momentum, bool) and 0 < momentum <= 1:
        const = float(momentum)
        base = lambda t: const
    else:
        raise ValueError(f"{owner}: momentum must be one of {MOMENTA}, a number in (0, 1] or a callable, got "
                         f"{momentum!r}")

    def delta(t: int) -> float:
        if t == 0:
            return 1.0
        d = float(base(t))
        if not (0 < d <= 1):
            raise ValueError(f"{owner}: momentum must give values in (0, 1], got {d!r} at t = {t}")
        return d

    return delta


def averaged_weights(momentum: Any, t: int) -> np.ndarray:
    """w_j = δ_j Π_{i=j+1..t} (1 − δ_i), j = 0..t: the weights of G_j in D_t (they sum to 1)."""
    delta = momentum_schedule(momentum)
    w = np.zeros(t + 1)
    for j in range(t + 1):
        w *= 1.0 - delta(j)
        w[j] = delta(j)
    return w


def rel_gap(gap: float, objective: float) -> float:
    """gap / max(1, |objective|) (inf stays inf, NaN stays NaN)."""
    if math.isnan(gap) or math.isnan(objective):
        return math.nan
    return gap / max(1.0, abs(objective))
