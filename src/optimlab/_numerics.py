"""Multi-tensor numerics shared by the optimizers: global norm, finiteness, EMAs, bias correction.

Each function takes lists of tensors and uses torch's foreach kernels (``torch._foreach_norm``,
``_foreach_mul_``, ``_foreach_add_``), one launch per (device, dtype) group, as ``torch/optim/sgd.py`` does;
a per-tensor loop is the fallback where a kernel does not exist for a dtype. Norms accumulate in float32 (float64
when any input is float64), so fp16/bf16 gradients neither overflow nor lose the norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["all_finite", "bias_correction", "ema_", "global_norm", "group_by_device_and_dtype"]


def group_by_device_and_dtype(tensors: Sequence[Tensor]) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype), in first-seen order (one foreach launch per group)."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return groups


def global_norm(tensors: Sequence[Tensor], dtype: torch.dtype | None = None, *,
                groups: dict[tuple[torch.device, torch.dtype], list[int]] | None = None) -> Tensor:
    """‖(t_1, …, t_n)‖₂ = sqrt(Σ_i ‖t_i‖²), accumulated in ``dtype`` (float32, or float64 if any input is).

    Returns a 0-dim tensor of ``dtype`` on the first tensor's device (0 for an empty list); no host sync.
    A non-finite entry anywhere gives a non-finite norm. ``groups`` (from :func:`group_by_device_and_dtype`)
    saves regrouping when the caller already has it. Under ``torch.no_grad`` the tensors are used as they are;
    otherwise they are detached first.
    """
    tensors = list(tensors) if not torch.is_grad_enabled() else [t.detach() for t in tensors]
    if dtype is None:
        dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    if not tensors:
        return torch.zeros((), dtype=dtype)
    device = tensors[0].device
    parts: list[Tensor] = []
    for (_device, dt), idx in (groups or group_by_device_and_dtype(tensors)).items():
        group = [tensors[i] for i in idx]
        if dt.is_floating_point or dt.is_complex:
            norms = torch._foreach_norm(group, 2, dtype=dtype) if dt != dtype else torch._foreach_norm(group, 2)
        else:
            norms = [t.to(dtype).norm(2) for t in group]
        parts.append(torch.stack(list(norms)).norm(2).to(device))
    return parts[0] if len(parts) == 1 else torch.stack(parts).norm(2)


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """True when every entry of every tensor is finite; costs one host sync (via the global norm)."""
    if not tensors:
        return True
    return bool(torch.isfinite(global_norm(tensors)))


def ema_(buffers: Sequence[Tensor], updates: Sequence[Tensor], decay: float) -> list[Tensor]:
    """In place: b ← decay · b + (1 − decay) · u for each pair; returns ``buffers``.

    ``decay = 0`` copies the updates; ``decay = 1`` leaves the buffers unchanged.
    """
    buffers, updates = list(buffers), list(updates)
    if len(buffers) != len(updates):
        raise ValueError(f"ema_: buffers and updates must have the same length, got {len(buffers)} and {len(updates)}")
    if not buffers:
        return buffers
    for idx in group_by_device_and_dtype(buffers).values():
        bs = [buffers[i] for i in idx]
        us = [updates[i] for i in idx]
        torch._foreach_mul_(bs, decay)
        torch._foreach_add_(bs, us, alpha=1.0 - decay)
    return buffers


def bias_correction(decay: float, t: int) -> float:
    """1 − decay^t, the factor that unbiases an EMA started at zero after t updates (Adam, arXiv:1412.6980)."""
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"bias_correction: t must be an integer >= 1, got {t!r}")
    return 1.0 - float(decay) ** t
