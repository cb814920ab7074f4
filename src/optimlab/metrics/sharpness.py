"""ρ-sharpness and m-sharpness (Foret et al., arXiv:2010.01412 §2 and §4; Keskar et al., arXiv:1609.04836).

S_ρ(w) = max_{‖ε‖≤ρ} L(w + ε) − L(w), lower-bounded by K projected normalised-ascent steps
ε ← Proj_ρ(ε + ρ ∇L(w+ε)/‖∇L(w+ε)‖), reporting the largest loss seen (K = 1 is SAM's ε = ρ g/‖g‖).
``adaptive=True`` measures in ASAM's geometry (Kwon et al., arXiv:2102.11600): the constraint is
‖ε/(|w|+η)‖ ≤ ρ, i.e. the ascent runs in u = ε/(|w|+η), which makes the value invariant to rescalings of layers that
leave the network function unchanged. :func:`batched_m_sharpness` computes :func:`m_sharpness` for many small
chunks at once with ``torch.func.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optimlab._random import check_generator
from optimlab._validation import Interval, check
from optimlab.metrics._model import as_batches, full_loss, measuring, trainable

__all__ = ["SharpnessResult", "batched_m_sharpness", "m_sharpness", "rho_sharpness"]

_NONNEG = Interval(0, math.inf, closed="left")
_STEPS = Interval(1, None, integer=True)


@dataclass(frozen=True)
class SharpnessResult:
    """``value`` = ``perturbed_loss`` − ``loss`` (≥ 0 up to the ascent's quality)."""

    value: float
    loss: float
    perturbed_loss: float


def _check_args(rho, steps, eta) -> float:
    check(_STEPS, steps, "steps")
    check(_NONNEG, eta, "eta")
    return check(_NONNEG, rho, "rho")


def _check_m(m, n: int) -> int:
    return check(Interval(1, n, integer=True, remedy=f"m ranges over 1..n with n = {n} samples"), m, "m")


def _ascent(loss: Callable[[], Tensor], params: list[Tensor], rho: float, steps: int, adaptive: bool,
            eta: float) -> SharpnessResult:
    """K projected normalised-ascent steps in u = ε/s (s = |w|+η if adaptive, else 1), ‖u‖ ≤ ρ:
    u ← Proj_ρ(u + ρ ∇_u/‖∇_u‖) with ∇_u = s ⊙ ∇L(w + s ⊙ u). Leaves ``params`` as they came."""
    w0 = [p.detach().clone() for p in params]
    scale = [(w.abs() + eta) if adaptive else None for w in w0]
    u = [torch.zeros_like(p) for p in params]
    base = best = None
    try:
        for step in range(steps + 1):
            with torch.enable_grad() if step < steps else torch.no_grad():
                value = loss()
                if step < steps:
                    grads = torch.autograd.grad(value, params, allow_unused=True)
            value = float(value.detach())
            base = value if base is None else base
            best = value if best is None else max(best, value)
            if step == steps:
                break
            gu = [torch.zeros_like(p) if g is None else (g if s is None else g * s)
                  for p, g, s in zip(params, grads, scale)]
            norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in gu))
            if norm == 0 or rho == 0:
                break
            u = [x + (rho / norm) * g for x, g in zip(u, gu)]
            un = math.sqrt(sum(float((x.double() ** 2).sum()) for x in u))
            if un > rho:
                u = [x * (rho / un) for x in u]
            with torch.no_grad():
                for p, w, x, s in zip(params, w0, u, scale):
                    p.copy_(w + (x if s is None else s * x))
    finally:
        with torch.no_grad():
            for p, w in zip(params, w0):
                p.copy_(w)
    return SharpnessResult(best - base, base, best)


def rho_sharpness(model: nn.Module, loss_fn: Callable, data, rho: float, *, steps: int = 1, adaptive: bool = False,
                  eta: float = 0.01, params=None) -> SharpnessResult:
    """S_ρ(w) = max_{‖ε‖≤ρ} L(w+ε) − L(w) for the full-data loss L = (1/N) Σ_b |b|·loss_fn(model(X_b), y_b),
    lower-bounded by ``steps`` = K projected normalised-ascent steps ε ← Proj_ρ(ε + ρ ∇L(w+ε)/‖∇L(w+ε)‖), reporting
    the largest loss seen (K = 1: SAM's ε = ρ g/‖g‖, Foret et al. arXiv:2010.01412). ``adaptive=True``: the
    constraint is ‖ε/(|w|+η)‖ ≤ ρ (ASAM, arXiv:2102.11600). The model runs in ``eval()``; its mode, weights and
    buffers are restored bit-exactly."""
    rho = _check_args(rho, steps, eta)
    ps = trainable(model, params)
    with measuring(model, ps):
        return _ascent(full_loss(model, loss_fn, as_batches(data)), ps, rho, steps, adaptive, float(eta))


