"""infoSAM (Zhang, Li & Giannakis, arXiv:2501.06603), PROVISIONAL design in two arms; see :class:`InfoSAM`."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from torch.optim import Optimizer

from optimlab import ProvisionalWarning
from optimlab._validation import Constraint, Options
from optimlab.sam.base import SharpnessAware
from optimlab.sam.presam import DELTA_DEFAULT, PreSAM

VARIANTS = ("snr", "invvar")
_INFOSAM_WARNED = False


class InfoSAM(PreSAM):
    """infoSAM, PROVISIONAL: objective preconditioning u of the preSAM template, ε = ρ u/(‖u‖ + eps), in two arms.

    ``variant="snr"`` (our design, ``PreSAM(objective="snr")``): u = o ⊙ g with o = m̂²/(m̂² + ŝ + δ) from EMAs
    (factor β ∈ [0, 1)) of the gradient's mean and squared deviation, δ > 0 (default 1e-12); see
    :func:`~optimlab.sam.preconditioners.snr_weight`. State m, s (2× params) and a step count. At the first step
    o = 1/(1+β²) uniformly, so ε equals SAM's; β = 0 gives o ≈ 1, i.e. SAM.

    ``variant="invvar"`` (``PreSAM(objective="invvar")``, a restatement of an unreleased draft by the same
    authors, not the paper's algorithm)::

        m_1 = g_1,  b_1 = 1;   for t ≥ 2:  m_t = α m_{t−1} + (1−α) g_t,   b_t = (m_t − g_t)²
        u_t = g_t ⊘ (b_t + δ)

    with α ∈ [0, 1) (default 0.9, our choice) and the mandatory floor δ ≥ 1e-12 (default 1e-8): where g = m = 0
    (a dead ReLU unit) b = 0, and without δ the step is 0/0. One-step deviation, no EMA of squares, no bias
    correction; see :func:`~optimlab.sam.preconditioners.invvar_weight`. State m, b (2× params). At t = 1,
    u = g/(1+δ), so ε equals SAM's up to rounding. Even with the floor, u concentrates on the few coordinates
    with b ≈ 0, so this arm is never a default. fp16/bf16 parameters are computed in float32 (both arms).

    What is confirmed about the paper (arXiv:2501.06603): it builds on preSAM, targets "adversarial model
    degradation" by minibatch noise, and adjusts gradient components by noise estimates. UNVERIFIED: its exact
    algorithm box (whether the weight multiplies g or m̂, enters as C or O, estimates variance across steps or
    across samples), hence which arm (if either) it is. Results obtained with this class are labelled
    provisional. Warns ``ProvisionalWarning`` once.

    Args:
        variant: ``"snr"`` or ``"invvar"`` (not per group).
        beta: β of ``"snr"``; alpha: α of ``"invvar"`` (per group; both validated whatever the arm).
        delta: δ, per group; ``None`` takes the arm's default (1e-12 for ``"snr"``, 1e-8 for ``"invvar"``).
    """

    _constraints: ClassVar[dict[str, Constraint]] = {**SharpnessAware._constraints,
                                                     "variant": Options(*VARIANTS),
                                                     "beta": PreSAM._constraints["beta"],
                                                     "alpha": PreSAM._constraints["alpha"],
                                                     "delta": PreSAM._constraints["delta"]}

    def __init__(self, params: Any = None, *, base: Optimizer, rho: float = 0.05, variant: str = "snr",
                 beta: float = 0.9, alpha: float = 0.9, delta: float | None = None, **common: Any) -> None:
        global _INFOSAM_WARNED
        self._check({"variant": variant})
        self.variant = self.objective = variant  # δ's allowed set depends on the arm
        self._check({"beta": beta, "alpha": alpha, **({} if delta is None else {"delta": delta})})
        delta = DELTA_DEFAULT[variant] if delta is None else delta
        hyper = {"beta": beta, "delta": delta} if variant == "snr" else {"alpha": alpha, "delta": delta}
        self._setup(params, base, rho, None, variant, "weights", hyper, common)
        if not _INFOSAM_WARNED:
            warnings.warn("InfoSAM implements a provisional design not checked against arXiv:2501.06603's "
                          "algorithm box; see the class docstring", ProvisionalWarning, stacklevel=2)
            _INFOSAM_WARNED = True


__all__ = ["VARIANTS", "InfoSAM"]
