"""ScaledGD (Tong, Ma, Chi, JMLR 2021, arXiv:2005.08898) and plain GD for matrix factorisation.

Symmetric:  X⁺ = X − η·(XXᵀ − A)·X·(XᵀX)^†              (the gradient of ¼‖XXᵀ − A‖_F², preconditioned)
Asymmetric (simultaneous, both from the old iterate):
            X⁺ = X − η·(XYᵀ − A)·Y·(YᵀY)^†,   Y⁺ = Y − η·(XYᵀ − A)ᵀ·X·(XᵀX)^†
η is defined on ¼‖·‖² (symmetric) and ½‖·‖² (asymmetric): with ½‖XXᵀ − A‖² as the loss, halve η.
With a Nyström start (arXiv:2410.18965) and η = ½ the symmetric exact/over-parameterised iteration is quadratic
(derived in specs/matfac.md §3.4; the paper's theorem constants are UNVERIFIED).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from optimlab.matfac.problems import AsymmetricMF, SymmetricMF, as_tensor

INVERSES = ("pinv", "damped", "inv")


@dataclass(frozen=True)
class MFResult:
    """Outcome of a run: factors, relative error per iteration (iteration 0 included), status and more."""

    X: Tensor
    Y: Tensor | None
    errors: list[float]
    iterations: int
    status: str  # "converged" | "max_iter" | "diverged"
    rank_gram: int
    seconds: float

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    def to_numpy(self):
        return self.X.cpu().numpy(), None if self.Y is None else self.Y.cpu().numpy()


def gram_inverse(G: Tensor, inverse: str = "pinv", damping: float = 0.0, rtol: float | None = None) -> Tensor:
    """(G)^† of an r×r Gram: ``pinv`` via eigh with eigenvalues ≤ rtol·λ_max dropped (default rtol = r·eps),
    ``damped`` (G + λI)⁻¹, or ``inv`` (Cholesky; ``ValueError`` if G is singular)."""
    r = G.shape[0]
    if inverse == "pinv":
        lam, V = torch.linalg.eigh(G)
        tol = (r * torch.finfo(G.dtype).eps if rtol is None else rtol) * float(lam.abs().max().clamp_min(0))
        inv = torch.where(lam > tol, 1.0 / torch.where(lam > tol, lam, torch.ones_like(lam)), torch.zeros_like(lam))
        return (V * inv) @ V.T
    eye = torch.eye(r, dtype=G.dtype, device=G.device)
    if inverse == "damped":
        return torch.linalg.inv(G + damping * eye)
    L, info = torch.linalg.cholesky_ex(G)
    if int(info) != 0:
        raise ValueError("inverse='inv' needs a non-singular Gram XᵀX; use inverse='pinv' (over-parameterised runs)")
    return torch.cholesky_inverse(L)


def _rank(G: Tensor) -> int:
    lam = torch.linalg.eigvalsh(G)
    return int((lam > G.shape[0] * torch.finfo(G.dtype).eps * float(lam.abs().max().clamp_min(1e-300))).sum())


def _validate(eta, max_iter, tol, inverse, damping) -> None:
    if not (isinstance(eta, (int, float)) and not isinstance(eta, bool) and math.isfinite(eta) and eta > 0):
        raise ValueError(f"eta must be a finite number > 0, got {eta!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if inverse not in INVERSES:
        raise ValueError(f"inverse must be one of {INVERSES}, got {inverse!r}")
    if not (isinstance(damping, (int, float)) and damping >= 0):
        raise ValueError(f"damping must be >= 0, got {damping!r}")


def _run(problem, X0, Y0, eta, max_iter, tol, target, step_fn, raise_on_divergence, callback) -> MFResult:
    sym = isinstance(problem, SymmetricMF)
    X = as_tensor(X0, "X0", device=problem.A.device)
    if X.shape[0] != problem.A.shape[0]:
        raise ValueError(f"X0 must have {problem.A.shape[0]} rows, got shape {tuple(X.shape)}")
    Y = None
    if not sym:
        if Y0 is None:
            raise ValueError("Y0 is required for an asymmetric problem")
        Y = as_tensor(Y0, "Y0", device=problem.A.device)
        if Y.shape != (problem.n, X.shape[1]):
            raise ValueError(f"Y0 must have shape {(problem.n, X.shape[1])}, got {tuple(Y.shape)}")

    def err() -> float:
        return problem.rel_error(X, target=target) if sym else problem.rel_error(X, Y, target=target)

    t0 = time.perf_counter()
    errors = [err()]
    status = "max_iter"
    for it in range(1, max_iter + 1):
        X, Y = step_fn(X, Y)
        errors.append(err())
        if callback is not None:
            callback(it, X, Y, errors[-1])
        if not math.isfinite(errors[-1]) or errors[-1] > 1e12 * max(errors[0], 1e-300):
            status = "diverged"
            if raise_on_divergence:
                raise FloatingPointError(f"diverged at iteration {it}: relative error {errors[-1]}")
            break
        if errors[-1] <= tol:
            status = "converged"
            break
    G = X.T @ X
    return MFResult(X, Y, errors, len(errors) - 1, status, _rank(G), time.perf_counter() - t0)


def scaled_gd(problem: SymmetricMF | AsymmetricMF, X0, Y0=None, *, eta: float = 0.5, max_iter: int = 1000,
              tol: float = 1e-12, target: str = "A", inverse: str = "pinv", damping: float = 0.0,
              rtol: float | None = None, callback: Callable | None = None,
              raise_on_divergence: bool = False) -> MFResult:
    """Run ScaledGD (module docstring) until the relative error to ``target`` is ≤ ``tol`` or ``max_iter``."""
    _validate(eta, max_iter, tol, inverse, damping)
    A = problem.A

    def step(X, Y):
        if Y is None:
            return X - eta * (problem.grad(X) @ gram_inverse(X.T @ X, inverse, damping, rtol)), None
        R = X @ Y.T - A
        return (X - eta * (R @ Y) @ gram_inverse(Y.T @ Y, inverse, damping, rtol),
                Y - eta * (R.T @ X) @ gram_inverse(X.T @ X, inverse, damping, rtol))

    return _run(problem, X0, Y0, eta, max_iter, tol, target, step, raise_on_divergence, callback)


def gd(problem: SymmetricMF | AsymmetricMF, X0, Y0=None, *, eta: float, max_iter: int = 1000, tol: float = 1e-12,
       target: str = "A", callback: Callable | None = None, raise_on_divergence: bool = False) -> MFResult:
    """Plain gradient descent on the same losses (no Gram preconditioner); stable for η ≲ 1/σ₁(A)."""
    _validate(eta, max_iter, tol, "pinv", 0.0)

    def step(X, Y):
        if Y is None:
            return X - eta * problem.grad(X), None
        gX, gY = problem.grad(X, Y)
        return X - eta * gX, Y - eta * gY

    return _run(problem, X0, Y0, eta, max_iter, tol, target, step, raise_on_divergence, callback)


def tail_iterations(errors: list[float], hi: float = 1e-2, lo: float = 1e-12) -> int | None:
    """Iterations from the first error < ``hi`` to the first error < ``lo`` (``None`` if either is never reached)."""
    first_hi = next((i for i, e in enumerate(errors) if e < hi), None)
    first_lo = next((i for i, e in enumerate(errors) if e < lo), None)
    return None if first_hi is None or first_lo is None else first_lo - first_hi


def contraction(errors: list[float], k: int = 10) -> float:
    """Geometric-mean ratio e_{t+1}/e_t over the last ``k`` steps."""
    tail = [e for e in errors[-(k + 1):] if e > 0]
    if len(tail) < 2:
        raise ValueError("need at least two positive errors")
    return (tail[-1] / tail[0]) ** (1.0 / (len(tail) - 1))


class ScaledGD(torch.optim.Optimizer):
    """ScaledGD as a ``torch.optim.Optimizer`` for any differentiable loss of XXᵀ or XYᵀ (sensing, completion).

    A group holds one factor (``symmetric=True``) or the ordered pair [X, Y]. ``step`` replaces each factor's
    autograd gradient ∇_X by ∇_X (XᵀX)^† (symmetric) or ∇_X (YᵀY)^†, ∇_Y (XᵀX)^† (pair, simultaneous), then
    X ← X − lr·(scaled gradient). On ¼‖XXᵀ − A‖² / ½‖XYᵀ − A‖² this equals :func:`scaled_gd`'s step.
    """

    def __init__(self, params, lr: float = 0.5, *, symmetric: bool, inverse: str = "pinv", damping: float = 0.0):
        _validate(lr, 1, 1.0, inverse, damping)
        super().__init__(params, dict(lr=float(lr), symmetric=bool(symmetric), inverse=inverse,
                                      damping=float(damping)))
        for g in self.param_groups:
            n = len(g["params"])
            if (g["symmetric"] and n < 1) or (not g["symmetric"] and n != 2):
                raise ValueError("ScaledGD with symmetric=False needs groups of exactly 2 parameters [X, Y]; "
                                 f"got {n}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            def inv(F: Tensor, g=g) -> Tensor:
                return gram_inverse(F.T @ F, g["inverse"], g["damping"])

            if g["symmetric"]:
                for X in g["params"]:
                    if X.grad is not None:
                        X.sub_(g["lr"] * (X.grad @ inv(X.detach())))
            else:
                X, Y = g["params"]
                if X.grad is None or Y.grad is None:
                    continue
                dX, dY = X.grad @ inv(Y.detach()), Y.grad @ inv(X.detach())
                X.sub_(g["lr"] * dX)
                Y.sub_(g["lr"] * dY)
        return loss
