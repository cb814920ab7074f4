"""m-sharpness step: one perturbation per chunk of the batch (Foret et al., arXiv:2010.01412 §4).

Foret et al. compute ε per accelerator, i.e. per chunk of m samples, and average the descent gradients::

    for each chunk k:  g_k = ∇L_k(w);  ε_k = ρ c_k² ⊙ u_k / ‖c_k ⊙ u_k‖;  G += ∇L_k(w + ε_k)
    w ← BaseStep(w, G / n_chunks)

Costs two passes over the batch and one fp32 buffer G (1× params). One chunk equals ``SharpnessAware.step``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from optimlab._numerics import all_finite
from optimlab._validation import Interval, check

if TYPE_CHECKING:
    from optimlab.sam.base import SharpnessAware

__all__ = ["step_chunked"]


def step_chunked(opt: SharpnessAware, closure: Callable[[int], Tensor], n_chunks: int) -> Tensor:
    """One m-sharpness step of ``opt``: ``closure(k)`` runs forward and backward on chunk k and returns its loss.

    For each chunk: pass 1, ε_k from the chunk's gradient, pass 2 at w + ε_k, gradient added to an fp32 buffer,
    weights restored. Then ``p.grad = G / n_chunks`` and one base step. Returns the mean first-pass loss.
    Stateful variants (VaSSO, InfoSAM) raise ``NotImplementedError``: an EMA over chunks has no defined meaning.
    A non-finite gradient follows ``opt.nonfinite`` (raise with the weights restored, or skip the whole step).
    """
    from optimlab.sam.base import NO_CLOSURE

    if opt.stateful:
        raise NotImplementedError(f"step_chunked is undefined for {type(opt).__name__}: its per-step state (an EMA "
                                  "of gradients) has no per-chunk meaning")
    if closure is None:
        raise ValueError(NO_CLOSURE)
    n_chunks = check(Interval(1, None, integer=True), n_chunks, "n_chunks", owner=type(opt).__name__)
    closure = torch.enable_grad()(closure)
    params = [p for g in opt.param_groups for p in g["params"]]
    acc: dict[Tensor, Tensor] = {}
    losses = []
    for k in range(n_chunks):
        opt.zero_grad()
        loss = closure(k)
        if not isinstance(loss, Tensor):
            raise ValueError(f"the closure must return the loss as a tensor, got {type(loss).__name__}")
        losses.append(loss.detach())
        opt.first_step(zero_grad=True)
        if opt._pending["skip"]:  # type: ignore[index]
            opt.restore()
            opt.zero_grad()
            return torch.stack(losses).mean()
        try:
            closure(k)
        finally:
            opt.restore()
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    g32 = p.grad.to(torch.promote_types(p.grad.dtype, torch.float32))
                    if p in acc:
                        acc[p].add_(g32)
                    else:
                        acc[p] = g32.clone()
    opt.zero_grad()
    with torch.no_grad():
        for p, g in acc.items():
            p.grad = (g / n_chunks).to(p.dtype)
        if acc and not all_finite(list(acc.values())):
            opt.zero_grad()
            opt._nonfinite("non-finite gradient in a second pass; weights restored to w")
            return torch.stack(losses).mean()
        opt.base.step()
        opt._opt_called = True  # LR schedulers wrapping opt: a step happened (see SharpnessAware.second_step)
    opt.zero_grad()
    return torch.stack(losses).mean()
