"""Nyström sketch of a PSD matrix that is only ever updated, never formed (Tropp, Yurtsever, Udell, Cevher,
"Practical sketching algorithms for low-rank matrix approximation", SIMAX 2017, Alg. 3 with the shift of §5).

Y = XΩ with a Gaussian test matrix Ω ∈ ℝ^{n×k}. Updates: X ← s·X scales Y (kept as a running scale factor, so
repeated ray rescalings lose no precision); X ← X + τ·uuᵀ adds τ·u(uᵀΩ). Reconstruction: ν = eps·‖Y‖_F,
Y_ν = Y + νΩ, B = ΩᵀY_ν = RᵀR (Cholesky), F = Y_ν R⁻¹ = UΣVᵀ (thin SVD), X̂ = U·max(Σ² − ν, 0)·Uᵀ; exact when
rank(X) ≤ k (up to round-off). Memory 2nk floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from optimlab._random import check_generator

__all__ = ["NystromSketch", "nystrom_reconstruct"]


def nystrom_reconstruct(Y: np.ndarray, Omega: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, lam) with X̂ = U diag(lam) Uᵀ from Y = XΩ (module docstring)."""
    nu = np.finfo(np.float64).eps * max(np.linalg.norm(Y), 1e-300)
    Yn = Y + nu * Omega
    B = Omega.T @ Yn
    B = 0.5 * (B + B.T)
    try:
        R = scipy.linalg.cholesky(B, lower=False)
    except np.linalg.LinAlgError:  # B not numerically PD: fall back on its eigendecomposition
        w, V = np.linalg.eigh(B)
        keep = w > nu
        F = Yn @ (V[:, keep] / np.sqrt(w[keep]))
        U, s, _ = np.linalg.svd(F, full_matrices=False)
        return U, np.maximum(s * s - nu, 0.0)
    F = scipy.linalg.solve_triangular(R, Yn.T, trans="T", lower=False).T
    U, s, _ = np.linalg.svd(F, full_matrices=False)
    return U, np.maximum(s * s - nu, 0.0)


class NystromSketch:
    """Sketch Y = XΩ of an implicit PSD matrix X (n×n) with ``k`` columns; Ω drawn from ``generator``."""

    def __init__(self, n: int, k: int, generator: Any = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise ValueError(f"NystromSketch: sketch_rank must be an integer in [1, n = {n}], got {k!r}")
        rng = check_generator(generator, kind="numpy")
        self.Omega = rng.standard_normal((n, k))
        self._Y = np.zeros((n, k))
        self._scale = 1.0

    @property
    def Y(self) -> np.ndarray:
        return self._scale * self._Y

    def scale(self, s: float) -> None:
        """X ← s·X."""
        if s == 0.0:
            self._Y[:] = 0.0
            self._scale = 1.0
        else:
            self._scale *= s

    def add(self, tau: float, u: np.ndarray) -> None:
        """X ← X + τ·uuᵀ."""
        self._Y += (tau / self._scale) * np.outer(u, u @ self.Omega)

    def reconstruct(self) -> tuple[np.ndarray, np.ndarray]:
        return nystrom_reconstruct(self.Y, self.Omega)
