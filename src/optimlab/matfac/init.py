"""Initialisations for matrix factorisation: Nyström sketch, random, spectral (NoRA paper, arXiv:2410.18965).

Every function takes ``generator``: a ``torch.Generator``, an int seed or ``None``, by the one rule of
:func:`optimlab._random.check_generator` (``None``: a fresh generator seeded non-deterministically), and never touches
the global RNG. The Gaussian draws happen on the generator's device (CPU unless you pass a CUDA generator) and then move to the device
of A, so a seed gives the same numbers on every device. Results have A's dtype (float64 by default).

The Nyström initialisation X0 = ξ·AΩ is the randomized range sketch of Halko, Martinsson and Tropp
(arXiv:0909.4061); Li, Zhang, Mokhtari and He (ICLR 2025, arXiv:2410.18965) use it to start ScaledGD.
What was checked against that paper: the abstract and summaries only (the name, that the start is a sketch of A,
quadratic convergence in the symmetric exact/OP settings, one-step convergence in the asymmetric one). The paper's
default ξ and its exact scaling are UNVERIFIED; here ξ = 1 and ``match_norm=True`` are options, and claim
``nora.sym_init_sensitivity`` measures that the rate does not depend on ξ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from optimlab._random import GeneratorLike, check_generator
from optimlab._validation import AnyOf, Interval, Options, check
from optimlab.matfac.problems import (
    NONNEGATIVE,
    POSITIVE,
    AsymmetricMF,
    Problem,
    SymmetricMF,
    as_tensor,
    check_rank,
)

PERTURB_MODES = ("relative", "absolute")
NONZERO = AnyOf(Interval(-math.inf, 0, closed="neither"), POSITIVE)


def _randn(shape: tuple[int, int], gen: torch.Generator, like: Tensor) -> Tensor:
    z = torch.randn(shape, generator=gen, dtype=torch.float64, device=gen.device)
    return z.to(dtype=like.dtype, device=like.device)


def _check_problem(problem) -> None:
    if not isinstance(problem, (SymmetricMF, AsymmetricMF)):
        raise ValueError(f"problem must be a SymmetricMF or AsymmetricMF, got {type(problem).__name__}")


def nystrom_init(problem, rank: int, *, xi: float = 1.0, match_norm: bool = False, perturb: float = 0.0,
                 perturb_mode: str = "relative", generator: GeneratorLike = None) -> Tensor | tuple[Tensor, Tensor]:
    """Nyström sketch X0 = ξ·A·Ω with Ω ∈ ℝ^{n×r} i.i.d. N(0, 1), r = ``rank``; asymmetric problems return
    (X0, Y0 = 0).

    X0 lies exactly in col(A). ``problem`` may also be a plain matrix M (tensor or numpy array), e.g. the
    back-projection 𝒜*(y) of a sensing problem: then X0 = ξ·MΩ alone is returned (pair it with Y0 = 0 for an
    asymmetric model).

    Args:
        rank: number of columns r, in [1, min(m, n)].
        xi: scale ξ (finite, non-zero). The paper's default is UNVERIFIED; the fast rate is insensitive to it.
        match_norm: rescale X0 so that ‖X0‖₂² = ‖A‖₂ (i.e. ‖X0X0ᵀ‖₂ = ‖A‖₂ for a symmetric problem).
        perturb: δ ≥ 0 adds i.i.d. Gaussian noise to X0 (after ``match_norm``), which leaves col(A) (for the
            sensitivity claim ``nora.sym_init_sensitivity``); its size is set by ``perturb_mode``.
        perturb_mode: ``"relative"`` (the project's form): δ·(‖X0‖_F/√(m·r))·N(0, 1), noise of relative size
            ≈ δ; ``"absolute"`` (the form of the perturbed sketch X0 = AΩ + N in Fig. 1(b) of arXiv:2410.18965,
            as its caption is reproduced; which dimension divides the variance is UNVERIFIED):
            δ·(ξ/√m)·N(0, 1), entry variance δ²ξ²/m whatever the scale of A.
        generator: source of Ω (and of the perturbation): a ``torch.Generator``, an int seed or ``None``
            (:func:`optimlab._random.check_generator`).
    """
    if isinstance(problem, (SymmetricMF, AsymmetricMF)):
        A = problem.A
    else:
        A = as_tensor(problem, "problem (a SymmetricMF, AsymmetricMF or a matrix)")
    r = check_rank(rank, min(A.shape))
    match_norm = check(Options(False, True), match_norm, "match_norm")
    xi = check(NONZERO, xi, "xi")
    perturb = check(NONNEGATIVE, perturb, "perturb")
    perturb_mode = check(Options(*PERTURB_MODES), perturb_mode, "perturb_mode")
    gen = check_generator(generator)
    X0 = xi * (A @ _randn((A.shape[1], r), gen, A))
    if match_norm:
        if isinstance(problem, (SymmetricMF, AsymmetricMF)):
            a2 = problem.spectral_norm
        else:
            a2 = float(torch.linalg.matrix_norm(A, ord=2))
        x2 = float(torch.linalg.matrix_norm(X0, ord=2)) ** 2
        if x2 > 0:
            X0 = X0 * math.sqrt(a2 / x2)
    if perturb > 0:
        m = X0.shape[0]
        size = float(torch.linalg.matrix_norm(X0)) / math.sqrt(m * r) if perturb_mode == "relative" else \
            abs(xi) / math.sqrt(m)
        X0 = X0 + perturb * size * _randn((m, r), gen, A)
    if isinstance(problem, AsymmetricMF):
        return X0, torch.zeros(problem.n, r, dtype=A.dtype, device=A.device)
    return X0


def random_init(problem: Problem, rank: int, *, std: float | None = None,
                generator: GeneratorLike = None) -> Tensor | tuple[Tensor, Tensor]:
    """I.i.d. N(0, std²) entries (``rank`` columns), default std = 1/√m; for an asymmetric problem both factors
    (X0, Y0) are random.

    The usual "small random" baseline is std = 1e-3. The draw is not projected onto range(A), so unlike
    Nyström's it has a part outside range(A).
    """
    _check_problem(problem)
    r = check_rank(rank, min(problem.A.shape))
    m = problem.A.shape[0]
    std = 1.0 / math.sqrt(m) if std is None else check(POSITIVE, std, "std")
    gen = check_generator(generator)
    X0 = std * _randn((m, r), gen, problem.A)
    if isinstance(problem, AsymmetricMF):
        return X0, std * _randn((problem.n, r), gen, problem.A)
    return X0


def spectral_init(problem: Problem, rank: int, *, noise: float = 0.0,
                  generator: GeneratorLike = None) -> Tensor | tuple[Tensor, Tensor]:
    """Top-r factors U_r Λ_r^{½} (symmetric) or (U_rΣ_r^{½}, V_rΣ_r^{½}) (asymmetric), r = ``rank``, plus relative
    noise.

    Columns beyond the numerical rank of A are exactly zero. ``noise=ν`` adds ν·(‖F‖_F/√(size of F))·N(0, 1) to
    each factor F. With ν = 0 in the exact or OP regime this is already optimal: a baseline (the start used by
    Tong, Ma, Chi, arXiv:2005.08898), not a solver.
    """
    _check_problem(problem)
    r = check_rank(rank, min(problem.A.shape))
    noise = check(NONNEGATIVE, noise, "noise")
    gen = check_generator(generator)

    def noisy(F: Tensor) -> Tensor:
        if noise == 0:
            return F
        return F + noise * float(torch.linalg.matrix_norm(F)) / math.sqrt(F.numel()) * _randn(tuple(F.shape), gen, F)

    keep = torch.arange(r, device=problem.A.device) < problem.rank
    if isinstance(problem, AsymmetricMF):
        s = torch.where(keep, problem.S[:r].sqrt(), torch.zeros_like(problem.S[:r]))
        return noisy(problem.U[:, :r] * s), noisy(problem.Vh[:r].T * s)
    lam = problem.eigvals.flip(0)[:r].clamp_min(0).sqrt()
    return noisy(problem.eigvecs.flip(1)[:, :r] * torch.where(keep, lam, torch.zeros_like(lam)))


__all__ = ["PERTURB_MODES", "nystrom_init", "random_init", "spectral_init"]