def m_sharpness(model: nn.Module, loss_fn: Callable, data, rho: float, m: int, *, steps: int = 1,
                adaptive: bool = False, eta: float = 0.01, generator: torch.Generator | None = None) -> float:
    """m-sharpness (Foret et al. arXiv:2010.01412 §4; after Keskar et al. arXiv:1609.04836):
    (1/⌊n/m⌋) Σ_j S_ρ^{(j)}(w) over ⌊n/m⌋ disjoint chunks of size m of a permutation of the data drawn from
    ``generator`` (remainder dropped), each S_ρ^{(j)} computed by :func:`rho_sharpness` on that chunk's own loss.
    m = n gives :func:`rho_sharpness` of the full set (up to summation order)."""
    _check_args(rho, steps, eta)
    batches = as_batches(data)
    X = torch.cat([x for x, _ in batches]) if len(batches) > 1 else batches[0][0]
    y = torch.cat([t for _, t in batches]) if len(batches) > 1 else batches[0][1]
    n = int(X.shape[0])
    _check_m(m, n)
    gen = check_generator(0 if generator is None else generator)  # None: reproducible default (seed 0)
    perm = torch.randperm(n, generator=gen).to(X.device)
    chunks = [perm[i * m : (i + 1) * m] for i in range(n // m)]
    values = [rho_sharpness(model, loss_fn, (X[c], y[c]), rho, steps=steps, adaptive=adaptive, eta=eta).value
              for c in chunks]
    return float(sum(values) / len(values))


def batched_m_sharpness(model: nn.Module, X: Tensor, y: Tensor, rho: float, m: int, *, steps: int = 1,
                        adaptive: bool = False, eta: float = 0.01, generator: torch.Generator | None = None,
                        chunks_per_call: int = 64, loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
                        ) -> float:
    """:func:`m_sharpness` of ``(X, y)`` with all chunks at once (``torch.func.vmap``).

    Same definition and the same permutation for the same ``generator`` (Foret et al., arXiv:2010.01412 §4):
    ⌊n/m⌋ disjoint chunks of size m of a seeded permutation (remainder dropped); for each chunk, K = ``steps``
    projected normalised-ascent steps u ← Proj_ρ(u + ρ∇_u/‖∇_u‖) on the chunk's own mean loss (u = ε, or
    ε/(|w|+η) if ``adaptive``), S = the largest loss seen − the loss at w; returns the mean of S over chunks.
    ``loss_fn(logits, y)`` is the mean loss of a chunk (default: cross-entropy); it must be vmappable. The per-chunk
    loop of :func:`m_sharpness` costs ~7 ms of Python per chunk; here ``chunks_per_call`` chunks share one vmapped
    forward/backward. Norms accumulate in float32 per tensor (float64 across tensors), so values agree with
    :func:`m_sharpness` to ~1e-5 relative. The model runs in eval mode; its weights are not touched and its mode is
    restored.
    """
    from torch.func import functional_call, grad_and_value, vmap

    rho = _check_args(rho, steps, eta)
    check(_STEPS, chunks_per_call, "chunks_per_call")
    n = int(X.shape[0])
    _check_m(m, n)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    gen = check_generator(0 if generator is None else generator)  # None: reproducible default (seed 0)
    perm = torch.randperm(n, generator=gen).to(X.device)
    n_chunks = n // m
    chunks = perm[: n_chunks * m].view(n_chunks, m)
    names = [name for name, _ in model.named_parameters()]
    w = [p.detach() for p in model.parameters()]
    scale = [wi.abs() + eta if adaptive else None for wi in w]

    def loss(params, xb, yb):
        return loss_fn(functional_call(model, params, (xb,)), yb)

    grad_value, value_only = vmap(grad_and_value(loss)), vmap(loss)

    def per_chunk(v: Tensor, like: Tensor) -> Tensor:  # (c,) -> (c, 1, ..., 1)
        return v.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def norms(ts: list[Tensor]) -> Tensor:
        return torch.sqrt(sum(torch.linalg.vector_norm(t.flatten(1), dim=1).double() ** 2 for t in ts))

    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for start in range(0, n_chunks, chunks_per_call):
            idx = chunks[start:start + chunks_per_call]
            xb, yb = X[idx], y[idx]
            u = [torch.zeros((idx.shape[0], *wi.shape), dtype=wi.dtype, device=wi.device) for wi in w]
            active = torch.ones(idx.shape[0], dtype=torch.bool, device=X.device)
            base = best = None
            for k in range(steps + 1):
                params = {nm: wi + (ui if si is None else si * ui) for nm, wi, ui, si in zip(names, w, u, scale)}
                if k < steps:
                    grads, value = grad_value(params, xb, yb)
                else:
                    with torch.no_grad():
                        value = value_only(params, xb, yb)
                value = value.detach().double()
                base = value if base is None else base
                best = value if best is None else torch.maximum(best, value)
                if k == steps:
                    break
                gu = [grads[nm] if si is None else grads[nm] * si for nm, si in zip(names, scale)]
                gnorm = norms(gu)
                active = active & (gnorm > 0) & (rho > 0)  # a chunk with a zero gradient stops, as in m_sharpness
                coef = torch.where(active, rho / gnorm, torch.zeros_like(gnorm))
                u = [ui + per_chunk(coef, ui) * g for ui, g in zip(u, gu)]
                unorm = norms(u)
                shrink = torch.where(unorm > rho, rho / unorm, torch.ones_like(unorm))
                u = [ui * per_chunk(shrink, ui) for ui in u]
            total += float((best - base).sum())
    finally:
        model.train(was_training)
    return total / n_chunks
