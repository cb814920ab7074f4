"""Closed convex cones with their slice functional and linear-minimisation oracle (LMO).

Conic descent (Duchi, Hinder, Naber, Ye, NeurIPS 2020) needs, for a cone K and a gradient G, the oracle

    v ∈ argmin { ⟨G, v⟩ : v ∈ K, size(v) ≤ 1 },   value = min(0, ⟨G, v⟩)   (v = 0 when G ∈ K*),

over the *slice* {v ∈ K : size(v) ≤ 1} of a linear functional ``size`` that is positive on K \\ {0}:
1ᵀx for the nonnegative orthant, s for the second-order cone {(u, s) : ‖u‖₂ ≤ s}, tr(X) for the PSD cone and the
sum for a product. The certificate radius R must bound size(x*) in this same functional (see
:mod:`optimlab.conic.certificate`).

The PSD oracle is an extreme eigenvector: u for λ_min(G), v = uuᵀ, by ``scipy.sparse.linalg.eigsh(which="SA")``
warm-started with the previous eigenvector (a dense ``eigh`` only for n ≤ ``DENSE_EIG_MAX``). It also returns the
eigen-residual ρ = ‖Gu − θu‖, which every certificate subtracts from the Ritz value θ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla

__all__ = ["DENSE_EIG_MAX", "Cone", "EigenPair", "NonnegativeOrthant", "PSDCone", "Product", "SecondOrderCone",
           "min_eigenpair"]

DENSE_EIG_MAX = 64  # dense eigh up to this size (exact, and cheaper than ARPACK's start-up); never above 500


@dataclass(frozen=True)
class EigenPair:
    """Bottom eigenpair estimate: Ritz value ``theta``, unit vector ``u``, residual ‖Gu − θu‖, matvecs used."""

    theta: float
    u: np.ndarray
    residual: float
    matvecs: int

    @property
    def lower(self) -> float:
        """θ − ρ: a lower estimate of λ_min used by every certificate (valid when θ approximates λ_min)."""
        return self.theta - self.residual


def min_eigenpair(G: Any, n: int, *, v0: np.ndarray | None = None, tol: float = 1e-6, maxiter: int | None = None,
                  dense_max: int = DENSE_EIG_MAX) -> EigenPair:
    """Smallest eigenpair of the symmetric ``G`` (an array, sparse matrix or ``LinearOperator``).

    ``eigsh(G, k=1, which="SA", v0=v0, tol=tol, maxiter=maxiter)`` above ``dense_max`` (``which="SM"`` fails to
    converge, scipy#6339); ``scipy.linalg.eigh(subset_by_index=[0, 0])`` below, for an explicit matrix only.
    The residual costs one extra matvec; the count includes it. A non-converged ARPACK run returns its best Ritz
    pair (the residual then says how inaccurate it is).
    """
    if n <= dense_max and isinstance(G, np.ndarray):
        w, V = scipy.linalg.eigh(G, subset_by_index=[0, 0])
        u = V[:, 0]
        return EigenPair(float(w[0]), u, float(np.linalg.norm(G @ u - w[0] * u)), n)
    count = [0]
    op = spla.aslinearoperator(G)

    def mv(x: np.ndarray) -> np.ndarray:
        count[0] += 1 if x.ndim == 1 else x.shape[1]
        return op.matvec(x) if x.ndim == 1 else op.matmat(x)

    wrapped = spla.LinearOperator((n, n), matvec=mv, matmat=mv, dtype=np.float64)
    if n < 3:  # ARPACK needs k < n - 1 for symmetric problems
        M = wrapped.matmat(np.eye(n))
        w, V = np.linalg.eigh(0.5 * (M + M.T))
        theta, u = float(w[0]), V[:, 0]
    else:
        try:
            w, V = spla.eigsh(wrapped, k=1, which="SA", v0=v0, tol=tol, maxiter=maxiter)
        except spla.ArpackNoConvergence as err:  # best Ritz pair so far; the residual reports its accuracy
            if len(err.eigenvalues):
                w, V = err.eigenvalues, err.eigenvectors
            else:  # nothing converged within maxiter: finish the solve without the cap
                w, V = spla.eigsh(wrapped, k=1, which="SA", v0=v0, tol=tol)
        theta, u = float(w[0]), V[:, 0] / np.linalg.norm(V[:, 0])
    res = float(np.linalg.norm(wrapped.matvec(u) - theta * u))
    return EigenPair(theta, u, res, count[0])


class Cone:
    """A closed convex cone K. ``size`` is its slice functional; ``lmo`` returns ``(v, value, info)`` with
    ``info = {"eig_residual": ρ, "matvecs": k}`` (zeros for the polyhedral and SOC cones)."""

    shape: tuple[int, ...]

    def zeros(self) -> np.ndarray:
        return np.zeros(self.shape)

    def size(self, x: np.ndarray) -> float:
        raise NotImplementedError

    def lmo(self, G: Any, **eig: Any) -> tuple[np.ndarray, float, dict[str, float]]:
        raise NotImplementedError

    def project(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def contains(self, x: np.ndarray, tol: float = 1e-10) -> bool:
        return bool(np.linalg.norm(np.asarray(x) - self.project(x)) <= tol * max(1.0, np.linalg.norm(x)))

    def sigma(self, G: Any, **eig: Any) -> tuple[float, dict[str, float]]:
        """The certified LMO value: min(0, λ) with λ replaced by its lower estimate θ − ρ for the PSD cone."""
        _, value, info = self.lmo(G, **eig)
        return min(0.0, info.get("theta", value) - info.get("eig_residual", 0.0)), info

    def dual_violation(self, G: Any, **eig: Any) -> float:
        """max(0, −value): how far G is from the dual cone K* in the slice's dual norm (0 on K*)."""
        return -self.sigma(G, **eig)[0]

    def check_point(self, x: np.ndarray, name: str, owner: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != self.shape:
            raise ValueError(f"{owner}: {name} must have shape {self.shape}, got {x.shape}")
        return x


class NonnegativeOrthant(Cone):
    """K = ℝⁿ₊, size(x) = 1ᵀx (the ℓ₁ norm on K); LMO e_i at the most negative G_i."""

    def __init__(self, n: int) -> None:
        self.shape = (_dim(n, "NonnegativeOrthant"),)

    def size(self, x: np.ndarray) -> float:
        return float(np.sum(x))

    def lmo(self, G: Any, **eig: Any) -> tuple[np.ndarray, float, dict[str, float]]:
        g = np.asarray(G, dtype=np.float64)
        i = int(np.argmin(g))
        v = np.zeros_like(g)
        if g[i] < 0:
            v[i] = 1.0
            return v, float(g[i]), {"eig_residual": 0.0, "matvecs": 0}
        return v, 0.0, {"eig_residual": 0.0, "matvecs": 0}

    def project(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


class SecondOrderCone(Cone):
    """K = {(u, s) : ‖u‖₂ ≤ s} ⊂ ℝⁿ (the last entry is s), size = s; LMO (−g_u/‖g_u‖, 1) when g_s < ‖g_u‖."""

    def __init__(self, n: int) -> None:
        self.shape = (_dim(n, "SecondOrderCone", low=2),)

    def size(self, x: np.ndarray) -> float:
        return float(x[-1])

    def lmo(self, G: Any, **eig: Any) -> tuple[np.ndarray, float, dict[str, float]]:
        g = np.asarray(G, dtype=np.float64)
        gu, gs = g[:-1], float(g[-1])
        norm = float(np.linalg.norm(gu))
        v = np.zeros_like(g)
        info = {"eig_residual": 0.0, "matvecs": 0}
        if gs - norm >= 0:
            return v, 0.0, info
        v[:-1] = -gu / norm if norm > 0 else 0.0
        v[-1] = 1.0
        return v, gs - norm, info

    def project(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        u, s = x[:-1], float(x[-1])
        norm = float(np.linalg.norm(u))
        if norm <= s:
            return x.copy()
        if norm <= -s:
            return np.zeros_like(x)
        a = 0.5 * (norm + s)
        return np.concatenate([a * u / norm, [a]])


class PSDCone(Cone):
    """K = symmetric PSD n×n matrices, size = tr(X); LMO uuᵀ for the bottom eigenvector u of G (eigsh "SA")."""

    def __init__(self, n: int) -> None:
        self.n = _dim(n, "PSDCone")
        self.shape = (self.n, self.n)

    def size(self, x: np.ndarray) -> float:
        return float(np.trace(x))

    def eig(self, G: Any, **eig: Any) -> EigenPair:
        return min_eigenpair(G, self.n, **eig)

    def lmo(self, G: Any, **eig: Any) -> tuple[np.ndarray, float, dict[str, float]]:
        pair = self.eig(G, **eig)
        info = {"eig_residual": pair.residual, "matvecs": pair.matvecs, "theta": pair.theta}
        if pair.theta >= 0:
            return np.zeros(self.shape), 0.0, info
        return np.outer(pair.u, pair.u), pair.theta, info

    def project(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        w, V = np.linalg.eigh(0.5 * (x + x.T))
        return (V * np.maximum(w, 0.0)) @ V.T

    def contains(self, x: np.ndarray, tol: float = 1e-10) -> bool:
        x = np.asarray(x, dtype=np.float64)
        if not np.allclose(x, x.T, atol=tol * max(1.0, np.abs(x).max(initial=0.0))):
            return False
        return bool(np.linalg.eigvalsh(x)[0] >= -tol * max(1.0, np.abs(x).max(initial=0.0)))


class Product(Cone):
    """K = K₁ × … × K_p of vector cones (orthant, SOC) on a stacked vector, size = Σ size_i; the LMO picks the
    factor with the most negative value (the slice of a sum is the convex hull of the factors' slices)."""

    def __init__(self, cones: list[Cone]) -> None:
        if not cones or any(not isinstance(c, (NonnegativeOrthant, SecondOrderCone)) for c in cones):
            raise ValueError("Product: cones must be a non-empty list of NonnegativeOrthant/SecondOrderCone, got "
                             f"{cones!r}")
        self.cones = list(cones)
        sizes = [c.shape[0] for c in cones]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.shape = (int(self.offsets[-1]),)

    def _parts(self, x: np.ndarray) -> list[np.ndarray]:
        return [x[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def size(self, x: np.ndarray) -> float:
        return float(sum(c.size(p) for c, p in zip(self.cones, self._parts(x))))

    def lmo(self, G: Any, **eig: Any) -> tuple[np.ndarray, float, dict[str, float]]:
        g = np.asarray(G, dtype=np.float64)
        best, v = 0.0, np.zeros_like(g)
        for c, a, p in zip(self.cones, self.offsets[:-1], self._parts(g)):
            vi, val, _ = c.lmo(p)
            if val < best:
                best, v = val, np.zeros_like(g)
                v[a:a + len(vi)] = vi
        return v, best, {"eig_residual": 0.0, "matvecs": 0}

    def project(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([c.project(p) for c, p in zip(self.cones, self._parts(x))])


def _dim(n: Any, owner: str, low: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < low:
        raise ValueError(f"{owner}: n must be an integer >= {low}, got {n!r}")
    return int(n)
