"""ScaledGD (Tong, Ma, Chi, JMLR 2021, arXiv:2005.08898) and plain GD for matrix factorisation.

Symmetric (loss ¼‖XXᵀ − A‖_F²):
    X⁺ = X − η·(XXᵀ − A)·X·(XᵀX)^†
Asymmetric (loss ½‖XYᵀ − A‖_F²; simultaneous update, both factors from the old iterate):
    X⁺ = X − η·(XYᵀ − A)·Y·(YᵀY)^†,     Y⁺ = Y − η·(XYᵀ − A)ᵀ·X·(XᵀX)^†
GD is the same without the Gram factors (stable for η ≲ 1/σ₁(A), so its iteration count grows like κ).

Loss convention: η is defined on the gradients of exactly these losses. Writing the symmetric loss as
½‖XXᵀ − A‖² doubles the gradient: use η (``lr``) = 0.25 there to get the η = ½ iteration.

Why η = ½ from a Nyström start is quadratic (derived by this project, checked by the tests, not taken from
the paper): with A = UΣUᵀ and X = UQ (Nyström keeps X in range(A)), P = QQᵀ obeys
    P⁺ − Σ = ¼ (P − Σ) P⁻¹ (P − Σ)          at η = ½ (a Newton/Heron iteration),
and P⁺ − Σ ≈ (1 − 2η)(P − Σ) otherwise, so the tail is linear with factor |1 − 2η| for η ≠ ½. Li, Zhang, Mokhtari,
He (ICLR 2025, arXiv:2410.18965) state quadratic convergence for ScaledGD with Nyström initialisation in the
symmetric exact/OP settings and fast, even one-step, convergence in the asymmetric one; only those abstract-level
statements were checked against the paper: its theorem constants and step-size conditions are UNVERIFIED.

Gram inverse (:func:`gram_inverse`, shared with the LoRA preconditioners): ``"pinv"`` (default; needed in the
OP regime, where XᵀX is singular), ``"damped"`` (XᵀX + λI)⁻¹ (keeps the fixed points but makes the quadratic
tail linear with factor ≈ λ/(λ_min(A) + λ) at η = ½), or ``"inv"`` (raises ``ValueError`` on a singular Gram).
The same update for any differentiable loss of XXᵀ or XYᵀ is the optimizer :class:`optimlab.matfac.ScaledGD`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from optimlab._validation import AnyOf, Interval, Options, check
from optimlab.matfac.problems import NONNEGATIVE, POSITIVE, AsymmetricMF, SymmetricMF, as_tensor, check_rank
from optimlab.result import CONVERGED, DIVERGED, MAX_ITER, IterativeResult

INVERSES = ("pinv", "damped", "inv")
STATUSES = (CONVERGED, MAX_ITER, DIVERGED)
# Error above 1e12 × the initial error (or non-finite) = diverged: a project choice, far above the transient
# rise of a badly scaled start (phase 1), which the run must survive.
DIVERGENCE_FACTOR = 1e12
RTOL = AnyOf(Options(None), NONNEGATIVE)  # None: r·eps, torch's pinv default


# --------------------------------------------------------------------------------------------- result
@dataclass(frozen=True, kw_only=True)
class MFResult(IterativeResult):
    """Outcome of :func:`scaled_gd` / :func:`gd`: an :class:`optimlab.result.IterativeResult` (SCS/CVXPY-style: a
    status and a certificate next to the solution, not just an array) with the factors.

    Attributes:
        X, Y: final factors (``Y`` is ``None`` for a symmetric problem), torch tensors on A's device.
        tol: the tolerance the run stopped at.
        status: ``"converged"`` (error ≤ ``tol``), ``"max_iter"`` or ``"diverged"`` (:data:`STATUSES`).
        iterations: steps taken (``len(history["rel_error"]) - 1``); ``seconds``: wall time (errors included).
        history: ``{"rel_error": [relative error to the target at iteration 0 (the start), 1, ...]}``.
        certificate: ``{"rel_error": final error, "rank_gram": numerical rank of XᵀX at the end}`` (eigenvalues
            above r·eps·λ_max: the rank found when rank(A) is unknown).
    """

    X: Tensor
    Y: Tensor | None = None
    tol: float = 0.0

    def to_numpy(self) -> tuple:
        """(X, Y) as numpy arrays (Y is ``None`` for a symmetric problem)."""
        return self.X.detach().cpu().numpy(), None if self.Y is None else self.Y.detach().cpu().numpy()


# --------------------------------------------------------------------------------------------- pure maths
def _check_inverse(inverse, damping, rtol) -> None:
    check(Options(*INVERSES), inverse, "inverse")
    check(NONNEGATIVE, damping, "damping")
    check(RTOL, rtol, "rtol")


def gram_inverse(G: Tensor, inverse: str = "pinv", damping: float = 0.0, rtol: float | None = None) -> Tensor:
    """Inverse of an r×r PSD Gram matrix G = FᵀF, as ScaledGD uses it.

    ``"pinv"``: V diag(1/λ_i for λ_i > rtol·λ_max, else 0) Vᵀ from ``eigh``; default rtol = r·eps (torch's
    ``pinv`` default). ``"damped"``: (G + λI)⁻¹ with λ = ``damping``. ``"inv"``: G⁻¹, with a ``ValueError`` when G is
    singular (λ_min ≤ r·eps·λ_max), suggesting ``"pinv"``.
    """
    _check_inverse(inverse, damping, rtol)
    r = G.shape[-1]
    eps = torch.finfo(G.dtype).eps
    if inverse == "damped":
        G = G + damping * torch.eye(r, dtype=G.dtype, device=G.device)
        inverse, rtol = "inv", 0.0 if damping > 0 else None
    lam, V = torch.linalg.eigh(G)
    lam_max = float(lam.abs().max())
    cut = (r * eps if rtol is None else rtol) * lam_max
    if inverse == "inv":
        if not float(lam[0]) > max(cut, 0.0) or lam_max == 0:
            raise ValueError(f"the Gram matrix is singular (λ_min = {float(lam[0]):.3e}, λ_max = {lam_max:.3e}) so "
                             "inverse='inv' cannot be used; use inverse='pinv' (needed when r > rank(A), the "
                             "over-parameterised regime) or inverse='damped'")
        return (V / lam) @ V.T
    keep = lam > cut
    inv = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))
    return (V * inv) @ V.T


def _numerical_rank(G: Tensor) -> int:
    lam = torch.linalg.eigvalsh(G)
    lam_max = float(lam.abs().max())
    return 0 if lam_max == 0 else int((lam > G.shape[0] * torch.finfo(G.dtype).eps * lam_max).sum())


def precondition(grad: Tensor, F: Tensor, inverse: str = "pinv", damping: float = 0.0,
                 rtol: float | None = None) -> Tensor:
    """grad·(FᵀF)^†, the ScaledGD direction of one factor (Tong, Ma, Chi, arXiv:2005.08898), with the inverse of
    :func:`gram_inverse`; exactly 0 when F = 0 (then grad = 0 too: no division by a zero Gram)."""
    if not bool(F.any()):
        return torch.zeros_like(grad)
    return grad @ gram_inverse(F.T @ F, inverse, damping, rtol)


def scaled_gd_step(problem: SymmetricMF | AsymmetricMF, X: Tensor, Y: Tensor | None = None, *, lr: float = 0.5,
                   inverse: str = "pinv", damping: float = 0.0,
                   rtol: float | None = None) -> tuple[Tensor, Tensor | None]:
    """One ScaledGD step (module docstring; ``lr`` is η), tensors in, tensors out: returns (X⁺, Y⁺) (Y⁺ is ``None``
    if symmetric). Costs one A·X (and one Aᵀ·X) plus O((m + n)r² + r³); no m×n temporary."""
    if isinstance(problem, SymmetricMF):
        return X - lr * precondition(problem.grad(X), X, inverse, damping, rtol), None
    gX, gY = problem.grad(X, Y)
    return (X - lr * precondition(gX, Y, inverse, damping, rtol), Y - lr * precondition(gY, X, inverse, damping, rtol))


def gd_step(problem: SymmetricMF | AsymmetricMF, X: Tensor, Y: Tensor | None = None, *,
            lr: float) -> tuple[Tensor, Tensor | None]:
    """One plain gradient step on ¼‖XXᵀ − A‖² (X⁺ = X − η(XXᵀ − A)X, η = ``lr``) or ½‖XYᵀ − A‖² (simultaneous)."""
    if isinstance(problem, SymmetricMF):
        return X - lr * problem.grad(X), None
    gX, gY = problem.grad(X, Y)
    return X - lr * gX, Y - lr * gY


# --------------------------------------------------------------------------------------------- solvers
def _validate_run(lr, max_iter, tol) -> None:
    check(POSITIVE, lr, "lr")
    check(Interval(1, math.inf, closed="left", integer=True), max_iter, "max_iter")
    check(POSITIVE, tol, "tol")


def _factors(problem, X0, Y0) -> tuple[Tensor, Tensor | None]:
    if not isinstance(problem, (SymmetricMF, AsymmetricMF)):
        raise ValueError(f"problem must be a SymmetricMF or AsymmetricMF, got {type(problem).__name__}")
    A = problem.A
    X = as_tensor(X0, "X0", dtype=A.dtype, device=A.device)
    if X.shape[0] != A.shape[0]:
        raise ValueError(f"X0 must have shape (m, r) = ({A.shape[0]}, r), got {tuple(X.shape)}")
    check_rank(X.shape[1], min(A.shape), "rank (columns of X0)")
    if isinstance(problem, SymmetricMF):
        if Y0 is not None:
            raise ValueError("Y0 must be None for a symmetric problem (the model is XXᵀ)")
        return X, None
    if Y0 is None:
        raise ValueError("Y0 is required for an asymmetric problem (use Y0 = 0 with a Nyström X0)")
    Y = as_tensor(Y0, "Y0", dtype=A.dtype, device=A.device)
    if tuple(Y.shape) != (problem.n, X.shape[1]):
        raise ValueError(f"Y0 must have shape (n, r) = {(problem.n, X.shape[1])}, got {tuple(Y.shape)}")
    return X, Y


def _run(problem, X0, Y0, step: Callable, *, max_iter: int, tol: float, target: str,
         callback: Callable | None, raise_on_divergence: bool) -> MFResult:
    check(Options("A", "best"), target, "target")
    X, Y = _factors(problem, X0, Y0)
    sym = Y is None

    def err() -> float:
        return problem.rel_error(X, target=target) if sym else problem.rel_error(X, Y, target=target)

    t0 = time.perf_counter()
    with torch.no_grad():
        errors = [err()]
        status = CONVERGED if errors[0] <= tol else MAX_ITER
        for it in range(1, max_iter + 1 if status != CONVERGED else 1):
            X, Y = step(X, Y)
            errors.append(err())
            if callback is not None:
                callback(it, X, Y, errors[-1])
            e = errors[-1]
            if not math.isfinite(e) or e > DIVERGENCE_FACTOR * max(errors[0], 1e-300):
                status = DIVERGED
                if raise_on_divergence:
                    raise FloatingPointError(f"diverged at iteration {it}: relative error {e:.3e} (initial "
                                             f"{errors[0]:.3e})")
                break
            if e <= tol:  # only the tolerance stops a run: a transient rise (phase 1) never does
                status = CONVERGED
                break
        rank = _numerical_rank(X.T @ X) if bool(torch.isfinite(X).all()) else 0
    return MFResult(status=status, iterations=len(errors) - 1, seconds=time.perf_counter() - t0,
                    history={"rel_error": errors}, certificate={"rel_error": errors[-1], "rank_gram": rank},
                    X=X, Y=Y, tol=float(tol))


def scaled_gd(problem: SymmetricMF | AsymmetricMF, X0, Y0=None, *, lr: float = 0.5, max_iter: int = 1000,
              tol: float = 1e-12, target: str = "A", inverse: str = "pinv", damping: float = 0.0,
              rtol: float | None = None, callback: Callable | None = None,
              raise_on_divergence: bool = False) -> MFResult:
    """Run ScaledGD (module docstring) from (X0[, Y0]) until the relative error is ≤ ``tol`` or ``max_iter``.

    Args:
        lr: step size η > 0 on ¼‖XXᵀ − A‖² (symmetric) / ½‖XYᵀ − A‖² (asymmetric). η = ½ gives the quadratic
            tail from a Nyström start (symmetric exact/OP); η = 1 gives the one-step solution from (AΩ, 0).
        target: ``"A"``, or ``"best"`` for A_r (under-parameterised regime: the error to A would plateau).
        inverse, damping, rtol: see :func:`gram_inverse`.
        callback: ``callback(iteration, X, Y, error)`` after each step.
        raise_on_divergence: raise ``FloatingPointError`` instead of returning status ``"diverged"``.
    X0, Y0 may be numpy arrays; they are converted to A's dtype and device.
    """
    _validate_run(lr, max_iter, tol)
    _check_inverse(inverse, damping, rtol)
    return _run(problem, X0, Y0,
                lambda X, Y: scaled_gd_step(problem, X, Y, lr=lr, inverse=inverse, damping=damping, rtol=rtol),
                max_iter=max_iter, tol=tol, target=target, callback=callback, raise_on_divergence=raise_on_divergence)


def gd(problem: SymmetricMF | AsymmetricMF, X0, Y0=None, *, lr: float, max_iter: int = 1000, tol: float = 1e-12,
       target: str = "A", callback: Callable | None = None, raise_on_divergence: bool = False) -> MFResult:
    """Plain gradient descent on the same losses (same arguments as :func:`scaled_gd`, no Gram inverse; ``lr`` = η
    has no default: a stable step needs η ≲ 1/σ₁(A))."""
    _validate_run(lr, max_iter, tol)
    return _run(problem, X0, Y0, lambda X, Y: gd_step(problem, X, Y, lr=lr), max_iter=max_iter, tol=tol,
                target=target, callback=callback, raise_on_divergence=raise_on_divergence)


# --------------------------------------------------------------------------------------------- rate helpers
def tail_iterations(errors: list[float], hi: float = 1e-2, lo: float = 1e-12, *,
                    dtype: torch.dtype | None = None) -> int | None:
    """Iterations from the first error < ``hi`` to the first error < ``lo`` (``None`` if either is not reached).

    With ``dtype`` given, lo is raised to max(lo, 1e3·eps(dtype)): 1e-12 is out of reach in float32.
    """
    if dtype is not None:
        lo = max(lo, 1e3 * torch.finfo(dtype).eps)
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    first_hi = next((i for i, e in enumerate(errors) if e < hi), None)
    first_lo = next((i for i, e in enumerate(errors) if e < lo), None)
    return None if first_hi is None or first_lo is None else first_lo - first_hi


def contraction(errors: list[float], k: int = 10) -> float:
    """Geometric-mean ratio (e_T/e_{T−k})^{1/k} over the last ``k`` steps (positive errors only)."""
    check(Interval(1, math.inf, closed="left", integer=True), k, "k")
    tail = [e for e in errors[-(k + 1):] if e > 0]
    if len(tail) < 2:
        raise ValueError("contraction needs at least two positive errors")
    return (tail[-1] / tail[0]) ** (1.0 / (len(tail) - 1))


def quadratic_ratios(errors: list[float], *, hi: float, lo: float = 1e-6) -> list[float]:
    """e_{t+1}/e_t² for every t with lo ≤ e_t ≤ hi: bounded for a quadratic rate, growing like 1/e_t for a linear
    one. ``lo`` keeps e_t² well above float64 round-off (1e-6 → e_t² = 1e-12 ≫ 1e-16)."""
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    return [b / (a * a) for a, b in zip(errors[:-1], errors[1:]) if lo <= a <= hi]


__all__ = ["DIVERGENCE_FACTOR", "INVERSES", "RTOL", "STATUSES", "MFResult", "contraction", "gd", "gd_step",
           "gram_inverse", "precondition", "quadratic_ratios", "scaled_gd", "scaled_gd_step", "tail_iterations"]
