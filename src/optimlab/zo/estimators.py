"""Two-point zeroth-order gradient estimators and trace probes (pure functions, tensor in, tensor out).

Smoothing convention (one rule for every direction kind): a direction ``w`` has E[w wᵀ] = I over its last axis,
and ``eps`` is the RMS per-coordinate displacement, so probes are x ± eps·w and E‖displacement‖² = eps²·d:

* ``"gaussian"``: w ~ N(0, I). E ĝ = ∇f_λ with f_λ(x) = E_u f(x + λu), λ = eps, and
  f_λ = f + (eps²/2)·tr∇²f + o(eps²) (Zhang, Li, Thekumparampil, Oh, Muehlebach, He, "Zeroth-Order Optimization
  Finds Flat Minima", NeurIPS 2025, arXiv:2506.05454, §2; Nesterov & Spokoiny for the smoothing).
* ``"sphere"``: w = √d·v, v uniform on the unit sphere; this is the classical d-scaled sphere estimator of radius
  r = eps·√d (Flaxman et al.), E ĝ = ∇ of the ball average, κ = eps²·d/(2(d+2)).
* ``"rademacher"``: w ∈ {±1}ᵈ. Derived here (not in the paper): E ĝ = ∇f + (eps²/2)∇tr∇²f −
  (eps²/3)(∂³f/∂x_i³)_i + O(eps⁴), so κ is reported as eps²/2 with an extra diagonal third-derivative term.

ĝ = c·w, c = (f(x + eps·w) − f(x − eps·w))/(2·eps) (central) or (f(x + eps·w) − f(x))/eps (forward).
On a quadratic the central difference is exact: ĝ = w wᵀ∇f for every eps (no flatness bias without varying
curvature). Checked identities (tests): for f = Σx_i³/6, E ĝ_k = x_k²/2 + eps²/2 (Gaussian), + eps²/6
(Rademacher), + eps²·d/(2(d+2)) (sphere); for f = Σ cosh x_i (Gaussian), E ĝ = e^{eps²/2}·sinh x.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["DIRECTIONS", "ZOEstimate", "directional_derivative", "one_sided_trace_probe", "sample_directions",
           "smoothing_weight", "trace_probe", "two_point"]

DIRECTIONS = ("gaussian", "rademacher", "sphere")
DIFFERENCES = ("central", "forward")


class ZOEstimate(NamedTuple):
    """``grad``: the estimate (shape of x; mean over the direction axis when ``w`` has one); ``proj``: the
    projected derivative c per direction; ``f_plus``/``f_minus``: f(x ± eps·w) (``f_minus`` is f(x) for forward
    differences)."""

    grad: Tensor
    proj: Tensor
    f_plus: Tensor
    f_minus: Tensor


def _check_kind(kind: str) -> str:
    if kind not in DIRECTIONS:
        raise ValueError(f"kind must be one of {DIRECTIONS}, got {kind!r}")
    return kind


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number in (0, inf), got {eps!r}")
    return float(eps)


def sample_directions(shape: tuple[int, ...] | torch.Size, kind: str = "gaussian", *, generator: torch.Generator,
                      dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> Tensor:
    """Directions w of ``shape`` with E[w wᵀ] = I over the last axis (d = ``shape[-1]``), drawn from ``generator``
    only: ``"gaussian"`` N(0, I); ``"rademacher"`` ±1; ``"sphere"`` √d·(uniform unit vector)."""
    _check_kind(kind)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    shape = tuple(shape)
    if not shape or shape[-1] < 1:
        raise ValueError(f"shape must have a last axis of length >= 1, got {shape}")
    device = generator.device if device is None else torch.device(device)
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=device).to(dtype).mul_(2).sub_(1)
    z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    if kind == "sphere":
        z = z * (math.sqrt(shape[-1]) / torch.linalg.vector_norm(z, dim=-1, keepdim=True))
    return z


def smoothing_weight(eps: float, d: int, kind: str = "gaussian") -> float:
    """κ of F = f + κ·tr∇²f, the objective ZO-SGD descends in expectation: eps²/2 (Gaussian, Rademacher's trace
    part) or eps²·d/(2(d+2)) (sphere of radius eps·√d)."""
    _check_kind(kind)
    eps = _check_eps(eps)
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    return eps * eps * d / (2 * (d + 2)) if kind == "sphere" else eps * eps / 2


def two_point(f: Callable[[Tensor], Tensor], x: Tensor, w: Tensor, eps: float, *, difference: str = "central",
              f0: Tensor | None = None) -> ZOEstimate:
    """The two-point estimate ĝ = c·w (see the module docstring). ``f`` maps ``(..., d) -> (...)``; ``x`` is
    ``(..., d)``; ``w`` is ``(..., d)`` or ``(..., q, d)`` (q directions, averaged). ``difference="forward"`` uses
    ``f0 = f(x)`` (computed when not given)."""
    eps = _check_eps(eps)
    if difference not in DIFFERENCES:
        raise ValueError(f"difference must be one of {DIFFERENCES}, got {difference!r}")
    many = w.dim() == x.dim() + 1
    if not many and w.shape != x.shape:
        raise ValueError(f"w must have the shape of x {tuple(x.shape)} or an extra direction axis, got "
                         f"{tuple(w.shape)}")
    xs = x.unsqueeze(-2) if many else x
    fp = f(xs + eps * w)
    if difference == "central":
        fm = f(xs - eps * w)
        proj = (fp - fm) / (2 * eps)
    else:
        fm = f(x) if f0 is None else f0
        if many:
            fm = fm.unsqueeze(-1)
        proj = (fp - fm) / eps
    grad = proj.unsqueeze(-1) * w
    if many:
        grad = grad.mean(dim=-2)
    return ZOEstimate(grad, proj, fp, fm)


def directional_derivative(f: Callable[[Tensor], Tensor], x: Tensor, w: Tensor) -> Tensor:
    """(∇f(x)·w)·w by forward-mode AD (``torch.func.jvp``): the eps → 0 limit of :func:`two_point` (the "DD"
    control of arXiv:2506.05454, Fig. 1). ``w`` may carry a direction axis ``(..., q, d)`` (mean over q)."""
    many = w.dim() == x.dim() + 1
    xs = x.unsqueeze(-2).expand_as(w) if many else x
    _, dd = torch.func.jvp(f, (xs,), (w,))
    g = dd.unsqueeze(-1) * w
    return g.mean(dim=-2) if many else g


def trace_probe(f_plus: Tensor, f_minus: Tensor, f0: Tensor, eps: float) -> Tensor:
    """τ = (f₊ + f₋ − 2f₀)/eps² = wᵀ∇²f w + O(eps²): E τ = tr∇²f for every direction kind (exact on quadratics)."""
    eps = _check_eps(eps)
    return (f_plus + f_minus - 2 * f0) / (eps * eps)


def one_sided_trace_probe(f_plus: Tensor, f0: Tensor, eps: float) -> Tensor:
    """2(f₊ − f₀)/eps², the one-sided proxy of arXiv:2506.05454 (§4, language models). Unbiased, but it carries the
    zero-mean term 2wᵀ∇f/eps (per-sample variance ≈ 4‖∇f‖²/eps²): for mirroring the paper only."""
    eps = _check_eps(eps)
    return 2 * (f_plus - f0) / (eps * eps)
