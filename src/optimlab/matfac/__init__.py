"""Low-rank matrix factorisation: problems, initialisations (Nyström, random, spectral) and ScaledGD.

Li, Zhang, Mokhtari, He, "On the Crucial Role of Initialization for Matrix Factorization", ICLR 2025,
arXiv:2410.18965; ScaledGD from Tong, Ma, Chi, JMLR 2021, arXiv:2005.08898. Torch, float64 by default; numpy
input is accepted; the device follows the input; randomness only from a ``torch.Generator`` passed in.

    prob = SymmetricMF.random(m=100, rank=5, kappa=1000.0, seed=0)
    X0 = nystrom_init(prob, r=10, generator=torch.Generator().manual_seed(0))   # over-parameterised
    res = scaled_gd(prob, X0, eta=0.5, tol=1e-12)      # res.status, res.iterations, res.errors
"""

from optimlab.matfac.init import nystrom_init, random_init, spectral_init
from optimlab.matfac.problems import AsymmetricMF, SymmetricMF
from optimlab.matfac.scaledgd import (
    MFResult,
    ScaledGD,
    contraction,
    gd,
    gd_step,
    gram_inverse,
    quadratic_ratios,
    scaled_gd,
    scaled_gd_step,
    tail_iterations,
)

__all__ = ["AsymmetricMF", "MFResult", "ScaledGD", "SymmetricMF", "contraction", "gd", "gd_step", "gram_inverse",
           "nystrom_init", "quadratic_ratios", "random_init", "scaled_gd", "scaled_gd_step", "spectral_init",
           "tail_iterations"]
