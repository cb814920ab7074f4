"""The maths of nBAR and oBAR as pure functions (Li, Zhang, He, NeurIPS 2024, arXiv:2410.14802, Algs 2 and 3).

Per pair (X, Y) at step t, after the backward pass and before the base step, with c_X = α_t·lr_X, c_Y = α_t·lr_Y::

    nBAR: ‖g_X‖ ≥ ‖g_Y‖ ?  X ← (1 + c_X) X,  Y ← (1 − c_Y) Y  :  X ← (1 − c_X) X,  Y ← (1 + c_Y) Y
    oBAR: ‖X‖   ≥ ‖Y‖   ?  X ← (1 − c_X) X,  Y ← (1 + c_Y) Y  :  X ← (1 + c_X) X,  Y ← (1 − c_Y) Y

nBAR is decoupled descent on (α_t/2)·sgn(‖g_X‖ − ‖g_Y‖)·(‖Y‖² − ‖X‖²), SAM's balancing drift without its O(ρ²)
term; oBAR is decoupled descent on (α_t/2)·|‖X‖² − ‖Y‖²|. With equal LRs the product becomes (1 − c²) X Yᵀ.
α_t = μ0·m(t) is our reading of the paper (it names μ0 only in its hyperparameter tables and says that decreasing
α_t, linear or cosine, works; no code was released): see :func:`alpha_schedule`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from optimlab._numerics import group_by_device_and_dtype
from optimlab.lora._bar_pairs import FactorPair, as_factor_pairs

__all__ = ["SCHEDULES", "alpha_schedule", "apply_factors", "bar_factors", "bar_rescale_", "check_c",
           "per_tensor_norms", "rounds_to_one"]

SCHEDULES = ("linear", "cosine", "constant")
LOW_PRECISION = (torch.float16, torch.bfloat16)


def bar_factors(n_first: float, n_second: float, c_first: float, c_second: float,
                variant: str) -> tuple[float, float]:
    """The decision rule of nBAR (``n`` = gradient norms) or oBAR (``n`` = weight norms): the multipliers
    ``(s_first, s_second)``, each 1 ± c (ties follow "≥", as in Algs 2–3)."""
    if variant == "nbar":
        grow_first = n_first >= n_second
    elif variant == "obar":
        grow_first = not n_first >= n_second
    else:
        raise ValueError(f"bar_factors: variant must be 'nbar' or 'obar', got {variant!r}")
    return (1.0 + c_first, 1.0 - c_second) if grow_first else (1.0 - c_first, 1.0 + c_second)


def alpha_schedule(name: str | Callable[[int], float], mu0: float, total_steps: int | None) -> Callable[[int], float]:
    """α_t = μ0·m(t): ``"constant"`` m = 1; ``"linear"`` m = max(0, 1 − t/T); ``"cosine"``
    m = ½(1 + cos(π·min(t, T)/T)); a callable ``t -> m(t)``. Decaying schedules need ``total_steps`` = T and end at
    0 (our choice: the paper states neither the form nor a floor)."""
    if isinstance(mu0, bool) or not isinstance(mu0, (int, float)) or not mu0 >= 0 or math.isinf(mu0):
        raise ValueError(f"alpha_schedule: mu0 must be a finite number >= 0, got {mu0!r}")
    if callable(name):
        return lambda t: mu0 * float(name(t))
    if name not in SCHEDULES:
        raise ValueError(f"alpha_schedule: schedule must be one of {SCHEDULES} or a callable t -> multiplier, "
                         f"got {name!r}")
    if name == "constant":
        return lambda t: float(mu0)
    if total_steps is None or isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"alpha_schedule: the {name!r} schedule decays over total_steps, which must be an integer "
                         f">= 1, got total_steps={total_steps!r} (or use schedule='constant')")
    T = total_steps
    if name == "linear":
        return lambda t: mu0 * max(0.0, 1.0 - t / T)
    return lambda t: mu0 * 0.5 * (1.0 + math.cos(math.pi * min(t, T) / T))


def per_tensor_norms(tensors: Sequence[Tensor]) -> Tensor:
    """‖t_i‖₂ for each tensor, one ``torch._foreach_norm`` per (device, dtype) group, accumulated in float32 (float64
    for float64 tensors); returned as one float64 tensor on the first tensor's device, in input order (no sync)."""
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    device = tensors[0].device
    out = torch.empty(len(tensors), dtype=torch.float64, device=device)
    for (_dev, dt), idx in group_by_device_and_dtype(tensors).items():
        acc = torch.float64 if dt == torch.float64 else torch.float32
        group = [tensors[i] for i in idx]
        norms = torch._foreach_norm(group, 2, dtype=acc) if dt != acc else torch._foreach_norm(group, 2)
        out[torch.tensor(idx, device=device)] = torch.stack(list(norms)).to(device=device, dtype=torch.float64)
    return out


