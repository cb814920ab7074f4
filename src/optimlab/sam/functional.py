"""The perturbation of the sharpness-aware family as a pure, list-level function (tensors in, tensors out).

    ε_p = ρ_p · c_p² ⊙ u_p / (sqrt(Σ_q ‖c_q ⊙ u_q‖²) + eps)

With ``c = None`` and u = g this is SAM's first-order solution of max_{‖ε‖≤ρ} L(w + ε), ε = ρ g/‖g‖ (Foret et al.,
arXiv:2010.01412, eq. 2). With a diagonal constraint preconditioner c = diag(C⁻¹) it solves max ⟨u, ε⟩ s.t.
‖C ε‖ ≤ ρ (the preSAM template of Zhang, Li & Giannakis, arXiv:2501.06603).

The maths runs on torch's multi-tensor kernels (``torch._foreach_mul``), one launch per (device, dtype) group and
radius, as ``torch/optim/sgd.py`` does; tensors whose dtype is below the norm's precision (fp16, bf16) are scaled
one by one in the norm's precision, because ρ/‖u‖ can exceed fp16's range when ‖u‖ is tiny. Each element is
computed by the same operations, in the same order, as the per-tensor formula, so both paths agree bit for bit.
No host synchronisation: the norm stays a tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from optimlab._numerics import global_norm, group_by_device_and_dtype

__all__ = ["perturbation"]


def perturbation(
    u: Sequence[Tensor],
    rho: float | Sequence[float],
    *,
    c: Sequence[Tensor | None] | None = None,
    eps: float = 1e-12,
) -> list[Tensor]:
    """ε_p = ρ_p · c_p² ⊙ u_p / (sqrt(Σ_q ‖c_q ⊙ u_q‖²) + eps) for every tensor p (see the module docstring).

    Args:
        u: the ascent vectors (u = g for SAM).
        rho: one radius, or one per tensor; the norm is always global over all tensors.
        c: ``None`` (c = 1) or one constraint scale per tensor (a tensor of u's shape, or ``None`` for 1).
        eps: added to the norm; norms accumulate in float32 (float64 when any input is float64).

    Returns new tensors (the inputs are not modified). If the norm is 0 the perturbation is exactly 0 (no NaN).
    """
    u = list(u)
    if isinstance(rho, bool) or not isinstance(rho, (int, float)):
        rhos = [float(r) for r in rho]
        if len(rhos) != len(u):
            raise ValueError(f"perturbation: rho must be a float or one value per tensor ({len(u)}), "
                             f"got {len(rhos)} values")
    else:
        rhos = [float(rho)] * len(u)
    cs = [None] * len(u) if c is None else list(c)
    if len(cs) != len(u):
        raise ValueError(f"perturbation: c must be None or one entry per tensor ({len(u)}), got {len(cs)}")
    return perturbation_with_norm(u, rhos, cs, eps)[0]


def perturbation_with_norm(
    us: list[Tensor], rhos: list[float], cs: list[Tensor | None] | None, eps: float
) -> tuple[list[Tensor], Tensor]:
    """(ε list, global norm N = ‖c ⊙ u‖) of :func:`perturbation`, for per-tensor radii ``rhos``.

    ``cs=None`` means c = 1 for every tensor. The ε tensors are new; ``us`` and ``cs`` are not modified.
    """
    scaled, twice = directions(us, cs)
    norm = global_norm(scaled)
    return scale(twice, rhos, norm, eps), norm


def directions(us: list[Tensor], cs: list[Tensor | None] | None) -> tuple[list[Tensor], list[Tensor]]:
    """(c ⊙ u, c ⊙ (c ⊙ u)) per tensor: the vectors whose global norm is N, and the directions of ε.

    Where c is ``None`` both entries are u itself (the same tensor object); elsewhere they are new tensors.
    """
    idx = [] if cs is None else [i for i, c in enumerate(cs) if c is not None]
    if not idx:
        return us, us
    scaled, twice = list(us), list(us)
    c_sub = [cs[i] for i in idx]  # type: ignore[index]
    once = torch._foreach_mul(c_sub, [us[i] for i in idx])
    for i, t, tt in zip(idx, once, torch._foreach_mul(c_sub, once)):
        scaled[i], twice[i] = t, tt
    return scaled, twice


def scale(twice: list[Tensor], rhos: list[float], norm: Tensor, eps: float, *,
          groups: dict[tuple[torch.device, torch.dtype], list[int]] | None = None,
          inplace: list[bool] | None = None) -> list[Tensor]:
    """ε_p = twice_p · ρ_p/(N + eps), the scale computed once per radius in the norm's precision.

    ``inplace[i]`` lets ``twice[i]`` be overwritten with ε_i (a temporary the caller discards) instead of a new
    tensor; tensors below the norm's precision are always scaled into a new tensor.
    """
    if groups is None:
        groups = group_by_device_and_dtype(twice)
    if len(groups) == 1 and len(set(rhos)) == 1 and (inplace is None or len(set(inplace)) == 1):
        (device, dtype), = groups
        s = (rhos[0] / (norm + eps)).to(device)
        if dtype == s.dtype:  # one radius, one device and dtype: a single multi-tensor kernel
            if inplace is not None and inplace[0]:
                torch._foreach_mul_(twice, s)
                return list(twice)
            return list(torch._foreach_mul(twice, s))
    out: list[Tensor] = [None] * len(twice)  # type: ignore[list-item]
    scales: dict[tuple[float, torch.device], Tensor] = {}
    for (device, dtype), idx in groups.items():
        by_rho: dict[float, list[int]] = {}
        for i in idx:
            by_rho.setdefault(rhos[i], []).append(i)
        for r, members in by_rho.items():
            s = scales.get((r, device))
            if s is None:
                s = scales[(r, device)] = (r / (norm + eps)).to(device)  # a 0-dim tensor in the norm's precision
            if dtype != s.dtype:  # scale in the norm's precision, store in the tensor's
                for i in members:
                    out[i] = twice[i].to(s.dtype).mul(s).to(dtype)
                continue
            mine = [i for i in members if inplace is not None and inplace[i]]
            new = [i for i in members if inplace is None or not inplace[i]]
            if mine:
                torch._foreach_mul_([twice[i] for i in mine], s)
                for i in mine:
                    out[i] = twice[i]
            if new:
                for i, e in zip(new, torch._foreach_mul([twice[i] for i in new], s)):
                    out[i] = e
    return out


def nonfinite_flag(tensors: list[Tensor]) -> Tensor:
    """A 1-element float tensor on the first tensor's device, nonzero when any entry of ``tensors`` is NaN or ±inf;
    no host sync.

    Uses the check of torch's ``GradScaler`` (``torch._amp_foreach_non_finite_check_and_unscale_`` with scale 1,
    which writes every value back unchanged): one fused pass, a quarter of the cost of a global norm over hundreds
    of small tensors on CPU. Falls back to the global norm where that kernel refuses the input (mixed devices,
    tensors with overlapping memory).
    """
    device = tensors[0].device
    found = torch.zeros(1, device=device)
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, torch.ones(1, device=device))
    except RuntimeError:
        found = (~torch.isfinite(global_norm(tensors))).float().reshape(1).to(device)
    return found


def grads_finite(grads: list[Tensor]) -> bool:
    """True when every entry of every gradient is finite: :func:`nonfinite_flag` and one host sync."""
    return not grads or not bool(nonfinite_flag(grads))
