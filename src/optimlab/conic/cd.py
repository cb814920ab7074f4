"""Conic descent (Duchi, Hinder, Naber, Ye, "Conic Descent and its Application to Memory-efficient Optimization
over Positive Semidefinite Matrices", NeurIPS 2020; reference code github.com/AndrewTNaber/memeffpsd, read for
the loop order and defaults; the paper's PDF was not read).

At x_t:  (1) ray step x_t ← s_t x_t, s_t = argmin_{s ≥ 0} f(s x_t) (after it ⟨∇f(x_t), x_t⟩ = 0);
(2) G_t = ∇f(x_t), (v_t, σ_t) = lmo(G_t), certificate f* ≥ f(x_t) − ⟨G_t, x_t⟩ − R·η(G_t);
(3) if σ_t < 0: x_{t+1} = x_t + τ_t v_t, τ_t = argmin_{τ ≥ 0} f(x_t + τ v_t).
``step="joint"`` (ours) replaces (1) and (3) by (α, β) = argmin_{α, β ≥ 0} f(α x_t + β v_t).
Rate (from the paper's reviews; constants not checked): O(1/k) under the paper's additional assumptions (which
hold for matrix completion), not for every smooth convex f.
"""

from __future__ import annotations

import math
from typing import Any

from optimlab.conic.moco import solve
from optimlab.conic.problems import ConicProblem
from optimlab.conic.result import ConicResult

__all__ = ["conic_descent"]


def conic_descent(problem: ConicProblem, *, step: str = "sequential", tol: float = 1e-3, max_iter: int = 1000,
                  x0: Any = None, eig_tol: float = 1e-8, eig_maxiter: int | None = None, dual_every: int = 50,
                  stall_window: int = 20, matvec_budget: float = math.inf, generator: Any = None) -> ConicResult:
    """Conic descent on ``problem`` (module docstring); arguments as :func:`~optimlab.conic.moco` (``tol=0``
    runs to ``max_iter`` like the reference code, whose λ_min stopping test is commented out)."""
    return solve(problem, momentum=1.0, certificate="exact", step=step, tol=tol, max_iter=max_iter, x0=x0,
                 eig_tol=eig_tol, eig_maxiter=eig_maxiter, dual_every=dual_every, stall_window=stall_window,
                 matvec_budget=matvec_budget, generator=generator, owner="conic_descent")
