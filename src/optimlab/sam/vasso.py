"""VaSSO: variance-suppressed sharpness-aware optimization (Li & Giannakis, NeurIPS 2023, arXiv:2309.15639)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch.optim import Optimizer

from optimlab._validation import Constraint
from optimlab.sam.base import SharpnessAware
from optimlab.sam.presam import PreSAM


class VaSSO(PreSAM):
    r"""SAM whose adversary follows an exponential moving average of first-pass gradients.

    SAM's ε is built from one noisy minibatch gradient and may not point along the full-batch ascent direction
    (the paper's "friendly adversary"). VaSSO suppresses that variance::

        d_t = (1 − θ) d_{t−1} + θ g_t      (d_1 = g_1)
        ε_t = ρ d_t / (‖d_t‖ + eps)
        w_{t+1} = BaseStep(w_t, ∇L_B(w_t + ε_t))   (same minibatch B)

    θ ∈ (0, 1]; θ = 1 is SAM exactly (bit for bit). Only first-pass gradients enter d. Persistent state: ``d`` per
    parameter (1× params), saved in ``state_dict``. Defaults from the official code's configs: ρ = 0.05, θ = 0.9
    (with SGD, momentum 0.9, lr 0.05, wd 5e-4). Differences from the official code, by design: eps = 1e-12 (not
    1e-7), copy-restore (not subtraction) and BatchNorm statistics protected (``bn="snapshot"``) when ``model`` is
    given. What was checked: the authors' code (BingcongLi/VaSSO, ``solver/vasso.py``, read in this project) uses
    the same recursion, the same first step d_1 = g_1 and ε = ρ d/(‖d‖ + 1e-7). UNVERIFIED: the equation numbering
    and any extra step in the paper's algorithm box (arXiv:2309.15639 §4), whose full text was not available.
    See :class:`~optimlab.sam.base.SharpnessAware` for the common arguments.
    """

    _constraints: ClassVar[dict[str, Constraint]] = {**SharpnessAware._constraints,
                                                     "theta": PreSAM._constraints["theta"]}

    def __init__(self, params: Any = None, *, base: Optimizer, rho: float = 0.05, theta: float = 0.9,
                 **common: Any) -> None:
        self._setup(params, base, rho, None, "ema", "weights", {"theta": theta}, common)
