"""ρ-sharpness and m-sharpness (Foret et al., arXiv:2010.01412 §2 and §4; Keskar et al., arXiv:1609.04836).

S_ρ(w) = max_{‖ε‖≤ρ} L(w + ε) − L(w), lower-bounded by K projected normalised-ascent steps
ε ← Proj_ρ(ε + ρ ∇L(w+ε)/‖∇L(w+ε)‖), reporting the largest loss seen (K = 1 is SAM's ε = ρ g/‖g‖).
``adaptive=True`` measures in ASAM's geometry (Kwon et al., arXiv:2102.11600): the constraint is
‖ε/(|w|+η)‖ ≤ ρ, i.e. the ascent runs in u = ε/(|w|+η), which makes the value invariant to rescalings of layers that
leave the network function unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from optimlab.metrics._model import as_batches, full_loss, measuring, trainable


@dataclass(frozen=True)
class SharpnessResult:
    """``value`` = ``perturbed_loss`` − ``loss`` (≥ 0 up to the ascent's quality)."""

    value: float
    loss: float
    perturbed_loss: float


def _check_rho(rho) -> float:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")
    return float(rho)


def _check_args(rho, steps, eta) -> float:
    rho = _check_rho(rho)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    return rho


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
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= n:
        raise ValueError(f"m must be an integer in [1, n={n}], got {m!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    perm = torch.randperm(n, generator=gen).to(X.device)
    chunks = [perm[i * m : (i + 1) * m] for i in range(n // m)]
    values = [rho_sharpness(model, loss_fn, (X[c], y[c]), rho, steps=steps, adaptive=adaptive, eta=eta).value
              for c in chunks]
    return float(sum(values) / len(values))