def rounds_to_one(c: float, dtype: torch.dtype) -> bool:
    """Whether 1 + c or 1 − c rounds back to 1 in ``dtype`` (c ≤ ε/2: the multiply then changes nothing)."""
    return dtype in LOW_PRECISION and 0 < c <= torch.finfo(dtype).eps / 2


def check_c(c: float, alpha: float, lr: float, name: str, owner: str) -> None:
    """c = α_t·lr must be < 1 (else a factor is zeroed or flipped): ``ValueError`` giving α_t, lr and the limit."""
    if not c < 1:
        raise ValueError(f"{owner}: c = alpha_t * lr = {alpha:g} * {lr:g} = {c:g} for {name!r} must be < 1 (the "
                         f"factor would be multiplied by 1 - c <= 0); lower mu0 below {1 / lr if lr else math.inf:g}")


def apply_factors(tensors: Sequence[Tensor], factors: Sequence[float]) -> None:
    """In place t_i ← f_i·t_i, one ``torch._foreach_mul_`` per (device, dtype) group; factors of exactly 1 skipped."""
    keep = [i for i, f in enumerate(factors) if f != 1.0]
    if not keep:
        return
    ts = [tensors[i] for i in keep]
    fs = [factors[i] for i in keep]
    for idx in group_by_device_and_dtype(ts).values():
        torch._foreach_mul_([ts[i] for i in idx], [fs[i] for i in idx])


def _lr_pair(lrs: Any, i: int) -> tuple[float, float]:
    if isinstance(lrs, (int, float)) and not isinstance(lrs, bool):
        return float(lrs), float(lrs)
    item = lrs[i]
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return float(item), float(item)
    return float(item[0]), float(item[1])


@torch.no_grad()
def bar_rescale_(pairs: Any, *, variant: str, alpha: float, lrs: float | Sequence[Any]) -> list[int]:
    """One BAR rescale of ``pairs`` in place (no base step): returns per pair +1 (first grew, second shrank),
    −1 (the opposite) or 0 (skipped: both gradients ``None``, or α = 0).

    ``pairs``: a model, ``LoRAPair`` s or ``(first, second)`` tuples; ``lrs``: one lr, or per pair an lr or an
    ``(lr_first, lr_second)`` tuple (LoRA+ groups). nBAR reads the ``.grad`` of both factors (``None`` counts as 0),
    oBAR the weights. Raises ``FloatingPointError`` on a non-finite norm (nothing changed) and ``ValueError`` when
    c = α·lr ≥ 1; warns when 1 ± c rounds to 1 in a low-precision factor (the rescale then does nothing: keep
    adapters in float32, or use :class:`optimlab.lora.bar.BAR` with ``low_precision="accumulate"``).
    """
    owner = "bar_rescale_"
    fps: list[FactorPair] = as_factor_pairs(pairs, owner=owner)
    if variant not in ("nbar", "obar"):
        raise ValueError(f"{owner}: variant must be 'nbar' or 'obar', got {variant!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0 or math.isinf(alpha):
        raise ValueError(f"{owner}: alpha must be a finite number >= 0, got {alpha!r}")
    active = [i for i, fp in enumerate(fps) if variant == "obar" or fp.first.grad is not None
              or fp.second.grad is not None]
    if not active or alpha == 0:
        return [0] * len(fps)
    if variant == "nbar":
        src = [t.grad if t.grad is not None else torch.zeros((), dtype=t.dtype, device=t.device)
               for i in active for t in (fps[i].first, fps[i].second)]
    else:
        src = [t for i in active for t in (fps[i].first, fps[i].second)]
    norms = per_tensor_norms(src).tolist()  # the one host sync
    if not all(math.isfinite(v) for v in norms):
        raise FloatingPointError(f"{owner}: non-finite {'gradient' if variant == 'nbar' else 'weight'} norm; "
                                 "nothing was changed")
    signs = [0] * len(fps)
    tensors, factors = [], []
    for k, i in enumerate(active):
        fp = fps[i]
        lr_x, lr_y = _lr_pair(lrs, i)
        cx, cy = alpha * lr_x, alpha * lr_y
        check_c(cx, alpha, lr_x, fp.first_name, owner)
        check_c(cy, alpha, lr_y, fp.second_name, owner)
        sx, sy = bar_factors(norms[2 * k], norms[2 * k + 1], cx, cy, variant)
        for t, c, n in ((fp.first, cx, fp.first_name), (fp.second, cy, fp.second_name)):
            if rounds_to_one(c, t.dtype):
                warnings.warn(f"{owner}: 1 ± c = 1 ± {c:.3g} rounds to 1 in {t.dtype} for {n!r}: the rescale does "
                              "nothing; keep the adapters in float32 or use BAR(low_precision='accumulate')",
                              RuntimeWarning, stacklevel=2)
        tensors += [fp.first, fp.second]
        factors += [sx, sy]
        signs[i] = 1 if sx > 1 else -1
    apply_factors(tensors, factors)
    return signs
