"""Low-rank matrix factorisation problems (Li, Zhang, Mokhtari, He, ICLR 2025, arXiv:2410.18965).

Symmetric:   f(X) = ¼‖XXᵀ − A‖_F²,     ∇f = (XXᵀ − A)X,                      A PSD m×m, X m×r.
Asymmetric:  f(X, Y) = ½‖XYᵀ − A‖_F²,  ∇_X = (XYᵀ − A)Y, ∇_Y = (XYᵀ − A)ᵀX,   A m×n, X m×r, Y n×r.

Step sizes elsewhere in :mod:`optimlab.matfac` are defined on exactly these losses (¼ for the symmetric one): with
½‖XXᵀ − A‖² the gradient doubles, so halve η.

Regimes, with r_A = rank(A): exact (r = r_A), over-parameterised (OP, r > r_A), under-parameterised (UP, r < r_A;
the natural target is then A_r, the best rank-r approximation, ``target="best"``).

Everything is torch, float64 by default (``dtype=torch.float32`` is accepted but cannot reach errors near 1e-12);
numpy input is converted; the device follows the input tensor. Nothing uses the global RNG. Relative errors are
computed in row blocks, so no m×n (or m×m) buffer besides A is ever formed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

DTYPES = (torch.float64, torch.float32)
_BLOCK_ELEMENTS = 1 << 16  # largest temporary block of a residual X_b Yᵀ − T_b (elements), see _residual_norm


def _check_dtype(dtype) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float64 (default) or torch.float32, got {dtype!r}")
    return dtype


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


def check_rank(r, limit: int, name: str = "r") -> int:
    """``r`` as an int in [1, limit], else ``ValueError`` naming ``name`` and the allowed range."""
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 1 <= int(r) <= limit:
        raise ValueError(f"{name} must be an integer in [1, {limit}] (at most min(m, n)), got {r!r}")
    return int(r)


def _check_number(x, name: str, *, lo: float, strict: bool) -> float:
    ok = isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool) and math.isfinite(x)
    if not ok or (x <= lo if strict else x < lo):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {lo:g}, got {x!r}")
    return float(x)


def _haar(m: int, k: int, gen: torch.Generator) -> Tensor:
    """m×k with orthonormal columns, Haar-distributed (QR of a Gaussian with the sign fix of Mezzadri)."""
    q, r = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64, device=gen.device))
    return q * torch.sign(torch.diagonal(r))


def _problem_generator(seed, generator: torch.Generator | None) -> torch.Generator:
    """The generator a ``random`` constructor draws from.

    With ``seed`` (no ``generator``) it is seeded with a mix of ``seed``, not ``seed`` itself: an initialisation
    drawn from ``torch.Generator().manual_seed(seed)`` then does not redraw the Gaussian matrix whose QR gave A's
    eigenvectors (that coincidence would put a "random" init exactly in range(A), specs/matfac.md §7 P10).
    """
    if generator is not None:
        return generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.Generator().manual_seed((int(seed) * 0x9E3779B1 + 0x5EED) % (1 << 63))


def _noise(A: Tensor, level: float, gen: torch.Generator, *, symmetric: bool) -> Tensor:
    """Gaussian E (symmetrised if asked) scaled to ‖E‖_F = level·‖A‖_F."""
    E = torch.randn(A.shape, generator=gen, dtype=torch.float64, device=gen.device)
    if symmetric:
        E = (E + E.T) / 2
    return E * (level * float(torch.linalg.matrix_norm(A)) / float(torch.linalg.matrix_norm(E)))


def _residual_norm(X: Tensor, Y: Tensor, T: Tensor | None = None, L: Tensor | None = None,
                   R: Tensor | None = None) -> Tensor:
    """‖XYᵀ − T‖_F, with T dense or given as factors T = L Rᵀ, summed over row blocks.

    Each temporary is a b×n block with b·n ≤ max(_BLOCK_ELEMENTS, n): memory stays O((m + n)r) plus a constant,
    and the sum of squares of the residual entries keeps full relative accuracy (no ‖XYᵀ‖² − 2⟨·⟩ + ‖T‖²
    cancellation, which would floor the relative error near 1e-8).
    """
    m, n = X.shape[0], Y.shape[0]
    b = max(1, _BLOCK_ELEMENTS // max(n, 1))
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
    """min_X ¼‖XXᵀ − A‖_F² for a PSD m×m target A (symmetrised once as (A + Aᵀ)/2, §7 P9 of the spec).

    ``check=True`` rejects a non-symmetric A (‖A − Aᵀ‖_F > 1e-10‖A‖_F) and one that is not PSD (λ_min < −1e-10‖A‖_F,
    which costs one ``eigvalsh``); in float32 the 1e-10 becomes 100·eps. The eigendecomposition used by :meth:`best_rank` is computed on first use.
    """

    def __init__(self, A, *, check: bool = True, dtype=torch.float64) -> None:
        A = as_tensor(A, "A", dtype=dtype)
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square (m×m) for SymmetricMF, got shape {tuple(A.shape)}; "
                             "use AsymmetricMF for a rectangular target")
        scale = float(torch.linalg.matrix_norm(A)) or 1.0
        rel = max(1e-10, 100 * torch.finfo(A.dtype).eps)  # 1e-10 in float64 (spec §5); round-off level in float32
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
    def random(cls, m: int, rank: int, kappa: float = 10.0, eigvals=None, seed: int = 0, *,
               generator: torch.Generator | None = None, noise: float = 0.0, device=None,
               dtype=torch.float64) -> SymmetricMF:
        """A = U diag(λ) Uᵀ with U Haar (m×rank) and λ = geomspace(1, 1/κ, rank) unless ``eigvals`` is given.

        ``generator`` (if given) replaces ``seed``; pass the same generator on to the initialisation so that one seed
        drives A and the init with independent draws (spec §4, common set-up). ``noise=ε`` adds a symmetric Gaussian
        E with ‖E‖_F = ε‖A‖_F: A is then full rank and may be indefinite (the PSD check is skipped), and the natural
        target is ``best_rank(r)``. Draws happen on the generator's device (CPU by default), then move to ``device``.
        """
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise ValueError(f"m must be a positive integer, got {m!r}")
        rank = check_rank(rank, m, "rank")
        if eigvals is None:
            kappa = _check_number(kappa, "kappa", lo=1.0, strict=False)
            lam = torch.tensor(np.geomspace(1.0, 1.0 / kappa, rank), dtype=torch.float64)
        else:
            lam = torch.as_tensor(np.asarray(eigvals, dtype=np.float64))
            if lam.shape != (rank,) or not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
                raise ValueError(f"eigvals must be {rank} finite non-negative values (one per rank), got {eigvals!r}")
        noise = _check_number(noise, "noise", lo=0.0, strict=False)
        gen = _problem_generator(seed, generator)
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
        return 0.25 * float(_residual_norm(X, X, self.A)) ** 2

    def grad(self, X: Tensor) -> Tensor:
        """(XXᵀ − A)X computed as X(XᵀX) − AX (the m×m residual is never formed)."""
        return X @ (X.T @ X) - self.A @ X

    def best_factors(self, r: int) -> tuple[Tensor, Tensor]:
        """(L, R) with L Rᵀ = A_r, the best rank-r approximation (top-r eigenpairs, negative ones clipped to 0)."""
        r = check_rank(r, self.m)
        if r not in self._best:
            U, lam = self.eigvecs[:, -r:], self.eigvals[-r:].clamp_min(0)
            self._best[r] = (U * lam, U, float(torch.linalg.vector_norm(lam)))
        return self._best[r][:2]

    def best_rank(self, r: int) -> Tensor:
        """A_r as a dense m×m matrix (Eckart–Young; for a PSD A the top-r eigenpairs)."""
        L, R = self.best_factors(r)
        return L @ R.T

    def rel_error(self, X: Tensor, target: str = "A") -> float:
        """‖XXᵀ − T‖_F/‖T‖_F with T = A (``"A"``) or A_r (``"best"``, r = columns of X); spec §7 P8."""
        if target == "A":
            return float(_residual_norm(X, X, self.A)) / (self._fro or 1.0)
        if target == "best":
            L, R = self.best_factors(min(X.shape[1], self.m))
            return float(_residual_norm(X, X, L=L, R=R)) / (self._best[min(X.shape[1], self.m)][2] or 1.0)
        raise ValueError(f"target must be 'A' or 'best', got {target!r}")


class AsymmetricMF:
    """min_{X,Y} ½‖XYᵀ − A‖_F² for an m×n target A. The SVD used by :meth:`best_rank` is computed on first use."""

    def __init__(self, A, *, dtype=torch.float64) -> None:
        self.A = as_tensor(A, "A", dtype=dtype)
        self.m, self.n = self.A.shape
        self._svd: tuple[Tensor, Tensor, Tensor] | None = None
        self._best: dict[int, tuple[Tensor, Tensor, float]] = {}
        self._fro = float(torch.linalg.matrix_norm(self.A))

    @classmethod
    def random(cls, m: int, n: int, rank: int, kappa: float = 10.0, top: float = 1.0, seed: int = 0, *,
               singular_values=None, generator: torch.Generator | None = None, noise: float = 0.0, device=None,
               dtype=torch.float64) -> AsymmetricMF:
        """A = U diag(σ) Vᵀ with Haar U (m×rank), V (n×rank) and σ = top·geomspace(1, 1/κ, rank), unless
        ``singular_values`` is given; ``generator``, ``noise`` and ``device`` as in :meth:`SymmetricMF.random`."""
        for name, v in (("m", m), ("n", n)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        rank = check_rank(rank, min(m, n), "rank")
        if singular_values is None:
            kappa = _check_number(kappa, "kappa", lo=1.0, strict=False)
            top = _check_number(top, "top", lo=0.0, strict=True)
            sig = top * torch.tensor(np.geomspace(1.0, 1.0 / kappa, rank), dtype=torch.float64)
        else:
            sig = torch.as_tensor(np.asarray(singular_values, dtype=np.float64))
            if sig.shape != (rank,) or not bool(torch.isfinite(sig).all()) or bool((sig < 0).any()):
                raise ValueError(f"singular_values must be {rank} finite non-negative values, got {singular_values!r}")
        noise = _check_number(noise, "noise", lo=0.0, strict=False)
        gen = _problem_generator(seed, generator)
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
        return 0.5 * float(_residual_norm(X, Y, self.A)) ** 2

    def grad(self, X: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
        """((XYᵀ − A)Y, (XYᵀ − A)ᵀX) computed as (X(YᵀY) − AY, Y(XᵀX) − AᵀX), without the m×n residual."""
        return X @ (Y.T @ Y) - self.A @ Y, Y @ (X.T @ X) - self.A.T @ X

    def best_factors(self, r: int) -> tuple[Tensor, Tensor]:
        """(L, R) with L Rᵀ = A_r = U_r Σ_r V_rᵀ (Eckart–Young)."""
        r = check_rank(r, min(self.m, self.n))
        if r not in self._best:
            self._best[r] = (self.U[:, :r] * self.S[:r], self.Vh[:r].T, float(torch.linalg.vector_norm(self.S[:r])))
        return self._best[r][:2]

    def best_rank(self, r: int) -> Tensor:
        """A_r as a dense m×n matrix."""
        L, R = self.best_factors(r)
        return L @ R.T

    def rel_error(self, X: Tensor, Y: Tensor, target: str = "A") -> float:
        """‖XYᵀ − T‖_F/‖T‖_F with T = A (``"A"``) or A_r (``"best"``, r = columns of X)."""
        if target == "A":
            return float(_residual_norm(X, Y, self.A)) / (self._fro or 1.0)
        if target == "best":
            r = min(X.shape[1], self.m, self.n)
            L, R = self.best_factors(r)
            return float(_residual_norm(X, Y, L=L, R=R)) / (self._best[r][2] or 1.0)
        raise ValueError(f"target must be 'A' or 'best', got {target!r}")


Problem = SymmetricMF | AsymmetricMF

__all__ = ["DTYPES", "AsymmetricMF", "Problem", "SymmetricMF", "as_tensor", "check_rank"]
