"""The preconditioners of the preSAM template (arXiv:2501.06603) as pure functions, per tensor and per list.

Constraint scales c = diag(C⁻¹): ASAM's |w| + η (arXiv:2102.11600) and Fisher-SAM's (1 + η g²)^(-1/2)
(arXiv:2206.04920). Objective vectors u: VaSSO's EMA of gradients (arXiv:2309.15639) and the two provisional
infoSAM arms (:class:`~optimlab.sam.InfoSAM`): the SNR weight (this project's design) and the inverse-variance
weight (:func:`invvar_weight`, an unreleased draft by the paper's authors, restated). Each list version
(``*_scales``, ``*_directions``, ``snr_weights``, ``invvar_weights``) runs torch's multi-tensor kernels and
computes every element by the same operations, in the same order, as the per-tensor version, which is a
one-element call of it (so the two agree bit for bit). Inputs are never modified. The SNR weight, thirteen
elementwise operations, also has a flat form (:func:`snr_flat`: one kernel per operation on the concatenated
tensors), used for long lists of small tensors; elementwise kernels give the same bits whatever the layout, which
the tests check.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["asam_scale", "asam_scales", "ema_direction", "ema_directions", "fisher_scale", "fisher_scales",
           "flat_ok", "invvar_weight", "invvar_weights", "snr_flat", "snr_weight", "snr_weights"]


def asam_scale(p: Tensor, eta: float) -> Tensor:
    """ASAM's c = diag(T_w) = |w| + η (arXiv:2102.11600, normalisation operator T_w)."""
    return asam_scales([p], eta)[0]


def asam_scales(params: Sequence[Tensor], eta: float) -> list[Tensor]:
    """:func:`asam_scale` of each tensor."""
    if not params:
        return []
    c = torch._foreach_abs([p.detach() for p in params])
    _add_(c, eta)
    return list(c)


def fisher_scale(g: Tensor, eta: float) -> Tensor:
    """Fisher-SAM's c = diag(F)^(-1/2) with F = 1 + η g² (arXiv:2206.04920), so that ε = ρ F⁻¹g / sqrt(gᵀF⁻¹g)."""
    return fisher_scales([g], eta)[0]


def fisher_scales(grads: Sequence[Tensor], eta: float) -> list[Tensor]:
    """:func:`fisher_scale` of each tensor."""
    if not grads:
        return []
    c = torch._foreach_pow(list(grads), 2)
    _mul_(c, eta)
    _add_(c, 1.0)
    torch._foreach_rsqrt_(c)
    return list(c)


def ema_direction(d_prev: Tensor | None, g: Tensor, theta: float) -> Tensor:
    """VaSSO's d_t = (1 − θ) d_{t−1} + θ g_t, with d_1 = g_1 (arXiv:2309.15639). θ = 1 gives d_t = g_t exactly."""
    return ema_directions([d_prev], [g], theta)[0]


def ema_directions(d_prev: Sequence[Tensor | None], grads: Sequence[Tensor], theta: float) -> list[Tensor]:
    """:func:`ema_direction` of each pair (new tensors; ``None`` in ``d_prev`` marks a first step)."""
    d_prev, grads = list(d_prev), list(grads)
    if grads and all(d is not None for d in d_prev):  # the usual case: two multi-tensor kernels
        ds = _mul(d_prev, 1.0 - theta)  # type: ignore[arg-type]
        torch._foreach_add_(ds, grads, alpha=theta)
        return ds
    out: list[Tensor] = [None] * len(grads)  # type: ignore[list-item]
    old = [i for i, d in enumerate(d_prev) if d is not None]
    first = [i for i, d in enumerate(d_prev) if d is None]
    if first:
        for i, d in zip(first, torch._foreach_clone([grads[i].detach() for i in first])):
            out[i] = d
    if old:
        ds = _mul([d_prev[i] for i in old], 1.0 - theta)  # type: ignore[misc]
        torch._foreach_add_(ds, [grads[i] for i in old], alpha=theta)
        for i, d in zip(old, ds):
            out[i] = d
    return out


