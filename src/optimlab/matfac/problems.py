"""Low-rank matrix factorisation problems (Li, Zhang, Mokhtari, He, ICLR 2025, arXiv:2410.18965).

Symmetric: f(X) = ¼‖XXᵀ − A‖_F², ∇f = (XXᵀ − A)X, A PSD m×m.
Asymmetric: f(X, Y) = ½‖XYᵀ − A‖_F², ∇_X = (XYᵀ − A)Y, ∇_Y = (XYᵀ − A)ᵀX.
Everything is float64 torch; numpy input is converted. Nothing uses the global RNG.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def as_tensor(a, name: str, device=None) -> Tensor:
    """float64 tensor from a numpy array or tensor; ``ValueError`` naming ``name`` on NaN/inf or non-2-D input."""
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a, dtype=torch.float64, device=device)
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _haar(m: int, k: int, gen: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _noise(A: Tensor, level: float, gen: torch.Generator, *, symmetric: bool) -> Tensor:
    """Gaussian E (symmetrised if asked) scaled to ‖E‖_F = level·‖A‖_F."""
    if not (isinstance(level, (int, float)) and level >= 0):
        raise ValueError(f"noise must be a number >= 0, got {level!r}")
    E = torch.randn(A.shape, generator=gen, dtype=torch.float64)
    if symmetric:
        E = (E + E.T) / 2
    return E * (level * float(torch.linalg.matrix_norm(A)) / float(torch.linalg.matrix_norm(E)))


def _check_rank(rank: int, limit: int, name: str = "rank") -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= limit:
        raise ValueError(f"{name} must be an integer in [1, {limit}], got {rank!r}")
    return rank


class SymmetricMF:
    """min_X ¼‖XXᵀ − A‖_F² for a PSD m×m target A (symmetrised once as (A + Aᵀ)/2)."""

    def __init__(self, A, *, check: bool = True) -> None:
        A = as_tensor(A, "A")
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square for SymmetricMF, got shape {tuple(A.shape)}")
        scale = float(torch.linalg.matrix_norm(A)) or 1.0
        if check and float(torch.linalg.matrix_norm(A - A.T)) > 1e-10 * scale:
            raise ValueError("A must be symmetric for SymmetricMF (‖A − Aᵀ‖ > 1e-10‖A‖); use AsymmetricMF")
        self.A = (A + A.T) / 2
        self.eigvals, self.eigvecs = torch.linalg.eigh(self.A)  # ascending
        if check and float(self.eigvals[0]) < -1e-10 * scale:
            raise ValueError(f"A must be positive semidefinite; its smallest eigenvalue is {float(self.eigvals[0]):.3e}")
        self.m = A.shape[0]

    @classmethod
    def random(cls, m: int, rank: int, kappa: float = 10.0, eigvals=None, seed: int = 0,
               generator: torch.Generator | None = None, noise: float = 0.0) -> SymmetricMF:
        """A = U diag(λ) Uᵀ with U Haar (m×rank) and λ = geomspace(1, 1/κ, rank) unless ``eigvals`` is given.

        ``generator`` (if given) is used instead of ``seed``; pass the same generator on to the initialisation so
        that one seed drives A and the init with independent draws (a fresh generator with the same seed would
        redraw the same Gaussian matrix, putting a random init exactly in range(A)).
        ``noise`` adds a symmetric Gaussian matrix E with ‖E‖_F = noise·‖A‖_F (A is then full rank and may be
        indefinite; the PSD check is skipped and the natural target is ``best_rank(r)``).
        """
        _check_rank(rank, m)
        if eigvals is None:
            if not kappa >= 1:
                raise ValueError(f"kappa must be >= 1, got {kappa!r}")
            lam = torch.tensor(np.geomspace(1.0, 1.0 / kappa, rank), dtype=torch.float64)
        else:
            lam = torch.as_tensor(eigvals, dtype=torch.float64)
            if lam.shape != (rank,) or bool((lam < 0).any()):
                raise ValueError(f"eigvals must be {rank} non-negative values")
        gen = generator if generator is not None else torch.Generator().manual_seed(seed)
        A = (U := _haar(m, rank, gen)) * lam @ U.T
        if noise:
            A = A + _noise(A, noise, gen, symmetric=True)
        return cls(A, check=not noise)

    @property
    def rank(self) -> int:
        return int((self.eigvals > 1e-10 * float(self.eigvals[-1].abs())).sum())

    def loss(self, X: Tensor) -> float:
        return 0.25 * float(torch.linalg.matrix_norm(X @ X.T - self.A) ** 2)

    def grad(self, X: Tensor) -> Tensor:
        """(XXᵀ − A)X computed as X(XᵀX) − AX (no m×m residual)."""
        return X @ (X.T @ X) - self.A @ X

    def best_rank(self, r: int) -> Tensor:
        """A_r, the best rank-r approximation (top-r eigenpairs)."""
        _check_rank(r, self.m, "r")
        U, lam = self.eigvecs[:, -r:], self.eigvals[-r:].clamp_min(0)
        return (U * lam) @ U.T

    def rel_error(self, X: Tensor, target: str = "A") -> float:
        """‖XXᵀ − T‖_F/‖T‖_F with T = A (``"A"``) or A_r (``"best"``, r = columns of X)."""
        T = self.A if target == "A" else self.best_rank(X.shape[1]) if target == "best" else None
        if T is None:
            raise ValueError(f"target must be 'A' or 'best', got {target!r}")
        return float(torch.linalg.matrix_norm(X @ X.T - T) / torch.linalg.matrix_norm(T))


class AsymmetricMF:
    """min_{X,Y} ½‖XYᵀ − A‖_F² for an m×n target A."""

    def __init__(self, A) -> None:
        self.A = as_tensor(A, "A")
        self.m, self.n = self.A.shape
        self.U, self.S, self.Vh = torch.linalg.svd(self.A, full_matrices=False)

    @classmethod
    def random(cls, m: int, n: int, rank: int, kappa: float = 10.0, top: float = 1.0, seed: int = 0,
               singular_values=None, generator: torch.Generator | None = None, noise: float = 0.0) -> AsymmetricMF:
        """A = U diag(σ) Vᵀ with Haar U, V and σ = top·geomspace(1, 1/κ, rank) unless ``singular_values``;
        ``generator`` as in :meth:`SymmetricMF.random`."""
        _check_rank(rank, min(m, n))
        gen = generator if generator is not None else torch.Generator().manual_seed(seed)
        sig = (torch.as_tensor(singular_values, dtype=torch.float64) if singular_values is not None
               else top * torch.tensor(np.geomspace(1.0, 1.0 / kappa, rank), dtype=torch.float64))
        U, V = _haar(m, rank, gen), _haar(n, rank, gen)
        A = (U * sig) @ V.T
        return cls(A + _noise(A, noise, gen, symmetric=False) if noise else A)

    def loss(self, X: Tensor, Y: Tensor) -> float:
        return 0.5 * float(torch.linalg.matrix_norm(X @ Y.T - self.A) ** 2)

    def grad(self, X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
        R = X @ Y.T - self.A
        return R @ Y, R.T @ X

    def best_rank(self, r: int) -> Tensor:
        _check_rank(r, min(self.m, self.n), "r")
        return (self.U[:, :r] * self.S[:r]) @ self.Vh[:r]

    def rel_error(self, X: Tensor, Y: Tensor, target: str = "A") -> float:
        T = self.A if target == "A" else self.best_rank(X.shape[1]) if target == "best" else None
        if T is None:
            raise ValueError(f"target must be 'A' or 'best', got {target!r}")
        return float(torch.linalg.matrix_norm(X @ Y.T - T) / torch.linalg.matrix_norm(T))


__all__ = ["AsymmetricMF", "SymmetricMF", "as_tensor"]
