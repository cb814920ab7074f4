"""Low-rank matrix factorisation: problems, initialisations (Nyström, random, spectral) and ScaledGD.

Li, Zhang, Mokhtari, He, "On the Crucial Role of Initialization for Matrix Factorization", ICLR 2025,
arXiv:2410.18965; ScaledGD from Tong, Ma, Chi, JMLR 2021, arXiv:2005.08898. Torch, float64 by default; numpy
input is accepted; the device follows the input; randomness only from the generator passed in.

    g = torch.Generator().manual_seed(0)                    # one generator drives A and the init
    prob = SymmetricMF.random(m=100, rank=5, kappa=1000.0, generator=g)
    X0 = nystrom_init(prob, rank=10, generator=g)           # over-parameterised: 10 > rank(A) = 5
    res = scaled_gd(prob, X0, lr=0.5, tol=1e-12)            # res.status, res.iterations, res.history["rel_error"]
"""

from optimlab.matfac.init import nystrom_init, random_init, spectral_init
from optimlab.matfac.optimizer import ScaledGD
from optimlab.matfac.problems import BLOCK_ELEMENTS, AsymmetricMF, SymmetricMF, residual_norm
from optimlab.matfac.scaledgd import (
    MFResult,
    contraction,
    gd,
    gd_step,
    gram_inverse,
    precondition,
    quadratic_ratios,
    scaled_gd,
    scaled_gd_step,
    tail_iterations,
)

__all__ = ["BLOCK_ELEMENTS", "AsymmetricMF", "MFResult", "ScaledGD", "SymmetricMF", "contraction", "gd", "gd_step",
           "gram_inverse", "nystrom_init", "precondition", "quadratic_ratios", "random_init", "residual_norm",
           "scaled_gd", "scaled_gd_step", "spectral_init", "tail_iterations"]
