"""The result of a conic solver: an :class:`~optimlab.result.IterativeResult` with the solution and its certificate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from optimlab.result import IterativeResult

__all__ = ["ConicResult"]


@dataclass(frozen=True, kw_only=True)
class ConicResult(IterativeResult):
    """Outcome of :func:`~optimlab.conic.conic_descent`, :func:`~optimlab.conic.moco`,
    :func:`~optimlab.conic.lowrank_moco` or :func:`~optimlab.conic.solve_with_cvxpy`.

    Attributes (beyond ``status, iterations, seconds, history, certificate``):
        objective: the objective in the problem's own sense (MaxCut: the max-form value ¼⟨L, X⟩).
        x: the solution (vector or n×n matrix), or None for low-rank runs.
        factors: ``(U, lam)`` with X ≈ U diag(lam) Uᵀ (low-rank runs), else None.
        constraint_violation: ‖diag X − 1‖∞ for MaxCut (the primal residual), 0 otherwise.
        primal_residual, dual_residual: constraint violation and dual-cone violation η(G) of the last check.
        matvecs: products with the gradient operator spent by the eigensolver (and the certificate).
        diag: diag(X) of the tracked iterate (low-rank MaxCut runs, where X itself is never formed).
    history keys: ``objective, gap_bound, rel_gap_bound, dual_violation, eig_residual, matvecs, seconds`` (one entry
    per checked iterate; MaxCut adds ``constraint_violation``). certificate keys: ``gap_bound, rel_gap_bound,
    lower_bound, complementarity, dual_violation, eig_residual, radius`` (MaxCut adds ``constraint_violation``
    and ``upper_bound``, the certified bound on the max-form SDP value).
    """

    objective: float = float("nan")
    x: Any = None
    factors: tuple[np.ndarray, np.ndarray] | None = None
    constraint_violation: float = 0.0
    primal_residual: float = 0.0
    dual_residual: float = float("nan")
    matvecs: int = 0
    diag: np.ndarray | None = None

    def to_numpy(self) -> Any:
        """The solution: ``x``, or U diag(lam) Uᵀ formed from the factors (O(n²): small n only)."""
        if self.x is not None:
            return np.asarray(self.x)
        if self.factors is not None:
            U, lam = self.factors
            return (U * lam) @ U.T
        raise ValueError("ConicResult: no solution stored")
