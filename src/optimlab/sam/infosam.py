"""infoSAM (Zhang, Li & Giannakis, arXiv:2501.06603), PROVISIONAL design; see :class:`InfoSAM`."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from torch.optim import Optimizer

from optimlab import ProvisionalWarning
from optimlab._validation import Constraint
from optimlab.sam.base import SharpnessAware
from optimlab.sam.presam import PreSAM

_INFOSAM_WARNED = False


class InfoSAM(PreSAM):
    """infoSAM, PROVISIONAL design (ours): objective preconditioning by a per-coordinate SNR weight.

    u = o ⊙ g with o = m̂²/(m̂² + ŝ + δ) from EMAs (factor β ∈ [0, 1)) of the gradient's mean and squared deviation,
    δ > 0; see :func:`~optimlab.sam.preconditioners.snr_weight`. Persistent state m, s (2× params) and a step
    count. At the first step o = 1/(1+β²) uniformly, so ε equals SAM's; β = 0 gives o ≈ 1, i.e. SAM.

    What is confirmed about the paper (arXiv:2501.06603): it builds on preSAM, targets "adversarial model
    degradation" by minibatch noise, and adjusts gradient components by noise estimates. Not confirmed: its exact
    algorithm box (whether the weight multiplies g or m̂, enters as C or O, estimates variance across steps or
    across samples). Results obtained with this class are labelled provisional. Warns ``ProvisionalWarning`` once.
    """

    _constraints: ClassVar[dict[str, Constraint]] = {**SharpnessAware._constraints,
                                                     "beta": PreSAM._constraints["beta"],
                                                     "delta": PreSAM._constraints["delta"]}

    def __init__(self, params: Any = None, *, base: Optimizer, rho: float = 0.05, beta: float = 0.9,
                 delta: float = 1e-12, **common: Any) -> None:
        global _INFOSAM_WARNED
        self._setup(params, base, rho, None, "snr", "weights", {"beta": beta, "delta": delta}, common)
        if not _INFOSAM_WARNED:
            warnings.warn("InfoSAM implements a provisional design not checked against arXiv:2501.06603's "
                          "algorithm box; see the class docstring", ProvisionalWarning, stacklevel=2)
            _INFOSAM_WARNED = True
