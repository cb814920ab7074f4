"""Initialisations for matrix factorisation: Nyström sketch, small random, spectral (arXiv:2410.18965).

Every function takes a ``torch.Generator`` (default: a fresh one seeded 0) and never touches the global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from optimlab.matfac.problems import AsymmetricMF, SymmetricMF, _check_rank

Problem = SymmetricMF | AsymmetricMF


def _gen(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _cols(problem: Problem) -> int:
    return problem.n if isinstance(problem, AsymmetricMF) else problem.m


def nystrom_init(problem: Problem, r: int, *, xi: float = 1.0, scale: str = "none", perturb: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """Nyström sketch X0 = ξ·A·Ω, Ω i.i.d. N(0, 1) (n×r); asymmetric problems return (X0, Y0 = 0).

    X0 lies in col(A) (a randomized range sketch, Halko–Martinsson–Tropp arXiv:0909.4061). ``scale="match"``
    rescales X0 so that ‖X0X0ᵀ‖₂ = ‖A‖₂ (symmetric) or ‖X0‖₂² = ‖A‖₂ (asymmetric); ``perturb=δ`` adds
    δ·(‖X0‖_F/√(mr))·N(0, 1), which leaves col(A).
    """
    _check_rank(r, min(problem.A.shape), "r")
    if scale not in ("none", "match"):
        raise ValueError(f"scale must be 'none' or 'match', got {scale!r}")
    if not (isinstance(xi, (int, float)) and math.isfinite(xi) and xi != 0):
        raise ValueError(f"xi must be a finite non-zero number, got {xi!r}")
    if not (isinstance(perturb, (int, float)) and perturb >= 0):
        raise ValueError(f"perturb must be >= 0, got {perturb!r}")
    gen = _gen(generator)
    omega = torch.randn(_cols(problem), r, generator=gen, dtype=torch.float64).to(problem.A.device)
    X0 = xi * (problem.A @ omega)
    if scale == "match":
        a2 = float(torch.linalg.matrix_norm(problem.A, ord=2))
        x2 = float(torch.linalg.matrix_norm(X0, ord=2)) ** 2
        if x2 > 0:
            X0 = X0 * math.sqrt(a2 / x2)
    if perturb > 0:
        m = X0.shape[0]
        noise = torch.randn(m, r, generator=gen, dtype=torch.float64).to(X0.device)
        X0 = X0 + perturb * float(torch.linalg.matrix_norm(X0)) / math.sqrt(m * r) * noise
    if isinstance(problem, AsymmetricMF):
        return X0, torch.zeros(problem.n, r, dtype=torch.float64, device=X0.device)
    return X0


def random_init(problem: Problem, r: int, *, std: float | None = None,
                generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """I.i.d. N(0, std²) entries, default std = 1/√m; both factors random for asymmetric problems."""
    _check_rank(r, min(problem.A.shape), "r")
    m = problem.A.shape[0]
    std = 1.0 / math.sqrt(m) if std is None else std
    if not (isinstance(std, (int, float)) and std > 0):
        raise ValueError(f"std must be > 0, got {std!r}")
    gen = _gen(generator)
    X0 = std * torch.randn(m, r, generator=gen, dtype=torch.float64).to(problem.A.device)
    if isinstance(problem, AsymmetricMF):
        return X0, std * torch.randn(problem.n, r, generator=gen, dtype=torch.float64).to(problem.A.device)
    return X0


def spectral_init(problem: Problem, r: int, *, noise: float = 0.0,
                  generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """Top-r factors U_r Λ_r^{1/2} (or U_rΣ_r^{1/2}, V_rΣ_r^{1/2}) plus relative Gaussian noise. A baseline, not a
    solver: with noise = 0 in the exact/OP regime it is already optimal."""
    _check_rank(r, min(problem.A.shape), "r")
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    gen = _gen(generator)

    def noisy(F: Tensor) -> Tensor:
        if noise == 0:
            return F
        z = torch.randn(F.shape, generator=gen, dtype=torch.float64).to(F.device)
        return F + noise * float(torch.linalg.matrix_norm(F)) / math.sqrt(F.numel()) * z

    if isinstance(problem, AsymmetricMF):
        s = problem.S[:r].sqrt()
        return noisy(problem.U[:, :r] * s), noisy(problem.Vh[:r].T * s)
    lam = problem.eigvals.flip(0)[:r].clamp_min(0).sqrt()
    return noisy(problem.eigvecs.flip(1)[:, :r] * lam)
