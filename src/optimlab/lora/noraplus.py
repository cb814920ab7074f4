"""NoRA+ : ScaledGD-type preconditioning of LoRA gradients (Li, Zhang, Mokhtari, He, "On the Crucial Role of
Initialization for Matrix Factorization", ICLR 2025, arXiv:2410.18965; the preconditioner of its LoRA experiments,
here in PEFT letters ΔW = s·B A, A ∈ ℝ^{r×d_in}, B ∈ ℝ^{d_out×r}).

Once per optimizer step, per pair, in float64, with λ = ``damping``:

    M_B = (BᵀB + λI)⁻¹,  M_A = (AAᵀ + λI)⁻¹,
    g_A ← M_B g_A / ‖M_B‖_F,   g_B ← g_B M_A / ‖M_A‖_F      (no division with ``normalize="none"``),

and, under preset ``"nora"``, at the first optimizer step g_A is left as is (the reference code's rule; with B = 0
then g_A = s·BᵀG = 0 anyway; PEFT's Riemannian map, preset ``"riemannian"``, has no such rule). With λ = 0 the pseudo-inverse replaces the inverse. Presets: ``"nora"`` (λ = 1e-6, Frobenius
normalisation: the authors' code, github.com/BingcongLi/NoRA, ``my_trainer.py``) and ``"riemannian"`` (λ = 1e-2,
no normalisation: the map of PEFT's ``create_riemannian_optimizer``, Zhang & Pilanci, arXiv:2402.02347, which uses a
pseudo-inverse; for λ > 0 the two agree up to rounding). Explicit ``damping``/``normalize`` override the preset.

Differences from the reference (not copied): it preconditions after every backward, on accumulated gradients (k
micro-batches apply it k times), before the trainer's gradient clipping, with an explicit inverse; here it runs once
inside the optimizer step (a base-step hook), and ``clip_after`` clips after it. Measured interaction: the Frobenius
normalisation gives the gradient a time-varying global scale that AdamW's long second-moment memory turns into a
smaller effective step; the preset is never changed silently. UNVERIFIED: the settings behind the paper's own tables
(only the authors' scripts were read).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimlab._validation import AnyOf, Constraint, Interval, Options
from optimlab.lora._lora_hooks import PairHookOptimizer, check_factory_class

__all__ = ["PRESETS", "NoRAPlus", "create_noraplus_optimizer", "noraplus_precondition"]

#: preset name -> (damping, normalize)
PRESETS = {"nora": (1e-6, "fro"), "riemannian": (1e-2, "none")}


def _inverse(G: Tensor, damping: float) -> Tensor:
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    if damping > 0:
        return torch.linalg.inv(G + damping * eye)
    return torch.linalg.pinv(G, hermitian=True)


def noraplus_precondition(A: Tensor, B: Tensor, gA: Tensor, gB: Tensor, *, damping: float, normalize: str,
                          first_step: bool = False) -> tuple[Tensor, Tensor]:
    """The NoRA+ map (module docstring) on one pair, as a pure function: returns the new (g_A, g_B) in float64.
    A (r×d_in), B (d_out×r), gradients of the same shapes."""
    a, b = A.detach().double(), B.detach().double()
    MB, MA = _inverse(b.T @ b, damping), _inverse(a @ a.T, damping)
    if normalize == "fro":
        MB, MA = MB / torch.linalg.matrix_norm(MB), MA / torch.linalg.matrix_norm(MA)
    new_a = gA.double() if first_step else MB @ gA.double()
    return new_a, gB.double() @ MA


class NoRAPlus(PairHookOptimizer):
    """NoRA+ over a constructed base optimizer (module docstring). No persistent state besides the step counter.

    Args:
        model_or_pairs: a model with LoRA layers or a list of :class:`~optimlab.lora.LoRAPair`.
        base: a constructed optimizer over (at least) every pair's A and B.
        preset: ``"nora"`` or ``"riemannian"``.
        damping: λ ≥ 0, or ``None`` for the preset's.
        normalize: ``"fro"``, ``"none"``, or ``None`` for the preset's.
        clip_after, nonfinite: as for :class:`~optimlab.lora.RefLoRA`.
    """

    _constraints: ClassVar[dict[str, Constraint]] = {
        **PairHookOptimizer._constraints,
        "preset": Options(*PRESETS),
        "damping": AnyOf(Options(None), Interval(0, math.inf, closed="left")),
        "normalize": Options(None, "fro", "none"),
    }

    def __init__(self, model_or_pairs: Any, base: Optimizer, *, preset: str = "nora", damping: float | None = None,
                 normalize: str | None = None, clip_after: float | None = None, nonfinite: str = "raise") -> None:
        super().__init__(model_or_pairs, base, clip_after=clip_after, nonfinite=nonfinite,
                         settings={"preset": preset, "damping": damping, "normalize": normalize})
        d, n = PRESETS[self.settings["preset"]]
        self.damping = d if self.settings["damping"] is None else self.settings["damping"]
        self.normalize = n if normalize is None else normalize
        self.skip_first_a = self.settings["preset"] == "nora"  # the reference's rule; PEFT's map has no such rule

    def _before(self) -> None:
        for pair in self.pairs:
            gA, gB = pair.A.grad, pair.B.grad
            if gA is None or gB is None:
                continue
            A, B = pair.matrices()
            ga, gb = noraplus_precondition(A, B, gA.reshape(A.shape), gB.reshape(B.shape), damping=self.damping,
                                           normalize=self.normalize,
                                           first_step=self.skip_first_a and self.k == 0)
            gA.copy_(ga.reshape(gA.shape).to(gA.dtype))
            gB.copy_(gb.reshape(gB.shape).to(gB.dtype))


def create_noraplus_optimizer(model: Any, optimizer_cls: type[Optimizer], *, lr: float, preset: str = "nora",
                              damping: float | None = None, normalize: str | None = None,
                              clip_after: float | None = None, nonfinite: str = "raise", **kwargs: Any) -> NoRAPlus:
    """PEFT-style factory: ``optimizer_cls(trainable parameters, lr=lr, **kwargs)`` wrapped in :class:`NoRAPlus`.
    Closure-only classes (LBFGS) raise ``ValueError``."""
    check_factory_class("create_noraplus_optimizer", optimizer_cls)
    base = optimizer_cls([p for p in model.parameters() if p.requires_grad], lr=lr, **kwargs)
    return NoRAPlus(model, base, preset=preset, damping=damping, normalize=normalize, clip_after=clip_after,
                    nonfinite=nonfinite)
