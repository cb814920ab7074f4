"""SAM: Sharpness-Aware Minimization (Foret, Kleiner, Mobahi, Neyshabur; ICLR 2021, arXiv:2010.01412)."""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from optimlab.sam.base import SharpnessAware


class SAM(SharpnessAware):
    r"""Sharpness-Aware Minimization over any base optimizer.

    SAM minimises :math:`\max_{\|\varepsilon\|\le\rho} L(w+\varepsilon)`. The inner maximum is solved to first
    order, :math:`\hat\varepsilon = \rho\, g/\|g\|` with :math:`g = \nabla L_B(w)` (arXiv:2010.01412, eq. 2), and
    the base optimizer then steps with :math:`\nabla L_B(w+\hat\varepsilon)` taken on the same minibatch B.
    :math:`\|\cdot\|` is one global ℓ2 norm over every perturbed tensor of every group.

    Example::

        base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        opt = SAM(base=base, rho=0.05)
        def closure():
            loss = loss_fn(model(x), y); loss.backward(); return loss
        loss = opt.step(closure)
        # or: loss_fn(model(x), y).backward(); opt.first_step(); loss_fn(model(x), y).backward(); opt.second_step()

    Cost per step: two forward+backward passes; transient memory one copy of the perturbed parameters; no
    persistent state beyond the base's. Defaults follow the reference code: ρ = 0.05 (CIFAR-10), eps = 1e-12.
    See :class:`~optimlab.sam.base.SharpnessAware` for the other arguments.
    """

    def __init__(self, params: Any = None, *, base: Optimizer, rho: float = 0.05, **common: Any) -> None:
        super().__init__(params, base=base, rho=rho, **common)
