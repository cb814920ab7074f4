"""Balancedness of scale-invariant factor pairs (Li, Zhang, He, NeurIPS 2024, arXiv:2410.14802, §2–§4).

For a pair (X, Y) whose loss depends on X Yᵀ only (LoRA: ``X = lora_B``, ``Yᵀ = lora_A``), the balancedness is

    bal = ½ (‖X‖_F² − ‖Y‖_F²)                                   (positive when lora_B is heavier)

At PEFT's initialisation ``lora_B = 0``, so bal = −½‖A‖_F² < 0 (the paper zero-initialises the other factor; only
the sign differs). Under gradient flow on f(X Yᵀ) the r×r matrix Xᵀ X − Yᵀ Y (for LoRA: BᵀB − A Aᵀ, trace 2·bal) is
conserved: both time derivatives equal −XᵀGY − YᵀGᵀX with G = ∇f (our derivation, beyond the paper's scalar bal);
SGD changes it only at second order, η²(g_Xᵀ g_X − g_Yᵀ g_Y) per step. SAM shrinks |bal| (Thm 2, eq. 5):
d bal/dt = ρ(‖g_X‖² − ‖g_Y‖²)/sqrt(‖g_X‖² + ‖g_Y‖²) + O(ρ²); :func:`grad_imbalance` is that drift per unit ρ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from optimlab.lora._bar_pairs import as_factor_pairs

__all__ = ["BalancednessReport", "PairBalance", "balancedness", "balancedness_matrix", "balancedness_report",
           "grad_imbalance"]


def _sq(t: Tensor) -> float:
    t = t.detach()
    return float(t.to(torch.float64).square().sum())


def balancedness(first: Tensor, second: Tensor) -> float:
    """bal = ½(‖first‖_F² − ‖second‖_F²), accumulated in float64 (``first`` = lora_B, ``second`` = lora_A)."""
    return 0.5 * (_sq(first) - _sq(second))


def balancedness_matrix(B: Tensor, A: Tensor) -> Tensor:
    """The r×r matrix BᵀB − A Aᵀ (float64) for ``B`` (d_out × r) and ``A`` (r × d_in); its trace is 2·bal.

    Conserved by gradient flow on f(BA); conv factors are flattened to ``r × ·`` and ``· × r``.
    """
    A2 = A.detach().reshape(A.shape[0], -1).to(torch.float64)
    B2 = B.detach().reshape(B.shape[0], B.shape[1], -1).transpose(1, 2).reshape(-1, B.shape[1]).to(torch.float64)
    if A2.shape[0] != B2.shape[1]:
        raise ValueError(f"balancedness_matrix: r mismatch: A has {A2.shape[0]} rows, B {B2.shape[1]} columns")
    return B2.T @ B2 - A2 @ A2.T


def grad_imbalance(first: Tensor, second: Tensor) -> float | None:
    """SAM's balancing drift per unit radius, (‖g_X‖² − ‖g_Y‖²)/sqrt(‖g_X‖² + ‖g_Y‖²) (arXiv:2410.14802, eq. 5),
    from the ``.grad`` of ``first`` (X) and ``second`` (Y); ``None`` when either has no gradient, 0 when both are 0.
    Its sign is nBAR's decision (positive: nBAR grows X and shrinks Y)."""
    if first.grad is None or second.grad is None:
        return None
    gx, gy = _sq(first.grad), _sq(second.grad)
    total = gx + gy
    return 0.0 if total == 0 else (gx - gy) / math.sqrt(total)


@dataclass(frozen=True)
class PairBalance:
    """One pair's row: its name, bal, |bal|, ‖first‖ (lora_B), ‖second‖ (lora_A) and the gradient imbalance."""

    name: str
    bal: float
    abs_bal: float
    norm_first: float
    norm_second: float
    grad_imbalance: float | None


@dataclass(frozen=True)
class BalancednessReport:
    """Per-pair balancedness and totals: Σ bal, mean |bal| and max |bal| over the pairs."""

    pairs: tuple[PairBalance, ...] = field(default_factory=tuple)

    @property
    def total(self) -> float:
        return sum(p.bal for p in self.pairs)

    @property
    def mean_abs(self) -> float:
        return sum(p.abs_bal for p in self.pairs) / len(self.pairs) if self.pairs else math.nan

    @property
    def max_abs(self) -> float:
        return max((p.abs_bal for p in self.pairs), default=math.nan)

    def __len__(self) -> int:
        return len(self.pairs)

    def to_dict(self, prefix: str = "balancedness") -> dict[str, float]:
        """Flat ``{key: float}`` for loggers: ``<prefix>/<pair>/bal``, ``.../abs_bal``, ``.../grad_imbalance``
        (when known) and ``<prefix>/total``, ``/mean_abs``, ``/max_abs``."""
        out: dict[str, float] = {}
        for p in self.pairs:
            out[f"{prefix}/{p.name}/bal"] = p.bal
            out[f"{prefix}/{p.name}/abs_bal"] = p.abs_bal
            if p.grad_imbalance is not None:
                out[f"{prefix}/{p.name}/grad_imbalance"] = p.grad_imbalance
        out.update({f"{prefix}/total": self.total, f"{prefix}/mean_abs": self.mean_abs,
                    f"{prefix}/max_abs": self.max_abs})
        return out


def balancedness_report(model_or_pairs: Any) -> BalancednessReport:
    """Per-pair balancedness of a model (its active, trainable LoRA pairs, through
    :func:`optimlab.lora.find_lora_pairs`: names are ``"<module name>.<adapter>"``) or of given pairs
    (``LoRAPair`` s or ``(first, second)`` tuples). Raises ``ValueError`` saying what was found when there is none."""
    rows = []
    for fp in as_factor_pairs(model_or_pairs, owner="balancedness_report", trainable=False):
        bal = balancedness(fp.first, fp.second)
        rows.append(PairBalance(fp.name, bal, abs(bal), math.sqrt(_sq(fp.first)), math.sqrt(_sq(fp.second)),
                                grad_imbalance(fp.first, fp.second)))
    return BalancednessReport(tuple(rows))
