"""RefLoRA and RefLoRA-S: refactored low-rank adaptation (Zhang, Li, Giannakis, NeurIPS 2025, arXiv:2505.18877).

Letters are PEFT's: ΔW = s·B A with A ∈ ℝ^{r×d_in}, B ∈ ℝ^{d_out×r}. (The paper writes ΔW = ABᵀ: its A is our B,
its B is our Aᵀ, and its metric S̃ is our S⁻¹.) For any invertible P the pair (PᵀA, B P⁻ᵀ) has the same product,
and one gradient step on the refactored pair, mapped back, is the preconditioned step

    A⁺ = A − η S⁻¹ ∇_A,    B⁺ = B − η ∇_B S,    S = P Pᵀ ≻ 0.

The optimal S* (the paper's Theorem 3: it minimises the relaxed upper bound on the next loss) is the unique SPD
solution of S (A Aᵀ) S = BᵀB, the matrix geometric mean of (AAᵀ)⁻¹ and BᵀB; the refactored pair is then balanced,
A′A′ᵀ = B′ᵀB′ = diag(σ(BA)), and ‖A′‖²_F + ‖B′‖²_F = 2‖BA‖_*. The step depends on ΔW = BA only (Theorem 6,
"consistency"); with s = 1 and plain GD: ΔW⁺ = ΔW − η[(ΔWΔWᵀ)^{½}G + G(ΔWᵀΔW)^{½}] + η²GΔWᵀG.

S and S⁻¹ come from the two r×r Grams only (no d×d matrix): (λ_A, V_A) = eigh(AAᵀ), σ_A = √λ_A;
MᵀM = diag(σ_A)V_Aᵀ(BᵀB)V_A diag(σ_A) = V_M diag(σ_M²) V_Mᵀ (σ_M = σ(BA)); L = V_A diag(1/(σ_A+τ_A)) V_M,
S = L diag(σ_M) Lᵀ; K = V_A diag(σ_A) V_M, S⁻¹ = K diag(1/(σ_M+τ_M)) Kᵀ, with *relative* floors τ = ε·max σ
(ε = ``rel_eps``, default r·eps(compute_dtype)), so S(cA, B) = S(A, B)/c exactly (an absolute floor breaks this
when ‖A‖ is small). Pairs of equal r share one batched ``eigh``.

What was checked (authors' code, github.com/zhangyilang/RefLoRA, and the paper's abstract; the theorem statements
rest on a secondary summary of arXiv v3 and remain UNVERIFIED): the matrix mode preconditions the gradients in a
pre-step hook and never refactors the stored factors; the scalar mode (RefLoRA-S) rescales A and B to equal
Frobenius norms after the step and rescales Adam's moments; both have a warm-up (100 steps in the reference GLUE and
LLaMA scripts). Differences from the reference: relative instead of absolute floors; ``max_exp_avg_sq`` and SGD
momentum are rescaled too; ``warmup_steps=0`` with a zero factor raises instead of re-initialising (which would
edit W0); the scalar warm-up counts real steps only (pass ``warmup_steps=w-1`` to match the reference's w).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimlab._validation import AnyOf, Constraint, Interval, Options, check
from optimlab.lora._lora_hooks import PairHookOptimizer, check_factory_class
from optimlab.lora.pairs import LoRAPair

__all__ = ["SCALAR_BASES", "RefLoRA", "balanced_metric", "create_reflora_optimizer", "gram_gap", "refactor_"]

#: Base optimizers whose state RefLoRA-S knows how to rescale (Adam, AdamW, NAdam moments; SGD momentum).
SCALAR_BASES = (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.SGD)
_DTYPES = Options(torch.float32, torch.float64)
_REL_EPS = AnyOf(Options(None), Interval(0, 1, closed="neither"))


def _floor(rel_eps: float | None, r: int, dtype: torch.dtype) -> float:
    return r * torch.finfo(dtype).eps if rel_eps is None else float(rel_eps)


def _spectra(GA: Tensor, GB: Tensor, rel_eps: float | None) -> tuple[Tensor, ...]:
    """From batched Grams AAᵀ and BᵀB (…×r×r): V_A, σ_A, τ_A, V_M, σ_M, τ_M (the decomposition in the module
    docstring). Negative eigenvalues from rounding are clamped to 0, so no NaN appears."""
    r = GA.shape[-1]
    eps = _floor(rel_eps, r, GA.dtype)
    lam_a, VA = torch.linalg.eigh(GA)
    sa = lam_a.clamp_min(0).sqrt()
    ta = eps * sa.amax(dim=-1, keepdim=True)
    MtM = sa.unsqueeze(-1) * (VA.mT @ GB @ VA) * sa.unsqueeze(-2)
    lam_m, VM = torch.linalg.eigh(MtM)
    sm = lam_m.clamp_min(0).sqrt()
    tm = eps * sm.amax(dim=-1, keepdim=True)
    return VA, sa, ta, VM, sm, tm


def _metric_from_grams(GA: Tensor, GB: Tensor, rel_eps: float | None) -> tuple[Tensor, Tensor]:
    VA, sa, ta, VM, sm, tm = _spectra(GA, GB, rel_eps)
    L = (VA / (sa + ta).unsqueeze(-2)) @ VM
    K = (VA * sa.unsqueeze(-2)) @ VM
    S = (L * sm.unsqueeze(-2)) @ L.mT
    S_inv = (K / (sm + tm).unsqueeze(-2)) @ K.mT
    return S, S_inv


def _grams(A: Tensor, B: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    a, b = A.detach().to(dtype), B.detach().to(dtype)
    return a @ a.mT, b.mT @ b


def _check_factors(owner: str, A: Tensor, B: Tensor) -> None:
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[1]:
        raise ValueError(f"{owner}: A must be r×d_in and B d_out×r with the same r, got A {tuple(A.shape)} and "
                         f"B {tuple(B.shape)}")


def balanced_metric(A: Tensor, B: Tensor, *, rel_eps: float | None = None,
                    dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """``(S, S_inv)``: the SPD solution of S (AAᵀ) S = BᵀB and its inverse (RefLoRA's optimal metric, the paper's
    Theorem 3 in PEFT letters), computed in ``dtype`` from the r×r Grams with relative floors ``rel_eps`` (default
    r·eps(dtype)). Both are returned in ``dtype``. A (r×d_in), B (d_out×r)."""
    _check_factors("balanced_metric", A, B)
    check(_REL_EPS, rel_eps, "rel_eps", owner="balanced_metric")
    check(_DTYPES, dtype, "dtype", owner="balanced_metric")
    return _metric_from_grams(*_grams(A, B, dtype), rel_eps)


@torch.no_grad()
def refactor_(A: Tensor, B: Tensor, *, rel_eps: float | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """Balanced refactoring in place: A ← PᵀA, B ← B P⁻ᵀ with P = V_A diag(1/σ_A) V_M diag(σ_M^{½}), so that
    BA is unchanged and A′A′ᵀ = B′ᵀB′ = diag(σ(BA)) (arXiv:2505.18877, PEFT letters). Returns P (in ``dtype``).
    Factors of rank < r are handled by the relative floors (no NaN; the balance then holds on the range)."""
    _check_factors("refactor_", A, B)
    check(_REL_EPS, rel_eps, "rel_eps", owner="refactor_")
    VA, sa, ta, VM, sm, tm = _spectra(*_grams(A, B, dtype), rel_eps)
    root = sm.sqrt()
    P = ((VA / (sa + ta)) @ VM) * root
    P_inv_T = ((VA * sa) @ VM) / (sm + tm).sqrt()
    A.copy_((P.mT @ A.to(dtype)).to(A.dtype))
    B.copy_((B.to(dtype) @ P_inv_T).to(B.dtype))
    return P


def gram_gap(pair_or_A: LoRAPair | Tensor, B: Tensor | None = None) -> float:
    """‖AAᵀ − BᵀB‖_F / (‖AAᵀ‖_F + ‖BᵀB‖_F) in float64: 0 for a balanced pair, 1 when one factor is 0 (nan when
    both are). Takes a :class:`~optimlab.lora.LoRAPair` or the two factors."""
    if isinstance(pair_or_A, LoRAPair):
        A, B = pair_or_A.matrices()
    else:
        A = pair_or_A
        if B is None:
            raise ValueError("gram_gap: pass a LoRAPair, or both factors A and B")
    _check_factors("gram_gap", A, B)
    GA, GB = _grams(A, B, torch.float64)
    den = float(torch.linalg.matrix_norm(GA) + torch.linalg.matrix_norm(GB))
    return float(torch.linalg.matrix_norm(GA - GB)) / den if den > 0 else math.nan


def _is_zero(t: Tensor) -> bool:
    return not bool(t.detach().ne(0).any())


class RefLoRA(PairHookOptimizer):
    """RefLoRA (``mode="matrix"``) and RefLoRA-S (``mode="scalar"``) over a constructed base optimizer.

    * matrix: a pre-step hook sets g_A ← S⁻¹ g_A and g_B ← g_B S with S = S*(A, B) (module docstring); the
      stored factors are never refactored (Adam's elementwise moments are not equivariant under P). With plain
      SGD (no momentum, no weight decay) this is exactly refactor-then-step.
    * scalar: a post-step hook sets p = √(‖B‖_F/‖A‖_F), A ← pA, B ← B/p (BA unchanged, equal norms) and rescales the
      base state of the pair (a parameter scaled by p has its gradient scaled by 1/p): Adam/AdamW/NAdam ``exp_avg``
      ÷p, ``exp_avg_sq`` and ``max_exp_avg_sq`` ÷p² for A (×p, ×p² for B); SGD ``momentum_buffer`` ÷p for A, ×p for
      B. Other base classes raise ``ValueError``.

    Warm-up: the hooks act only at real steps k ≥ ``warmup_steps`` with (k − warmup_steps) % ``interval`` = 0. With
    B = 0 (PEFT's init, NoRA) S* = 0, so a warm-up is required: ``warmup_steps=0`` with a zero factor raises; a
    factor still zero after warm-up skips that pair for the step (counted in ``skipped_pairs``).

    Args:
        model_or_pairs: a model with LoRA layers (PEFT or :class:`~optimlab.lora.LoRALinear`) or a list of pairs.
        base: a constructed optimizer over (at least) every pair's A and B.
        mode: ``"matrix"`` or ``"scalar"``.
        warmup_steps: integer ≥ 0; interval: integer ≥ 1.
        rel_eps: relative eigenvalue floor in (0, 1), default r·eps(compute_dtype).
        compute_dtype: float64 (default) or float32; results are cast back to the gradients' dtype.
        clip_after: clip the global gradient norm to this value after preconditioning (or ``None``).
        nonfinite: ``"raise"`` or ``"skip"`` (see :mod:`optimlab.lora._lora_hooks`).
    """

    _constraints: ClassVar[dict[str, Constraint]] = {
        **PairHookOptimizer._constraints,
        "mode": Options("matrix", "scalar"),
        "warmup_steps": Interval(0, math.inf, closed="left", integer=True),
        "interval": Interval(1, math.inf, closed="left", integer=True),
        "rel_eps": _REL_EPS,
        "compute_dtype": _DTYPES,
    }

    def __init__(self, model_or_pairs: Any, base: Optimizer, *, mode: str = "matrix", warmup_steps: int = 100,
                 interval: int = 1, rel_eps: float | None = None, compute_dtype: torch.dtype = torch.float64,
                 clip_after: float | None = None, nonfinite: str = "raise") -> None:
        settings = {"mode": mode, "warmup_steps": warmup_steps, "interval": interval, "rel_eps": rel_eps,
                    "compute_dtype": compute_dtype}
        if mode == "scalar" and isinstance(base, Optimizer) and not isinstance(base, SCALAR_BASES):
            raise ValueError(f"RefLoRA: mode='scalar' must rescale the base optimizer's state and knows how for "
                             f"{[c.__name__ for c in SCALAR_BASES]}, got base of class {type(base).__name__}; use "
                             "mode='matrix' (no state change) or one of those bases")
        super().__init__(model_or_pairs, base, clip_after=clip_after, nonfinite=nonfinite, settings=settings)
        self.mode, self.warmup_steps, self.interval = mode, self.settings["warmup_steps"], self.settings["interval"]
        self.rel_eps, self.compute_dtype = self.settings["rel_eps"], compute_dtype
        if self.warmup_steps == 0:
            zero = [p.qualified_name for p in self.pairs if _is_zero(p.A) or _is_zero(p.B)]
            if zero:
                raise ValueError(f"RefLoRA: warmup_steps must be >= 1 when a factor is zero (PEFT and NoRA start "
                                 f"with B = 0, where S* = 0 would freeze B), got warmup_steps=0 with zero factors in "
                                 f"{zero[:5]}; pass warmup_steps >= 1 (the reference scripts use 100)")

    def _acts(self) -> bool:
        k = self.k - self.warmup_steps
        return k >= 0 and k % self.interval == 0

    def _live_pairs(self, need_grad: bool) -> tuple[list[LoRAPair], list[tuple[float, float]]]:
        """The pairs to act on (with gradients when ``need_grad``) and their factor norms (one host sync); pairs
        with a zero factor are skipped and counted."""
        cand = [p for p in self.pairs if not need_grad or (p.A.grad is not None and p.B.grad is not None)]
        if not cand:
            return [], []
        norms = torch.stack([torch.linalg.vector_norm(t.detach(), dtype=torch.float64)
                             for p in cand for t in (p.A, p.B)]).tolist()
        live, kept = [], []
        for i, pair in enumerate(cand):
            na, nb = norms[2 * i], norms[2 * i + 1]
            if na == 0 or nb == 0:
                self._skip_pair(pair)
                continue
            live.append(pair)
            kept.append((na, nb))
        return live, kept

    def metrics(self, pairs: list[LoRAPair]) -> list[tuple[Tensor, Tensor]]:
        """``(S, S_inv)`` for each pair in ``compute_dtype``; pairs of equal r and device share one batched
        ``eigh``."""
        out: list[Any] = [None] * len(pairs)
        buckets: dict[tuple[int, torch.device], list[int]] = {}
        for i, pair in enumerate(pairs):
            buckets.setdefault((pair.r, pair.A.device), []).append(i)
        for idx in buckets.values():
            grams = [_grams(*pairs[i].matrices(), self.compute_dtype) for i in idx]
            S, S_inv = _metric_from_grams(torch.stack([g[0] for g in grams]), torch.stack([g[1] for g in grams]),
                                          self.rel_eps)
            for j, i in enumerate(idx):
                out[i] = (S[j], S_inv[j])
        return out

    def _before(self) -> None:
        if self.mode != "matrix" or not self._acts():
            return
        pairs, _ = self._live_pairs(need_grad=True)
        for pair, (S, S_inv) in zip(pairs, self.metrics(pairs)):
            gA, gB = pair.A.grad, pair.B.grad
            a2 = gA.reshape(gA.shape[0], -1).to(self.compute_dtype)
            b2 = gB.reshape(gB.shape[0], -1).to(self.compute_dtype)
            gA.copy_((S_inv @ a2).reshape(gA.shape).to(gA.dtype))
            gB.copy_((b2 @ S).reshape(gB.shape).to(gB.dtype))

    def _after(self) -> None:
        if self.mode != "scalar" or not self._acts():
            return
        tensors: list[Tensor] = []
        factors: list[float] = []
        for pair, (na, nb) in zip(*self._live_pairs(need_grad=False)):
            p = math.sqrt(nb / na)
            for t, f in ((pair.A, p), (pair.B, 1.0 / p)):  # the parameter, then its state (gradient scales by 1/f)
                tensors.append(t)
                factors.append(f)
                state = self.base.state.get(t, {})
                for key, power in (("exp_avg", 1), ("momentum_buffer", 1), ("exp_avg_sq", 2), ("max_exp_avg_sq", 2)):
                    buf = state.get(key)
                    if isinstance(buf, Tensor) and buf.shape == t.shape:
                        tensors.append(buf)
                        factors.append(f ** -power)
        if tensors:  # one multi-tensor kernel instead of several small ops per pair
            torch._foreach_mul_(tensors, factors)

    def diagnostics(self) -> dict[str, dict[str, float]]:
        """Per pair: balancedness ½(‖B‖²_F − ‖A‖²_F), :func:`gram_gap`, ‖S‖_F (nan for a zero factor) and the skip
        count, so a user can see whether refactoring is active."""
        out = {}
        for pair in self.pairs:
            A, B = pair.matrices()
            zero = _is_zero(pair.A) or _is_zero(pair.B)
            s_norm = math.nan if zero else float(torch.linalg.matrix_norm(self.metrics([pair])[0][0]))
            out[pair.qualified_name] = {
                "balancedness": 0.5 * float(B.detach().double().square().sum() - A.detach().double().square().sum()),
                "gram_gap": gram_gap(pair), "S_norm": s_norm,
                "skipped": float(self.skipped_pairs.get(pair.qualified_name, 0))}
        return out


def create_reflora_optimizer(model: Any, optimizer_cls: type[Optimizer], *, lr: float, mode: str = "matrix",
                             warmup_steps: int = 100, interval: int = 1, rel_eps: float | None = None,
                             compute_dtype: torch.dtype = torch.float64, clip_after: float | None = None,
                             nonfinite: str = "raise", **kwargs: Any) -> RefLoRA:
    """PEFT-style factory: ``optimizer_cls`` over the model's trainable parameters (``lr`` and ``**kwargs`` go to
    it), wrapped in :class:`RefLoRA`. Closure-only classes (LBFGS) raise ``ValueError``."""
    check_factory_class("create_reflora_optimizer", optimizer_cls)
    params = [p for p in model.parameters() if p.requires_grad]
    base = optimizer_cls(params, lr=lr, **kwargs)
    return RefLoRA(model, base, mode=mode, warmup_steps=warmup_steps, interval=interval, rel_eps=rel_eps,
                   compute_dtype=compute_dtype, clip_after=clip_after, nonfinite=nonfinite)
