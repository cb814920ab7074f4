"""Low-rank matrix factorisation: problems, initialisations (Nyström, random, spectral) and ScaledGD.

Li, Zhang, Mokhtari, He, "On the Crucial Role of Initialization for Matrix Factorization", ICLR 2025,
arXiv:2410.18965; ScaledGD from Tong, Ma, Chi, arXiv:2005.08898. float64 torch; numpy input is accepted.
"""

from optimlab.matfac.init import nystrom_init, random_init, spectral_init
from optimlab.matfac.problems import AsymmetricMF, SymmetricMF
from optimlab.matfac.scaledgd import (
           MFResult,
           ScaledGD,
           contraction,
           gd,
           gram_inverse,
           scaled_gd,
           tail_iterations,
)

__all__ = ["AsymmetricMF", "MFResult", "ScaledGD", "SymmetricMF", "contraction", "gd", "gram_inverse",
           "nystrom_init", "random_init", "scaled_gd", "spectral_init", "tail_iterations"]