def snr_weight(
    m_prev: Tensor | None, s_prev: Tensor | None, g: Tensor, t: int, beta: float, delta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Provisional infoSAM weight (this project's design, not arXiv:2501.06603's); returns (o, m_t, s_t).

    m_t = β m + (1−β) g;  s_t = β s + (1−β)(g − m_t)²;  m̂ = m_t/(1−βᵗ);  ŝ = s_t/(1−βᵗ);
    o = m̂² / (m̂² + ŝ + δ) ∈ [0, 1].
    """
    o, m, s = _snr(None if m_prev is None else [m_prev], None if s_prev is None else [s_prev], [g], t, beta, delta)
    return o[0], m[0], s[0]


def snr_weights(
    m_prev: Sequence[Tensor | None], s_prev: Sequence[Tensor | None], grads: Sequence[Tensor],
    steps: Sequence[int], beta: float, delta: float,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """:func:`snr_weight` of each tensor, at its own step count ``steps[i]``; returns (u = o ⊙ g, m, s) lists.

    Unlike :func:`snr_weight`, the first list is the ascent vector u = o ⊙ g (what infoSAM perturbs along).
    """
    n = len(grads)
    us: list[Tensor] = [None] * n  # type: ignore[list-item]
    ms: list[Tensor] = [None] * n  # type: ignore[list-item]
    ss: list[Tensor] = [None] * n  # type: ignore[list-item]
    parts: dict[tuple[int, bool], list[int]] = {}
    for i, t in enumerate(steps):
        parts.setdefault((t, m_prev[i] is None or s_prev[i] is None), []).append(i)
    for (t, first), idx in parts.items():
        g = [grads[i] for i in idx]
        mp = None if first else [m_prev[i] for i in idx]
        sp = None if first else [s_prev[i] for i in idx]
        if flat_ok(g):
            o, fm, fs = snr_flat(None if mp is None else _flatten(mp), None if sp is None else _flatten(sp), g,
                                 t, beta, delta)
            m, s = _unflatten(fm, g), _unflatten(fs, g)
        else:
            o, m, s = _snr_u(mp, sp, g, t, beta, delta)
        for j, i in enumerate(idx):
            us[i], ms[i], ss[i] = o[j], m[j], s[j]
    return us, ms, ss


def invvar_weight(m_prev: Tensor | None, g: Tensor, alpha: float, delta: float) -> tuple[Tensor, Tensor, Tensor]:
    """Provisional infoSAM inverse-variance direction; returns (u, m_t, b_t).

    A restatement of an unreleased draft by the authors of arXiv:2501.06603, not the paper's algorithm (UNVERIFIED).

    First step (``m_prev`` None): m_1 = g_1, b_1 = 1. Later steps: m_t = α m_{t−1} + (1−α) g_t and
    b_t = (m_t − g_t)² (one step: no EMA of squares, no bias correction). Then u_t = g_t ⊘ (b_t + δ), so
    u_1 = g_1/(1+δ) (SAM's direction). δ ≥ 1e-12 is needed: where g = m = 0 (a dead ReLU unit) b = 0.
    """
    u, m, b = invvar_weights([m_prev], [g], alpha, delta)
    return u[0], m[0], b[0]


def invvar_weights(m_prev: Sequence[Tensor | None], grads: Sequence[Tensor], alpha: float,
                   delta: float) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """:func:`invvar_weight` of each tensor (``None`` in ``m_prev`` marks its first step); returns (u, m, b) lists.

    fp16/bf16 tensors are computed in float32; their m, b are stored back in their dtype, but u stays float32:
    g/(b + δ) reaches 1e8·g at δ = 1e-8, beyond fp16's range (ε is scaled from it in float32 anyway).
    """
    grads, m_prev = list(grads), list(m_prev)
    n = len(grads)
    us: list[Tensor] = [None] * n  # type: ignore[list-item]
    ms: list[Tensor] = [None] * n  # type: ignore[list-item]
    bs: list[Tensor] = [None] * n  # type: ignore[list-item]
    low = [g.dtype in _LOW for g in grads]
    up = [g.float() if lo else g for g, lo in zip(grads, low)]
    first = [i for i in range(n) if m_prev[i] is None]
    old = [i for i in range(n) if m_prev[i] is not None]
    if first:
        g1 = [up[i] for i in first]
        m1, u1 = torch._foreach_clone([g.detach() for g in g1]), torch._foreach_div(g1, 1.0 + delta)
        for i, m, u in zip(first, m1, u1):
            ms[i], bs[i], us[i] = m, torch.ones_like(m), u
    if old:
        g = [up[i] for i in old]
        m = _mul([m_prev[i].float() if low[i] else m_prev[i] for i in old], alpha)  # type: ignore[union-attr]
        torch._foreach_add_(m, g, alpha=1.0 - alpha)
        b = torch._foreach_sub(m, g)
        torch._foreach_mul_(b, b)  # (m − g)², as Tensor.square_()
        den = torch._foreach_clone(b)
        _add_(den, delta)
        u = torch._foreach_div(g, den)
        del den
        for j, i in enumerate(old):
            ms[i], bs[i], us[i] = m[j], b[j], u[j]
    for i in range(n):
        if low[i]:
            ms[i], bs[i] = ms[i].to(grads[i].dtype), bs[i].to(grads[i].dtype)
    return us, ms, bs


_FLAT_MIN = 16  # lists at least this long are computed flat (dispatch overhead dominates small tensors)


_LOW = (torch.float16, torch.bfloat16)


def flat_ok(tensors: list[Tensor]) -> bool:
    """Whether :func:`snr_flat` applies: at least 16 tensors, all of one device and one dtype of at least 32 bits."""
    kinds = {(x.device, x.dtype) for x in tensors} if len(tensors) >= _FLAT_MIN else set()
    return len(kinds) == 1 and next(iter(kinds))[1] not in _LOW


def _snr_u(m_prev: list[Tensor] | None, s_prev: list[Tensor] | None, g: list[Tensor], t: int, beta: float,
           delta: float) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """(u = o ⊙ g, m, s) per tensor. fp16/bf16 tensors are computed in float32 and stored back in their dtype:
    m̂² and ŝ of small gradients underflow in fp16 (0/0 = NaN at the first step)."""
    low = [x.dtype in _LOW for x in g]
    if not any(low):
        o, m, s = _snr(m_prev, s_prev, g, t, beta, delta)
        torch._foreach_mul_(o, g)
        return o, m, s

    def up(xs: list[Tensor] | None) -> list[Tensor] | None:
        return None if xs is None else [x.float() if lo else x for x, lo in zip(xs, low)]

    g32 = up(g)
    o, m, s = _snr(up(m_prev), up(s_prev), g32, t, beta, delta)  # type: ignore[arg-type]
    torch._foreach_mul_(o, g32)  # type: ignore[arg-type]
    return tuple([x.to(ref.dtype) for x, ref in zip(xs, g)] for xs in (o, m, s))  # type: ignore[return-value]


def snr_flat(m_prev: Tensor | None, s_prev: Tensor | None, grads: list[Tensor], t: int, beta: float,
             delta: float) -> tuple[list[Tensor], Tensor, Tensor]:
    """:func:`snr_weights` at one step t on flat state: u = o ⊙ g as views shaped like ``grads``, and the new m, s
    as flat tensors (the concatenation of the per-tensor m, s, in the order of ``grads``).

    ``m_prev``/``s_prev`` are the flat previous m, s (``None`` at the first step). One kernel per operation instead
    of one per tensor; elementwise kernels give the same bits whatever the layout, so this equals the per-tensor path.
    """
    g = _flatten(grads)
    o, m, s = _snr(None if m_prev is None else [m_prev], None if s_prev is None else [s_prev], [g], t, beta, delta)
    o[0].mul_(g)
    return _unflatten(o[0], grads), m[0], s[0]


def _flatten(tensors: list[Tensor]) -> Tensor:
    return torch._C._nn.flatten_dense_tensors(tensors)


def _unflatten(flat: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Views of ``flat`` shaped like ``like`` (contiguous)."""
    return list(torch._C._nn.unflatten_dense_tensors(flat, like))


def _snr(m_prev: list[Tensor] | None, s_prev: list[Tensor] | None, g: list[Tensor], t: int, beta: float,
         delta: float) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """(o, m, s) of :func:`snr_weight` for lists at one step t (``m_prev``/``s_prev`` None: first step)."""
    if m_prev is None:
        m = _mul(g, 1.0 - beta)
    else:
        m = _mul(m_prev, beta)
        torch._foreach_add_(m, g, alpha=1.0 - beta)
    dev = torch._foreach_sub(g, m)
    torch._foreach_mul_(dev, dev)  # (g − m)², as Tensor.square_()
    bias = 1.0 - beta**t
    if s_prev is None:
        _mul_(dev, 1.0 - beta)
        s = dev
    else:
        s = _mul(s_prev, beta)
        torch._foreach_add_(s, dev, alpha=1.0 - beta)
    # Temporaries are released as soon as they are used, so that the allocator hands their memory to the next one
    # (a fresh buffer costs its page faults: about as much as the arithmetic for large tensors on CPU).
    del dev
    den = _mul(s, bias)
    # o = m̂²/(m̂² + ŝ + δ) with m̂ = m/b, ŝ = s/b, multiplied through by b²: m²/(m² + b·s + b²·δ)
    m2 = torch._foreach_mul(m, m)
    torch._foreach_add_(den, m2)
    _add_(den, bias * bias * delta)
    torch._foreach_div_(m2, den)
    del den
    return list(m2), list(m), list(s)


# Scalars in multi-tensor kernels. On CPU, torch turns a Python scalar into a new 0-dim tensor for every tensor of
# the list (about 1.5 µs each: 0.6 ms for 400 tensors), and a 0-dim scalar of another dtype is cast for every tensor;
# a 0-dim CPU tensor in the computation's precision (float32, or float64 for float64 tensors; repeated in a list for
# addition, which has no fast scalar-tensor form) costs nothing extra. The kernels read it as they read a Python
# scalar (rounded once to that precision), so the results are bit-identical. Lists of mixed dtypes, and tensors on
# accelerators (whose fused kernels take the Python scalar directly), get the Python scalar.
def _scalar(tensors: list[Tensor], value: float) -> Tensor | float:
    first = tensors[0]
    if first.device.type != "cpu" or any(t.dtype is not first.dtype for t in tensors):
        return value
    return torch.tensor(value, dtype=torch.float64 if first.dtype == torch.float64 else torch.float32)


def _mul(tensors: list[Tensor], value: float) -> list[Tensor]:
    return list(torch._foreach_mul(tensors, _scalar(tensors, value)))


def _mul_(tensors: list[Tensor], value: float) -> None:
    torch._foreach_mul_(tensors, _scalar(tensors, value))


def _add_(tensors: list[Tensor], value: float) -> None:
    s = _scalar(tensors, value)
    torch._foreach_add_(tensors, s if isinstance(s, float) else [s] * len(tensors))
