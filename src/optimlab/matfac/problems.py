"""Low-rank matrix factorisation problems (Li, Zhang, Mokhtari, He, ICLR 2025, arXiv:2410.18965).

Symmetric:   f(X) = ¼‖XXᵀ − A‖_F²,     ∇f = (XXᵀ − A)X,                      A PSD m×m, X m×r.
Asymmetric:  f(X, Y) = ½‖XYᵀ − A‖_F²,  ∇_X = (XYᵀ − A)Y, ∇_Y = (XYᵀ − A)ᵀX,   A m×n, X m×r, Y n×r.

Step sizes elsewhere in :mod:`optimlab.matfac` are defined on exactly these losses (¼ for the symmetric one): with
½‖XXᵀ − A‖² the gradient doubles, so halve η (``lr``).

Regimes, with r_A = rank(A): exact (r = r_A), over-parameterised (OP, r > r_A), under-parameterised (UP, r < r_A;
the natural target is then A_r, the best rank-r approximation, ``target="best"``).

Everything is torch, float64 by default (``dtype=torch.float32`` is accepted but cannot reach errors near 1e-12);
numpy input is converted; the device follows the input tensor. Randomness comes only from a generator passed in
(:func:`optimlab._random.check_generator`). Relative errors are computed in row blocks of at most
:data:`BLOCK_ELEMENTS` entries, so no m×n (or m×m) buffer besides A is ever formed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from optimlab._random import check_generator
from optimlab._validation import Interval, Options, check

DTYPES = (torch.float64, torch.float32)
BLOCK_ELEMENTS = 1 << 16  # largest temporary block of a residual X_b Yᵀ − T_b (elements), see residual_norm
NONNEGATIVE = Interval(0, math.inf, closed="left")
POSITIVE = Interval(0, math.inf, closed="neither")


def _check_dtype(dtype) -> torch.dtype:
    return check(Options(*DTYPES), dtype, "dtype")


def as_tensor(a, name: str, *, dtype=torch.float64, device=None) -> Tensor:
    """2-D ``dtype`` tensor from a numpy array, list or tensor (a tensor keeps its device unless ``device``).

    Raises ``ValueError`` naming ``name`` for a non-2-D input or one holding NaN or inf.
    """
    _check_dtype(dtype)
    if isinstance(a, Tensor):
        t = a.detach().to(dtype=dtype, device=device if device is not None else a.device)
    else:
        try:
            arr = np.asarray(a, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name} must be a numeric matrix (numpy array or torch tensor): {e}") from e
        t = torch.as_tensor(arr, dtype=dtype, device=device)
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def check_rank(rank, limit: int, name: str = "rank") -> int:
    """``rank`` as an int in [1, limit] (``limit`` = min(m, n)), else ``ValueError`` naming ``name``."""
    return check(Interval(1, limit, integer=True, remedy="at most min(m, n) of the target"), rank, name)


def _check_size(value, name: str) -> int:
    return check(Interval(1, math.inf, closed="left", integer=True), value, name)


def _haar(m: int, k: int, gen: torch.Generator) -> Tensor:
    """m×k with orthonormal columns, Haar-distributed (QR of a Gaussian with the sign fix of Mezzadri)."""
    q, r = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64, device=gen.device))
    return q * torch.sign(torch.diagonal(r))


def _noise(A: Tensor, level: float, gen: torch.Generator, *, symmetric: bool) -> Tensor:
    """Gaussian E (symmetrised if asked) scaled to ‖E‖_F = level·‖A‖_F."""
    E = torch.randn(A.shape, generator=gen, dtype=torch.float64, device=gen.device)
    if symmetric:
        E = (E + E.T) / 2
    return E * (level * float(torch.linalg.matrix_norm(A)) / float(torch.linalg.matrix_norm(E)))


def residual_norm(X: Tensor, Y: Tensor, T: Tensor | None = None, L: Tensor | None = None,
                  R: Tensor | None = None) -> Tensor:
    """‖XYᵀ − T‖_F, with T dense or given as factors T = L Rᵀ, summed over row blocks.

    Each temporary is a b×n block with b·n ≤ max(BLOCK_ELEMENTS, n): memory stays O((m + n)r) plus a constant,
    and the sum of squares of the residual entries keeps full relative accuracy (no ‖XYᵀ‖² − 2⟨·⟩ + ‖T‖²
    cancellation, which would floor the relative error near 1e-8).
    """
    m, n = X.shape[0], Y.shape[0]
    b = max(1, BLOCK_ELEMENTS // max(n, 1))
    if b >= m:
        D = X @ Y.T - (T if T is not None else L @ R.T)
        return torch.linalg.matrix_norm(D)
    total = X.new_zeros(())
    for i in range(0, m, b):
        D = X[i:i + b] @ Y.T
        D -= T[i:i + b] if T is not None else L[i:i + b] @ R.T
        total += (D * D).sum()
    return total.sqrt()


class SymmetricMF:
    """min_X ¼‖XXᵀ − A‖_F² for a PSD m×m target A (symmetrised once as (A + Aᵀ)/2).

    Symmetrising keeps a round-off asymmetry of A from pushing the iterates out of range(A).

    ``check=True`` rejects a non-symmetric A (‖A − Aᵀ‖_F > 1e-10‖A‖_F) and one that is not PSD (λ_min < −1e-10‖A‖_F,
    which costs one ``eigvalsh``); in float32 the 1e-10 becomes 100·eps. The eigendecomposition used by :meth:`best_rank` is computed on first use.
    """

    def __init__(self, A, *, check: bool = True, dtype=torch.float64) -> None:
        A = as_tensor(A, "A", dtype=dtype)
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square (m×m) for SymmetricMF, got shape {tuple(A.shape)}; "
                             "use AsymmetricMF for a rectangular target")
        scale = float(torch.linalg.matrix_norm(A)) or 1.0
        rel = max(1e-10, 100 * torch.finfo(A.dtype).eps)  # 1e-10 in float64; round-off level in float32
        if check:
            asym = float(torch.linalg.matrix_norm(A - A.T))
            if asym > rel * scale:
                raise ValueError(f"A must be symmetric for SymmetricMF: ‖A − Aᵀ‖_F/‖A‖_F = {asym / scale:.2e} > "
                                 f"{rel:.0e}; use AsymmetricMF for a non-symmetric target")
        self.A = (A + A.T) / 2
        self.m = self.n = A.shape[0]
        self._eig: tuple[Tensor, Tensor] | None = None
        self._best: dict[int, tuple[Tensor, Tensor, float]] = {}
        self._fro = float(torch.linalg.matrix_norm(self.A))
        if check:
            lam_min = float(torch.linalg.eigvalsh(self.A)[0])
            if lam_min < -rel * scale:
                raise ValueError(f"A must be positive semidefinite (λ_min ≥ −{rel:.0e}‖A‖_F); its smallest "
                                 f"eigenvalue is λ_min = {lam_min:.3e}")

    @classmethod
    def random(cls, m: int, rank: int, kappa: float = 10.0, eigvals=None, *, generator=None, noise: float = 0.0,
               device=None, dtype=torch.float64) -> SymmetricMF:
        """A = U diag(λ) Uᵀ with U Haar (m×rank) and λ = geomspace(1, 1/κ, rank) unless ``eigvals`` is given.

        ``generator``: a ``torch.Generator``, an int seed or ``None``, by the one rule of
        :func:`optimlab._random.check_generator` (an int seeds a new generator; ``None`` is non-deterministic).
        Pass the same ``torch.Generator`` on to the initialisation, so that one seed drives A and the init with
        independent draws (as the NoRA claims do). Pitfall: two equal ints (``random(..., generator=s)`` and
        ``random_init(..., generator=s)``) reuse one stream, so the init redraws the Gaussian matrix whose QR gave
        A's eigenvectors and lies exactly in range(A).
        ``noise=ε`` adds a symmetric Gaussian E with ‖E‖_F = ε‖A‖_F: A is then full rank and may be indefinite (the
        PSD check is skipped), and the natural target is ``best_rank(rank)``. Draws happen on the generator's device
        (CPU by default), then move to ``device``.
        """
        m = _check_size(m, "m")
        rank = check_rank(rank, m, "rank")
        if eigvals is None:
            kappa = check(Interval(1, math.inf, closed="left"), kappa, "kappa")
            lam = torch.tensor(np.geomspace(1.0, 1.0 / kappa, rank), dtype=torch.float64)
        else:
            lam = torch.as_tensor(np.asarray(eigvals, dtype=np.float64))
            if lam.shape != (rank,) or not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
                raise ValueError(f"eigvals must be {rank} finite non-negative values (one per rank), got {eigvals!r}")
        noise = check(NONNEGATIVE, noise, "noise")
        gen = check_generator(generator)
        U = _haar(m, rank, gen)
        A = (U * lam.to(U.device)) @ U.T
        if noise:
            A = A + _noise(A, noise, gen, symmetric=True)
        return cls(A.to(device) if device is not None else A, check=not noise, dtype=dtype)

    # ---------------------------------------------------------------- spectral data (computed on first use)
    @property
    def eigvals(self) -> Tensor:
        """Eigenvalues of A, ascending."""
        return self._eigh()[0]

    @property
    def eigvecs(self) -> Tensor:
        """Eigenvectors of A (columns), in the order of :attr:`eigvals`."""
        return self._eigh()[1]

    def _eigh(self) -> tuple[Tensor, Tensor]:
        if self._eig is None:
            self._eig = torch.linalg.eigh(self.A)
        return self._eig

    @property
    def rank(self) -> int:
        """Numerical rank: eigenvalues above 1e-10·λ_max."""
        lam = self.eigvals
        return int((lam > 1e-10 * float(lam.abs().max())).sum())

    @property
    def spectral_norm(self) -> float:
        """‖A‖₂."""
        return float(self.eigvals.abs().max())

    # ---------------------------------------------------------------- loss and targets
    def loss(self, X: Tensor) -> float:
        """¼‖XXᵀ − A‖_F²."""
        return 0.25 * float(residual_norm(X, X, self.A)) ** 2

    def grad(self, X: Tensor) -> Tensor:
        """(XXᵀ − A)X computed as X(XᵀX) − AX (the m×m residual is never formed)."""
        return X @ (X.T @ X) - self.A @ X

    def best_factors(self, rank: int) -> tuple[Tensor, Tensor]:
        """(L, R) with L Rᵀ = A_r (r = ``rank``), the best rank-r approximation (top-r eigenpairs, negative ones
        clipped to 0)."""
        r = check_rank(rank, self.m)
        if r not in self._best:
            U, lam = self.eigvecs[:, -r:], self.eigvals[-r:].clamp_min(0)
            self._best[r] = (U * lam, U, float(torch.linalg.vector_norm(lam)))
        return self._best[r][:2]

    def best_rank(self, rank: int) -> Tensor:
        """A_r (r = ``rank``) as a dense m×m matrix (Eckart–Young; for a PSD A the top-r eigenpairs)."""
        L, R = self.best_factors(rank)
        return L @ R.T

    def rel_error(self, X: Tensor, target: str = "A") -> float:
        """‖XXᵀ − T‖_F/‖T‖_F with T = A (``"A"``) or A_r (``"best"``, r = columns of X; in UP, where the
        error to A would plateau)."""
        if target == "A":
            return float(residual_norm(X, X, self.A)) / (self._fro or 1.0)
        if target == "best":
            L, R = self.best_factors(min(X.shape[1], self.m))
            return float(residual_norm(X, X, L=L, R=R)) / (self._best[min(X.shape[1], self.m)][2] or 1.0)
        raise ValueError(f"target must be one of ('A', 'best'), got {target!r}")


class AsymmetricMF:
    """min_{X,Y} ½‖XYᵀ − A‖_F² for an m×n target A. The SVD used by :meth:`best_rank` is computed on first use."""

    def __init__(self, A, *, dtype=torch.float64) -> None:
        self.A = as_tensor(A, "A", dtype=dtype)
        self.m, self.n = self.A.shape
        self._svd: tuple[Tensor, Tensor, Tensor] | None = None
        self._best: dict[int, tuple[Tensor, Tensor, float]] = {}
        self._fro = float(torch.linalg.matrix_norm(self.A))

    @classmethod
    def random(cls, m: int, n: int, rank: int, kappa: float = 10.0, top: float = 1.0, *, singular_values=None,
               generator=None, noise: float = 0.0, device=None, dtype=torch.float64) -> AsymmetricMF:
        """A = U diag(σ) Vᵀ with Haar U (m×rank), V (n×rank) and σ = top·geomspace(1, 1/κ, rank), unless
        ``singular_values`` is given; ``generator`` (and its pitfall), ``noise`` and ``device`` as in
        :meth:`SymmetricMF.random`."""
        m, n = _check_size(m, "m"), _check_size(n, "n")
        rank = check_rank(rank, min(m, n), "rank")
        if singular_values is None:
            kappa = check(Interval(1, math.inf, closed="left"), kappa, "kappa")
            top = check(POSITIVE, top, "top")
            sig = top * torch.tensor(np.geomspace(1.0, 1.0 / kappa, rank), dtype=torch.float64)
        else:
            sig = torch.as_tensor(np.asarray(singular_values, dtype=np.float64))
            if sig.shape != (rank,) or not bool(torch.isfinite(sig).all()) or bool((sig < 0).any()):
                raise ValueError(f"singular_values must be {rank} finite non-negative values, got {singular_values!r}")
        noise = check(NONNEGATIVE, noise, "noise")
        gen = check_generator(generator)
        U, V = _haar(m, rank, gen), _haar(n, rank, gen)
        A = (U * sig.to(U.device)) @ V.T
        if noise:
            A = A + _noise(A, noise, gen, symmetric=False)
        return cls(A.to(device) if device is not None else A, dtype=dtype)

    def _svd_parts(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._svd is None:
            self._svd = torch.linalg.svd(self.A, full_matrices=False)
        return self._svd

    @property
    def U(self) -> Tensor:
        return self._svd_parts()[0]

    @property
    def S(self) -> Tensor:
        """Singular values, descending."""
        return self._svd_parts()[1]

    @property
    def Vh(self) -> Tensor:
        return self._svd_parts()[2]

    @property
    def rank(self) -> int:
        """Numerical rank: singular values above 1e-10·σ₁."""
        return int((self.S > 1e-10 * float(self.S[0])).sum())

    @property
    def spectral_norm(self) -> float:
        """‖A‖₂ = σ₁."""
        return float(self.S[0])

    def loss(self, X: Tensor, Y: Tensor) -> float:
        """½‖XYᵀ − A‖_F²."""
        return 0.5 * float(residual_norm(X, Y, self.A)) ** 2

    def grad(self, X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
        """((XYᵀ − A)Y, (XYᵀ − A)ᵀX) computed as (X(YᵀY) − AY, Y(XᵀX) − AᵀX), without the m×n residual."""
        return X @ (Y.T @ Y) - self.A @ Y, Y @ (X.T @ X) - self.A.T @ X

    def best_factors(self, rank: int) -> tuple[Tensor, Tensor]:
        """(L, R) with L Rᵀ = A_r = U_r Σ_r V_rᵀ, r = ``rank`` (Eckart–Young)."""
        r = check_rank(rank, min(self.m, self.n))
        if r not in self._best:
            self._best[r] = (self.U[:, :r] * self.S[:r], self.Vh[:r].T, float(torch.linalg.vector_norm(self.S[:r])))
        return self._best[r][:2]

    def best_rank(self, rank: int) -> Tensor:
        """A_r (r = ``rank``) as a dense m×n matrix."""
        L, R = self.best_factors(rank)
        return L @ R.T

    def rel_error(self, X: Tensor, Y: Tensor, target: str = "A") -> float:
        """‖XYᵀ − T‖_F/‖T‖_F with T = A (``"A"``) or A_r (``"best"``, r = columns of X)."""
        if target == "A":
            return float(residual_norm(X, Y, self.A)) / (self._fro or 1.0)
        if target == "best":
            r = min(X.shape[1], self.m, self.n)
            L, R = self.best_factors(r)
            return float(residual_norm(X, Y, L=L, R=R)) / (self._best[r][2] or 1.0)
        raise ValueError(f"target must be one of ('A', 'best'), got {target!r}")


Problem = SymmetricMF | AsymmetricMF

__all__ = ["BLOCK_ELEMENTS", "DTYPES", "NONNEGATIVE", "POSITIVE", "AsymmetricMF", "Problem", "SymmetricMF", "as_tensor",
           "check_rank", "residual_norm"]
