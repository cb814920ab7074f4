"""Label noise for robustness experiments; the input is never modified."""

from __future__ import annotations

import torch
from torch import Tensor

from optimlab._random import check_generator


def _gen(generator: torch.Generator | int) -> torch.Generator:
    if generator is None:  # label noise must be reproducible: None is refused rather than drawn from OS entropy
        raise ValueError("generator must be a torch.Generator or a non-negative int seed, got None")
    return check_generator(generator)


def _prepare(y: Tensor, rate: float, n_classes: int | None, hi_open: bool) -> tuple[int, int]:
    if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype not in (torch.int64, torch.int32):
        raise ValueError("y must be a 1-D integer tensor of class labels")
    ok = isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0.0 <= rate and (
        rate < 1.0 if hi_open else rate <= 1.0)
    if not ok:
        raise ValueError(f"rate must be in [0, 1{')' if hi_open else ']'}, got {rate!r}")
    k = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if k < 2 or (y.numel() and (int(y.min()) < 0 or int(y.max()) >= k)):
        raise ValueError(f"n_classes must be >= 2 and cover the labels, got {k}")
    return round(rate * y.numel()), k


def symmetric(y: Tensor, rate: float, n_classes: int | None = None, *,
              generator: torch.Generator | int) -> tuple[Tensor, Tensor]:
    """Symmetric label noise: exactly round(rate·n) labels, chosen uniformly without replacement, each moved to a
    class drawn uniformly among the K − 1 OTHER classes. Returns (noisy labels, flipped mask)."""
    n_flip, k = _prepare(y, rate, n_classes, hi_open=False)
    g = _gen(generator)
    idx = torch.randperm(y.numel(), generator=g)[:n_flip]
    shift = torch.randint(1, k, (n_flip,), generator=g)  # uniform over the other classes
    noisy = y.clone()
    noisy[idx.to(y.device)] = (y[idx.to(y.device)] + shift.to(y.device, y.dtype)) % k
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask[idx.to(y.device)] = True
    return noisy, mask


def pairwise(y: Tensor, rate: float, n_classes: int | None = None, *,
             generator: torch.Generator | int) -> tuple[Tensor, Tensor]:
    """Pair-flip noise: exactly round(rate·n) labels, chosen uniformly, moved c → (c + 1) mod K."""
    n_flip, k = _prepare(y, rate, n_classes, hi_open=True)
    idx = torch.randperm(y.numel(), generator=_gen(generator))[:n_flip].to(y.device)
    noisy = y.clone()
    noisy[idx] = (y[idx] + 1) % k
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask[idx] = True
    return noisy, mask
