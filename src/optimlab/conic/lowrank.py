"""Memory-efficient low-rank MOCO for the MaxCut SDP: X is never formed (O(n·k) memory).

Storage (as in the conic-descent reference code, github.com/AndrewTNaber/memeffpsd): z = diag(X) ∈ ℝⁿ,
c = ⟨C, X⟩, the averaged multipliers ω̄ (so D_t = C + Diag(ω̄_t)) and a Nyström sketch Y = XΩ, Ω ∈ ℝ^{n×k}
(:mod:`optimlab.conic.sketch`). Per iteration: ray step s (z, c, Y scaled by s), one bottom eigenvector u of D_t by
``eigsh`` on products with the sparse L and Diag(ω̄) (warm-started), line step τ on the true f (z += τu∘u,
c += τuᵀCu, Y += τu(uᵀΩ)). The momentum update and its 2/(t+2) default are an UNVERIFIED reconstruction of MOCO
(Li, Giannakis, arXiv:2308.07343; only its abstract was read).

Certificate (derived here; :mod:`optimlab.conic.maxcut`): lower_bound = −1ᵀω̄ + n·(θ − ρ) on p* for the tracked
X_t, with its exact objective −c and violation ‖z − 1‖∞. Speed-up (``refine="mixing"``, documented, ours): every
``check_every`` iterations the sketch is reconstructed, X̂ = U Λ Uᵀ, its factor V = UΛ^{1/2} row-normalised and
refined by a few sweeps of the mixing (Burer–Monteiro) method; VVᵀ is feasible, ¼⟨L, VVᵀ⟩ is a true lower bound on
the SDP value, and the dual point ω_i = −⟨(CV)_i, v_i⟩ (its KKT multiplier) gives one more certified upper bound
by one extra eigensolve (counted in ``matvecs``). The run stops when either the tracked X_t (with ‖z − 1‖∞ ≤ tol) or
the refined factor reaches ``rel_gap_bound`` ≤ tol; the result's ``factors`` are then those of the better point.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from optimlab._random import check_generator
from optimlab.conic.certificate import momentum_schedule, rel_gap
from optimlab.conic.cones import DENSE_EIG_MAX, min_eigenpair
from optimlab.conic.maxcut import MaxCutSDP
from optimlab.conic.result import ConicResult
from optimlab.conic.rounding import mixing_refine, normalize_rows
from optimlab.conic.sketch import NystromSketch
from optimlab.result import CONVERGED, MAX_ITER, STALLED

__all__ = ["REFINES", "lowrank_moco"]

REFINES = (None, "mixing")


class _Eig:
    def __init__(self, problem: MaxCutSDP, tol: float, maxiter: int | None, rng: np.random.Generator) -> None:
        self.p, self.tol, self.maxiter, self.matvecs = problem, tol, maxiter, 0
        self.v0 = rng.standard_normal(problem.n)
        self.dense = problem.n <= DENSE_EIG_MAX
        self.Cd = problem.C.toarray() if self.dense else None

    def __call__(self, omega: np.ndarray, warm: bool = True, tol: float | None = None) -> Any:
        if self.dense:
            M = self.Cd.copy()
            M[np.diag_indices(self.p.n)] += omega
        else:
            M = self.p.operator(omega)
        pair = min_eigenpair(M, self.p.n, v0=self.v0, tol=self.tol if tol is None else tol,
                             maxiter=self.maxiter if tol is None else None)
        self.matvecs += pair.matvecs
        if warm:
            self.v0 = pair.u
        return pair


def lowrank_moco(problem: MaxCutSDP, *, sketch_rank: int = 10, momentum: Any = "2/(t+2)", tol: float = 1e-3,
                 max_iter: int = 5000, eig_tol: float = 1e-3, eig_maxiter: int | None = 5, dual_every: int = 50,
                 cert_tol: float = 1e-8, refine: str | None = "mixing", check_every: int = 10, refine_sweeps: int = 10,
                 stall_window: int = 20, generator: Any = None) -> ConicResult:
    """Low-rank MOCO on a :class:`MaxCutSDP` (module docstring). ``momentum=1.0`` is low-rank conic descent.

    ``generator`` draws the sketch Ω and the eigensolver's first start vector (``check_generator``, numpy kind).
    ``refine=None`` is the plain method (for comparison with dense :func:`~optimlab.conic.moco`).
    ``eig_tol``/``eig_maxiter``: the per-iteration oracle (loose: its bound stays valid through θ − ρ);
    ``cert_tol``: the eigensolve of the refined factor's dual point (tight: it decides the certificate).
    """
    if not isinstance(problem, MaxCutSDP):
        raise ValueError(f"lowrank_moco: problem must be a MaxCutSDP, got {type(problem).__name__}")
    if refine not in REFINES:
        raise ValueError(f"lowrank_moco: refine must be one of {REFINES}, got {refine!r}")
    for name, v, low in (("check_every", check_every, 1), ("max_iter", max_iter, 0), ("dual_every", dual_every, 1),
                         ("refine_sweeps", refine_sweeps, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"lowrank_moco: {name} must be an integer >= {low}, got {v!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"lowrank_moco: tol must be a number >= 0, got {tol!r}")
    delta_of = momentum_schedule(momentum, owner="lowrank_moco")
    rng = check_generator(generator, kind="numpy")
    n, p, t0 = problem.n, problem, time.perf_counter()
    sketch = NystromSketch(n, sketch_rank, rng)
    eig = _Eig(p, eig_tol, eig_maxiter, rng)
    z, c = np.zeros(n), 0.0
    omega_bar: np.ndarray | None = None
    lower, status, zero_steps, t = -math.inf, MAX_ITER, 0, 0
    best_V, best_upper = None, math.inf  # refined factor and its min-form value ⟨C, VVᵀ⟩
    hist: dict[str, list[float]] = {k: [] for k in ("objective", "gap_bound", "rel_gap_bound", "dual_violation",
                                                      "eig_residual", "matvecs", "seconds", "constraint_violation",
                                                      "refined_rel_gap_bound")}
    for t in range(max_iter + 1):
        if np.any(z):
            s = p.ray_from(z, c)
            z, c = s * z, s * c
            sketch.scale(s)
        omega = p.omega(z)
        delta = delta_of(t)
        omega_bar = omega if omega_bar is None else (1.0 - delta) * omega_bar + delta * omega
        pair = eig(omega_bar)
        lower = max(lower, p.dual_lower(omega_bar, pair.lower))
        viol = float(np.abs(z - 1.0).max())
        if refine is not None and (t + 1) % check_every == 0 and np.any(z):
            U, lam = sketch.reconstruct()
            cands = [mixing_refine(p.L, U * np.sqrt(lam), refine_sweeps)]
            if best_V is not None:  # keep refining the best factor so far (warm start)
                cands.append(mixing_refine(p.L, best_V, refine_sweeps))
            values = [float(np.sum((p.C @ V) * V)) for V in cands]
            V, upper_v = cands[int(np.argmin(values))], min(values)
            omega_v = -np.sum((p.C @ V) * V, axis=1)
            pv = eig(omega_v, warm=False, tol=cert_tol)
            lower = max(lower, p.dual_lower(omega_v, pv.lower))
            best_V, best_upper = V, upper_v
        gap = c - lower
        rgap = rel_gap(gap, -c)
        rgap_v = rel_gap(best_upper - lower, -best_upper) if best_V is not None else math.inf
        for k, val in (("objective", -c), ("gap_bound", gap), ("rel_gap_bound", rgap),
                       ("dual_violation", -min(0.0, pair.lower)), ("eig_residual", pair.residual),
                       ("matvecs", eig.matvecs), ("seconds", time.perf_counter() - t0),
                       ("constraint_violation", viol), ("refined_rel_gap_bound", rgap_v)):
            hist[k].append(float(val))
        if (rgap <= tol and viol <= tol) or rgap_v <= tol:
            status = CONVERGED
            break
        if t == max_iter:
            break
        if pair.theta >= 0:  # momentum gave no descent ray: CD's direction (ours)
            pair = eig(omega, warm=False)
            if pair.theta >= 0:
                status = STALLED
                break
        u = pair.u
        u2 = u * u
        uCu = float(u @ (p.C @ u))
        slope, curv = uCu + float(omega @ u2), p.beta * float(u2 @ u2)
        tau = max(0.0, -slope / curv)
        zero_steps = zero_steps + 1 if tau == 0 else 0
        if zero_steps >= stall_window:
            status = STALLED
            break
        z, c = z + tau * u2, c + tau * uCu
        sketch.add(tau, u)
        if p.form == "augmented_lagrangian" and (t + 1) % dual_every == 0:
            p = p.with_multipliers(p.omega(z))
    seconds = time.perf_counter() - t0
    use_refined = best_V is not None and (hist["refined_rel_gap_bound"][-1] <= hist["rel_gap_bound"][-1]
                                          or hist["constraint_violation"][-1] > tol)
    if use_refined:
        U, sv, _ = np.linalg.svd(best_V, full_matrices=False)
        factors, objective, viol = (U, sv * sv), -best_upper, 0.0
        gap = best_upper - lower
    else:
        U, lam = sketch.reconstruct()
        factors, objective, viol, gap = (U, lam), -c, float(np.abs(z - 1.0).max()), c - lower
    V_rec = normalize_rows(U * np.sqrt(np.maximum(factors[1], 0.0)))
    feasible_obj = -float(np.sum((p.C @ V_rec) * V_rec))
    cert = {"gap_bound": gap, "rel_gap_bound": rel_gap(gap, objective), "lower_bound": lower,
            "upper_bound": -lower, "constraint_violation": viol, "dual_violation": hist["dual_violation"][-1],
            "eig_residual": hist["eig_residual"][-1], "radius": float(n), "complementarity": 0.0,
            "tracked_objective": -c, "tracked_constraint_violation": float(np.abs(z - 1.0).max()),
            "feasible_objective": feasible_obj, "refined": float(use_refined)}
    return ConicResult(status=status, iterations=t, seconds=seconds, history=hist, certificate=cert,
                       objective=objective, x=None, factors=factors, constraint_violation=viol,
                       primal_residual=viol, dual_residual=cert["dual_violation"], matvecs=eig.matvecs, diag=z)
