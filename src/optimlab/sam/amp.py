"""Mixed-precision SAM step with a ``torch.amp.GradScaler`` (fp16), safe against overflow in either pass."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from optimlab._validation import AnyOf, Interval, Options, check
from optimlab.sam.base import SharpnessAware
from optimlab.sam.functional import grads_finite


def amp_step(opt: SharpnessAware, scaler: torch.amp.GradScaler, loss_fn: Callable[[], Tensor], *,
             max_grad_norm: float | None = None) -> Tensor | None:
    """One sharpness-aware step under a GradScaler; returns the first-pass loss, or ``None`` if pass 1 overflowed.

    ``loss_fn()`` runs the forward pass (under autocast if wanted) and returns the unscaled loss; this function does
    the backward passes. Sequence:

    1. scaled backward at w; if any gradient is non-finite: reduce the scale (``backoff_factor``), zero grads and
       return ``None`` — no perturbation, weights and base state untouched;
    2. unscale the first-pass gradients by hand (1/scale in fp32) and ``first_step()``: ε from true gradients;
    3. scaled backward at w + ε; ``scaler.unscale_(opt.base)``; ``restore()`` weights and BatchNorm buffers (the
       variant's new state is kept only if the second-pass gradient is finite, i.e. if the base step is taken);
    4. optional clipping of the second-pass gradient, ``scaler.step(opt.base)`` (which
       skips the base step on overflow) and ``scaler.update()``.

    ``unscale_`` runs once per iteration, and a skipped step never leaves the weights perturbed. With bf16
    autocast no scaler is needed: pass ``torch.amp.GradScaler(enabled=False)``.
    """
    if not isinstance(opt, SharpnessAware):
        raise ValueError(f"opt must be a sharpness-aware optimizer, got {type(opt).__name__}")
    check(AnyOf(Options(None), Interval(0, None, closed="neither")), max_grad_norm, "max_grad_norm",
          owner="amp_step")
    params = [p for g in opt.param_groups for p in g["params"]]
    opt.zero_grad()
    with torch.enable_grad():
        loss = loss_fn()
        scaler.scale(loss).backward()
    grads = [p.grad for p in params if p.grad is not None]
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    if not grads_finite(grads):  # one host sync
        scaler.update(new_scale=scale * scaler.get_backoff_factor())
        opt.zero_grad()
        return None
    with torch.no_grad():
        for g in grads:
            g.copy_((g.float() / scale).to(g.dtype))
    opt.first_step(zero_grad=True)
    try:
        with torch.enable_grad():
            scaler.scale(loss_fn()).backward()
    except BaseException:
        opt.restore(commit=False)
        raise
    scaler.unscale_(opt.base)
    # the scaler skips the base step on overflow; the variant's new state (VaSSO's d, ...) is kept only with it
    opt.restore(commit=grads_finite([p.grad for p in params if p.grad is not None]))
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    scaler.step(opt.base)
    scaler.update()
    opt.zero_grad()
    return loss.detach()
