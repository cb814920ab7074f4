"""``solve_with_cvxpy``: the same problem through CVXPY with a trusted solver (SCS by default), for checking.

CVXPY (and SCS) are imported inside the function: ``import optimlab.conic`` needs numpy and scipy only. The SDP
variable is declared ``PSD=True``; MaxCut is solved in its max form and reported as such. The status of the peer is
mapped onto :mod:`optimlab.result`'s (``optimal`` → converged, ``*_inaccurate`` → inaccurate, ``infeasible`` →
infeasible, ``unbounded`` → unbounded). Memory of the peer is O(n²) for the SDPs.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from optimlab.conic.cones import NonnegativeOrthant, Product, SecondOrderCone
from optimlab.conic.maxcut import MaxCutSDP
from optimlab.conic.problems import MatrixCompletionSDP, NonnegLeastSquares, PhaseLift, QuadraticProgram
from optimlab.conic.result import ConicResult
from optimlab.result import CONVERGED, INACCURATE, INFEASIBLE, MAX_ITER, UNBOUNDED

__all__ = ["solve_with_cvxpy"]


def _vector_constraints(cp: Any, x: Any, cone: Any) -> list:
    if isinstance(cone, NonnegativeOrthant):
        return [x >= 0]
    if isinstance(cone, SecondOrderCone):
        return [cp.SOC(x[-1], x[:-1])]
    if isinstance(cone, Product):
        out = []
        for c, a, b in zip(cone.cones, cone.offsets[:-1], cone.offsets[1:]):
            out += _vector_constraints(cp, x[int(a):int(b)], c)
        return out
    raise ValueError(f"solve_with_cvxpy: unsupported cone {cone!r}")


def solve_with_cvxpy(problem: Any, *, solver: str = "SCS", eps: float = 1e-8, max_iters: int = 100_000,
                     time_limit: float | None = None, verbose: bool = False) -> ConicResult:
    """Solve ``problem`` with CVXPY + ``solver`` (always named: CVXPY 1.9 sends SDPs to Clarabel otherwise).

    ``eps`` sets SCS's ``eps_abs`` and ``eps_rel``; ``time_limit`` (seconds) SCS's ``time_limit_secs``. Returns a
    :class:`ConicResult` whose ``objective`` is in the problem's own sense (MaxCut: the max-form value).
    """
    import cvxpy as cp

    if isinstance(problem, MaxCutSDP):
        n = problem.n
        X = cp.Variable((n, n), PSD=True)
        L = problem.L.toarray()
        prob = cp.Problem(cp.Maximize(0.25 * cp.trace(L @ X)), [cp.diag(X) == 1])
        var = X
    elif isinstance(problem, MatrixCompletionSDP):
        n = problem.mask.shape[0]
        X = cp.Variable((n, n), PSD=True)
        rows, cols = np.nonzero(problem.mask)
        r = X[rows, cols] - problem.b
        prob = cp.Problem(cp.Minimize(0.5 * problem.scale * cp.sum_squares(r) + problem.trace_penalty * cp.trace(X)))
        var = X
    elif isinstance(problem, PhaseLift):
        n = problem.A.shape[1]
        X = cp.Variable((n, n), PSD=True)
        A = problem.A
        meas = cp.sum(cp.multiply(A @ X, A), axis=1)
        prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(meas - problem.b) + problem.trace_penalty * cp.trace(X)))
        var = X
    elif isinstance(problem, NonnegLeastSquares):
        x = cp.Variable(problem.A.shape[1])
        prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(problem.A @ x - problem.b)), [x >= 0])
        var = x
    elif isinstance(problem, QuadraticProgram):
        x = cp.Variable(problem.q.shape[0])
        P = 0.5 * (problem.P + problem.P.T)
        prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(P)) + problem.q @ x),
                          _vector_constraints(cp, x, problem.cone))
        var = x
    else:
        raise ValueError(f"solve_with_cvxpy: unsupported problem {type(problem).__name__}")
    kwargs: dict[str, Any] = {"verbose": verbose}
    if solver == "SCS":
        kwargs.update(eps_abs=eps, eps_rel=eps, max_iters=max_iters)
        if time_limit is not None:
            kwargs["time_limit_secs"] = float(time_limit)
    t0 = time.perf_counter()
    try:
        prob.solve(solver=solver, **kwargs)
    except cp.error.SolverError:
        return ConicResult(status=INACCURATE, iterations=0, seconds=time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    status = {cp.OPTIMAL: CONVERGED, cp.OPTIMAL_INACCURATE: INACCURATE, cp.INFEASIBLE: INFEASIBLE,
              cp.INFEASIBLE_INACCURATE: INFEASIBLE, cp.UNBOUNDED: UNBOUNDED,
              cp.UNBOUNDED_INACCURATE: UNBOUNDED}.get(prob.status, MAX_ITER)
    stats = prob.solver_stats
    iters = int(getattr(stats, "num_iters", 0) or 0)
    value = float(prob.value) if prob.value is not None and math.isfinite(prob.value) else math.nan
    if status == UNBOUNDED:
        value = -math.inf
    sol = None if var.value is None else np.array(var.value)
    viol = float(np.abs(np.diag(sol) - 1).max()) if isinstance(problem, MaxCutSDP) and sol is not None else 0.0
    return ConicResult(status=status, iterations=iters, seconds=seconds, objective=value, x=sol,
                       constraint_violation=viol, primal_residual=viol,
                       certificate={"solver_status": 0.0 if status == CONVERGED else 1.0})
