"""ZO-SGD and ZO-Adam: zeroth-order optimizers with seeded in-place perturbations (no backward, no ``.grad``).

ZO-SGD with Gaussian directions and central differences descends, in expectation, F = f + (eps²/2)·tr∇²f
(Zhang, Li, Thekumparampil, Oh, Muehlebach, He, "Zeroth-Order Optimization Finds Flat Minima", NeurIPS 2025,
arXiv:2506.05454): on convex f it finds approximately flat minima (smallest Hessian trace among minimizers); the
guarantee is for a uniformly random iterate x_τ, τ ~ U{0..T−1}, with lr = 1/(8(d+6)L₁), eps = Θ(√ε/d^{3/2}) and
T = O(d⁴/ε²) — not for the last iterate. The memory-saving in-place procedure is MeZO's (Malladi et al.,
arXiv:2305.17333); ZO-Adam follows ZO-AdaMM (arXiv:1910.06513) / ZO-Bench (arXiv:2402.11592).

Low-precision guide: fp32/fp64 weights → ``perturb="inplace"``; bf16/fp16 weights → ``master_dtype=torch.float32``;
PEFT/LoRA (few trainables, any dtype) → ``perturb="swap"``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from optimlab._validation import Constraint, Interval, Options
from optimlab.zo.base import ZOOptimizer

__all__ = ["ZOSGD", "ZOAdam"]

_UNIT = Interval(0, 1, closed="left")


class ZOSGD(ZOOptimizer):
    """Zeroth-order SGD: ``ZOSGD(params, lr=1e-3, eps=1e-3, *, q=1, direction="gaussian", difference="central",
    momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, seed=0, perturb="inplace", master_dtype=None,
    noise_dtype=None, chunk_numel=2**20, trace_every=0, trace_beta=0.99, nonfinite="raise", same_randomness=True,
    distributed=None, process_group=None, checksum_every=0, allow_low_precision=False, record=False)``.

    Update (per parameter p of group g): ĝ_p = (1/q) Σᵢ (hᵢ/eps_g)·w_{i,p}, hᵢ = (f(θ + eps·wᵢ) − f(θ − eps·wᵢ))/2;
    then the rule of ``torch.optim.SGD``: ĝ += wd·θ; buf ← m·buf + (1 − dampening)·ĝ (buf = ĝ on the first step);
    ĝ ← ĝ + m·buf (nesterov) or buf; θ ← θ − lr·ĝ. With q = 1, no momentum, ``inplace`` and no master the restore
    and the update are fused into one pass: θ ← (1 − lr·wd)(θ + eps·w) − lr·(h/eps)·w (3 RNG passes per step).

    Args:
        params: tensors or param groups; only tensors with ``requires_grad=True`` are perturbed and updated, tied
            tensors once. Per group: ``lr``, ``eps``, ``momentum``, ``dampening``, ``nesterov``, ``weight_decay``.
        eps: RMS per-coordinate probe size (the paper's λ for Gaussian directions).
        q: directions per step (averaged). direction: ``"gaussian"``, ``"rademacher"`` or ``"sphere"`` (E[wwᵀ] = I).
        difference: ``"central"`` (2q evaluations) or ``"forward"`` (q + 1; no trace probe).
        seed: base of every direction (stored in ``state_dict``; equal on every process when distributed).
        perturb, master_dtype, allow_low_precision: see :mod:`optimlab.zo.base` (restore exactness and memory).
        noise_dtype: dtype of the directions (None: float64 for float64 params, else float32).
        chunk_numel: directions are drawn in chunks of at most this many elements (one chunk of extra memory).
        trace_every, trace_beta: every k steps one extra evaluation f(θ) gives the probe (f₊ + f₋ − 2f₀)/eps²;
            :attr:`trace_estimate` is its bias-corrected EMA.
        nonfinite: ``"raise"`` ``FloatingPointError`` on a non-finite loss (weights restored, step not counted) or
            ``"skip"`` (weights restored, ``skipped_steps`` counted, step not counted so the run continues as if
            it never happened; returns NaN).
        same_randomness: run every closure call of a step with the global RNG seeded from ``mix64(seed, t)`` inside
            ``fork_rng`` (same dropout for both probes; the global state after the step equals the state before).
        distributed, process_group, checksum_every: data parallel with seeds and scalars only
            (:mod:`optimlab.zo.distributed`); ``"shared"`` or ``"per_process"``.
        record: keep ``opt.log`` (per step the half-differences and the group hyperparameters) for
            :func:`optimlab.zo.replay`.
    """

    _owner = "ZOSGD"
    _group_keys = ("lr", "eps", "momentum", "dampening", "nesterov", "weight_decay")
    _constraints: ClassVar[dict[str, Constraint]] = {
        **ZOOptimizer._constraints,
        "momentum": _UNIT, "dampening": _UNIT, "nesterov": Options(True, False),
    }

    def __init__(self, params: Any, lr: float = 1e-3, eps: float = 1e-3, *, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0, **kwargs: Any) -> None:
        defaults = dict(lr=lr, eps=eps, momentum=momentum, dampening=dampening, nesterov=nesterov,
                        weight_decay=weight_decay)
        self._check_nesterov(defaults)
        super().__init__(params, defaults, **kwargs)

    def _check_nesterov(self, group: dict) -> None:
        if group.get("nesterov") is True and not (isinstance(group.get("momentum"), (int, float))
                                                  and group["momentum"] > 0):
            raise ValueError(f"{self._owner}: nesterov=True needs momentum in (0, 1), got momentum="
                             f"{group.get('momentum')!r}")

    def _check_group(self, group: dict[str, Any]) -> dict[str, Any]:
        values = super()._check_group(group)
        self._check_nesterov(values)
        return values

    def _fusable(self) -> bool:
        return all(g["momentum"] == 0 for g in self.param_groups)

    def _first(self, state: dict) -> bool:
        return "momentum_buffer" not in state

    def _rule(self, group: dict, p: Tensor, state: dict, x: Tensor, lo: int, hi: int, g: Tensor,
              first: bool, t: int) -> None:
        wd, m = group["weight_decay"], group["momentum"]
        xs = x[lo:hi]
        if wd:
            g.add_(xs, alpha=wd)
        if m:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros(p.shape, dtype=g.dtype, device=p.device)
            buf = state["momentum_buffer"].view(-1)[lo:hi]
            if first:
                buf.copy_(g)
            else:
                buf.mul_(m).add_(g, alpha=1 - group["dampening"])
            g = g.add_(buf, alpha=m) if group["nesterov"] else buf
        xs.add_(g, alpha=-group["lr"])


class ZOAdam(ZOOptimizer):
    """Zeroth-order AdamW (ZO-AdaMM, arXiv:1910.06513): ``ZOAdam(params, lr=1e-4, eps=1e-3, *, betas=(0.9, 0.999),
    adam_eps=1e-8, weight_decay=0.0, **every ZOSGD keyword from q on)``.

    Per chunk, from ĝ as in :class:`ZOSGD`: θ ← θ(1 − lr·wd); m ← β₁m + (1 − β₁)ĝ; v ← β₂v + (1 − β₂)ĝ²;
    θ ← θ − lr·m̂/(√v̂ + adam_eps), m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ). State: 2× fp32 trainables (memory is no longer
    inference-level; cheap for LoRA). v is dominated by estimator noise (ĝ² ≈ c²w²), so ZOAdam behaves close to a
    per-coordinate normalised ZO-SGD; no convergence claim is made.
    """

    _owner = "ZOAdam"
    _group_keys = ("lr", "eps", "betas", "adam_eps", "weight_decay")
    _constraints: ClassVar[dict[str, Constraint]] = {
        **ZOOptimizer._constraints, "adam_eps": Interval(0, math.inf, closed="left"),
    }

    def __init__(self, params: Any, lr: float = 1e-4, eps: float = 1e-3, *, betas: tuple[float, float] = (0.9, 0.999),
                 adam_eps: float = 1e-8, weight_decay: float = 0.0, **kwargs: Any) -> None:
        defaults = dict(lr=lr, eps=eps, betas=self._check_betas(betas), adam_eps=adam_eps, weight_decay=weight_decay)
        super().__init__(params, defaults, **kwargs)

    def _check_betas(self, betas: Any) -> tuple[float, float]:
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_UNIT.accepts(b) for b in betas)):
            raise ValueError(f"{self._owner}: betas must be a pair of numbers in [0, 1), got {betas!r}")
        return (float(betas[0]), float(betas[1]))

    def _check_group(self, group: dict[str, Any]) -> dict[str, Any]:
        values = super()._check_group(group)
        values["betas"] = self._check_betas(group["betas"])
        return values

    def _rule(self, group: dict, p: Tensor, state: dict, x: Tensor, lo: int, hi: int, g: Tensor,
              first: bool, t: int) -> None:
        lr, wd, (b1, b2) = group["lr"], group["weight_decay"], group["betas"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros(p.shape, dtype=g.dtype, device=p.device)
            state["exp_avg_sq"] = torch.zeros(p.shape, dtype=g.dtype, device=p.device)
            state["updates"] = 0
        n = state["updates"] + 1
        if hi == p.numel():
            state["updates"] = n
        xs = x[lo:hi]
        if wd:
            xs.mul_(1 - lr * wd)
        m, v = state["exp_avg"].view(-1)[lo:hi], state["exp_avg_sq"].view(-1)[lo:hi]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v / (1 - b2**n)).sqrt_().add_(group["adam_eps"])
        xs.addcdiv_(m, denom, value=-lr / (1 - b1**n))
