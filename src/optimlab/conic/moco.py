"""Momentum conic descent (MOCO) and the loop it shares with conic descent.

MOCO (Li, Giannakis, "Conic Descent Redux for Memory-Efficient Optimization", Asilomar 2023, arXiv:2308.07343).
UNVERIFIED: only the paper's abstract was read ("a momentum variant"); the update below is a reconstruction in the
style of heavy-ball Frank–Wolfe (Li et al., NeurIPS 2021, github.com/BingcongLi/HFW), not the paper's text:

    x_t ← s_t·x_t, s_t = argmin_{s ≥ 0} f(s x_t)                      (ray step; skipped at x_t = 0)
    G_t = ∇f(x_t),  D_t = (1 − δ_t) D_{t−1} + δ_t G_t,  δ_0 = 1        (momentum on the gradient)
    v_t = lmo(D_t)  (v_t = 0 while the certificate is unmet: use lmo(G_t), CD's direction)
    x_{t+1} = x_t + τ_t v_t,  τ_t = argmin_{τ ≥ 0} f(x_t + τ v_t)     (line step on the true f)

with δ_t = 2/(t+2) by default (the reconstruction's choice, not the paper's). δ_t ≡ 1 is conic descent. The
stopping certificate (derived here) is in :mod:`optimlab.conic.certificate`; MaxCut certifies the constrained SDP
through :meth:`~optimlab.conic.maxcut.MaxCutSDP.dual_lower`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from optimlab._random import check_generator
from optimlab.conic.certificate import CERTIFICATES, momentum_schedule, rel_gap
from optimlab.conic.cones import PSDCone
from optimlab.conic.maxcut import MaxCutSDP
from optimlab.conic.problems import ConicProblem
from optimlab.conic.result import ConicResult
from optimlab.result import CONVERGED, DIVERGED, MAX_ITER, STALLED, UNBOUNDED

__all__ = ["STEPS", "moco", "solve"]

STEPS = ("sequential", "joint")


def _inner(a: Any, b: Any) -> float:
    return float(np.vdot(np.asarray(a), np.asarray(b)))


class _Oracle:
    """LMO with eigensolver state (warm start, counts)."""

    def __init__(self, cone: Any, eig_tol: float, eig_maxiter: int | None, generator: Any) -> None:
        self.cone, self.tol, self.maxiter, self.matvecs = cone, eig_tol, eig_maxiter, 0
        self.psd = isinstance(cone, PSDCone)
        self.v0 = check_generator(generator, kind="numpy").standard_normal(cone.n) if self.psd else None

    def __call__(self, M: Any) -> tuple[np.ndarray, float, float, float, float]:
        """(v, value, certified value min(0, θ − ρ), θ, ρ); value < 0 iff v ≠ 0."""
        if not self.psd:
            v, val, _ = self.cone.lmo(M)
            return v, val, min(0.0, val), val, 0.0
        pair = self.cone.eig(M, v0=self.v0, tol=self.tol, maxiter=self.maxiter)
        self.matvecs += pair.matvecs
        self.v0 = pair.u
        v = np.outer(pair.u, pair.u) if pair.theta < 0 else np.zeros(self.cone.shape)
        return v, min(0.0, pair.theta), min(0.0, pair.lower), pair.theta, pair.residual


def _check(problem: Any, step: str, certificate: str, tol: float, max_iter: int, owner: str) -> None:
    if not isinstance(problem, ConicProblem):
        raise ValueError(f"{owner}: problem must be a ConicProblem, got {type(problem).__name__}")
    if step not in STEPS:
        raise ValueError(f"{owner}: step must be one of {STEPS}, got {step!r}")
    if certificate not in CERTIFICATES:
        raise ValueError(f"{owner}: certificate must be one of {CERTIFICATES}, got {certificate!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"{owner}: tol must be a number >= 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"{owner}: max_iter must be an integer >= 0, got {max_iter!r}")


def solve(problem: ConicProblem, *, momentum: Any, certificate: str = "averaged", step: str = "sequential",
          tol: float = 1e-3, max_iter: int = 1000, x0: Any = None, eig_tol: float = 1e-8,
          eig_maxiter: int | None = None, dual_every: int = 50, stall_window: int = 20,
          matvec_budget: float = math.inf, generator: Any = None, owner: str = "moco") -> ConicResult:
    """The loop of conic descent (``momentum=1.0``) and MOCO; see :func:`moco` for the arguments."""
    _check(problem, step, certificate, tol, max_iter, owner)
    delta_of = momentum_schedule(momentum, owner=owner)
    cd = momentum == 1.0 and not callable(momentum)
    maxcut = isinstance(problem, MaxCutSDP)
    oracle = _Oracle(problem.cone, eig_tol, eig_maxiter, generator)
    x = problem.start() if x0 is None else problem.cone.check_point(x0, "x0", owner).copy()
    hist: dict[str, list[float]] = {k: [] for k in ("objective", "gap_bound", "rel_gap_bound", "dual_violation",
                                                      "eig_residual", "matvecs", "seconds", "complementarity")}
    if maxcut:
        hist["constraint_violation"] = []
    lower, radius, S, D, omega_bar = -math.inf, math.inf, 0.0, None, None
    status, zero_steps, t0, t = MAX_ITER, 0, time.perf_counter(), 0
    cert: dict[str, float] = {}
    for t in range(max_iter + 1):
        if step == "sequential" and np.any(x):
            s = problem.ray_search(x)
            if math.isinf(s):
                status = UNBOUNDED
                break
            x = s * x
        G = problem.grad(x)
        f = problem.value(x)
        comp = _inner(G, x)
        if not (math.isfinite(f) and math.isfinite(comp)):
            status = DIVERGED
            break
        delta = delta_of(t)
        D = G if D is None else (1.0 - delta) * D + delta * G
        S = (1.0 - delta) * S + delta * (f - comp)
        v, val, sig, theta, res = oracle(D)
        # ------------------------------------------------------------- certificate (derived here)
        if maxcut:
            z = np.diag(x).copy()
            om = problem.omega(z)
            omega_bar = om if omega_bar is None else (1.0 - delta) * omega_bar + delta * om
            if certificate == "exact" and not cd:
                _, _, _, th_g, res_g = oracle(G)
                lower_t, eta = problem.dual_lower(om, th_g - res_g), -min(0.0, th_g - res_g)
            else:
                lower_t, eta = problem.dual_lower(omega_bar, theta - res), -sig
            lower = max(lower, lower_t)
            upper = float(problem.C.multiply(x).sum())  # ⟨C, X⟩ of the iterate (min form)
            objective, gap, viol = -upper, upper - lower, problem.violation(x)
        else:
            r = problem.radius(x)
            radius = min(radius, r) if r is not None else radius
            if certificate == "exact" and not cd:
                _, _, sig_g, _, res = oracle(G)
                lower_t, eta = f - comp + radius * sig_g if math.isfinite(radius) else -math.inf, -sig_g
            else:
                lower_t, eta = (S + radius * sig if math.isfinite(radius) else -math.inf), -sig
            lower = max(lower, lower_t)
            objective, gap, viol = problem.objective(x), f - lower, 0.0
        rgap = rel_gap(gap, objective)
        for k, val_k in (("objective", objective), ("gap_bound", gap), ("rel_gap_bound", rgap),
                         ("dual_violation", eta), ("eig_residual", res), ("matvecs", oracle.matvecs),
                         ("seconds", time.perf_counter() - t0), ("complementarity", abs(comp))):
            hist[k].append(float(val_k))
        if maxcut:
            hist["constraint_violation"].append(viol)
        cert = {"gap_bound": gap, "rel_gap_bound": rgap, "lower_bound": lower, "complementarity": abs(comp),
                "dual_violation": eta, "eig_residual": res, "radius": float(radius if not maxcut else problem.n)}
        if maxcut:
            cert.update(constraint_violation=viol, upper_bound=-lower)
        if rgap <= tol and viol <= tol:
            status = CONVERGED
            break
        if t == max_iter or oracle.matvecs >= matvec_budget:
            break
        # ------------------------------------------------------------- direction and step
        if val >= 0 and not cd:  # momentum gave no descent ray: CD's direction (ours)
            v, val, _, _, _ = oracle(G)
        if val >= 0:  # G ∈ K* after the ray step: x is stationary
            status = CONVERGED if abs(comp) <= 1e-12 * max(1.0, abs(f)) or rgap <= tol else STALLED
            break
        if step == "sequential":
            a, b = 1.0, problem.line_search(x, v, G)
        else:
            a, b = problem.joint_search(x, v, G)
        if math.isinf(b):
            status = UNBOUNDED
            break
        zero_steps = zero_steps + 1 if b == 0 else 0
        if zero_steps >= stall_window:
            status = STALLED
            break
        x = a * x + b * v
        if maxcut and problem.form == "augmented_lagrangian" and (t + 1) % dual_every == 0:
            problem = problem.with_multipliers(problem.omega(np.diag(x).copy()))
    seconds = time.perf_counter() - t0
    viol = problem.violation(x) if maxcut else 0.0
    obj = problem.objective(x) if status != UNBOUNDED else -math.inf
    if status == UNBOUNDED:
        cert = {**cert, "gap_bound": math.inf, "rel_gap_bound": math.inf, "lower_bound": -math.inf}
    return ConicResult(status=status, iterations=t, seconds=seconds, history=hist, certificate=cert,
                       objective=float(obj), x=x, constraint_violation=viol, primal_residual=viol,
                       dual_residual=cert.get("dual_violation", math.nan), matvecs=oracle.matvecs)


def moco(problem: ConicProblem, *, momentum: Any = "2/(t+2)", certificate: str = "averaged",
         step: str = "sequential", tol: float = 1e-3, max_iter: int = 1000, x0: Any = None, eig_tol: float = 1e-8,
         eig_maxiter: int | None = None, dual_every: int = 50, stall_window: int = 20,
         matvec_budget: float = math.inf, generator: Any = None) -> ConicResult:
    """Momentum conic descent (module docstring; UNVERIFIED reconstruction of arXiv:2308.07343).

    Args:
        problem: a :class:`~optimlab.conic.problems.ConicProblem` (dense iterate).
        momentum: ``"2/(t+2)"`` (default), ``"1/(t+1)"``, a constant in (0, 1] or a callable t ↦ δ_t.
        certificate: ``"averaged"`` (no extra oracle call) or ``"exact"`` (one extra eigensolve of G_t per
            iterate, counted in ``matvecs``).
        step: ``"sequential"`` (ray then line step, the reference code's order) or ``"joint"`` (2-D search).
        tol: stop when ``rel_gap_bound`` ≤ tol (MaxCut: and ‖diag X − 1‖∞ ≤ tol).
        max_iter, matvec_budget: caps (status ``max_iter``).
        eig_tol, eig_maxiter: ``eigsh`` settings (warm-started with the previous eigenvector).
        dual_every: MaxCut augmented Lagrangian: y ← y + β(diag X − 1) every ``dual_every`` iterations.
        stall_window: this many zero line steps in a row give status ``stalled``.
        generator: seeds the eigensolver's first start vector (``check_generator``, numpy kind).
    """
    return solve(problem, momentum=momentum, certificate=certificate, step=step, tol=tol, max_iter=max_iter, x0=x0,
                 eig_tol=eig_tol, eig_maxiter=eig_maxiter, dual_every=dual_every, stall_window=stall_window,
                 matvec_budget=matvec_budget, generator=generator, owner="moco")
