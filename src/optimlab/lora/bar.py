"""BAR, balancedness-aware regularisation: nBAR and oBAR over any base optimizer.

B. Li, L. Zhang, N. He, *Implicit Regularization of Sharpness-Aware Minimization for Scale-Invariant Problems*,
NeurIPS 2024, arXiv:2410.14802. SAM drives the balancedness bal = ½(‖X‖² − ‖Y‖²) of scale-invariant pairs (LoRA's
``lora_B``/``lora_A``) towards 0 (Thms 2–3); BAR does this explicitly, in one pass, per pair (Algs 2 and 3)::

    g = ∇L(w)                                          # the ordinary backward pass
    for each pair (X, Y), c = α_t·lr(group):           # nBAR: compare ‖g_X‖, ‖g_Y‖; oBAR: ‖X‖, ‖Y‖
        X ← (1 ± c_X) X,  Y ← (1 ∓ c_Y) Y             # see optimlab.lora.bar.bar_factors
    w ← BaseStep(w, g)                                 # with the gradients computed before the rescale

α_t = μ0·m(t) with m from ``schedule`` (our reading: the paper names μ0 only in its hyperparameter tables). Per-group
``mu0`` overrides are allowed (c_X uses X's group). Base-optimizer state (momentum, Adam moments) is not rescaled.
Cost: one norm per tensor in foreach kernels, one host sync, one in-place multiply per factor; no persistent state
(fp16/bf16 factors with ``low_precision="accumulate"`` keep one pending fp32 multiplier each). Because the rescale
runs inside :meth:`BAR.step`, a step that ``torch.amp.GradScaler`` skips skips BAR too, and gradient accumulation
gets one rescale per optimizer step. The paper's code repository holds no implementation: everything here follows
its text (Algs 2–3, §5, Apdx D).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch.optim import Optimizer

from optimlab._validation import AnyOf, Constraint, Instance, Interval, Options
from optimlab._wrapper import WrappedOptimizer
from optimlab.lora._bar_functional import (
    SCHEDULES,
    alpha_schedule,
    apply_factors,
    bar_factors,
    bar_rescale_,
    check_c,
    per_tensor_norms,
    rounds_to_one,
)
from optimlab.lora._bar_hf import BalancednessLogger, BARCallback, create_bar_optimizer
from optimlab.lora._bar_pairs import as_factor_pairs
from optimlab.lora.balancedness import BalancednessReport, balancedness_report

__all__ = ["BAR", "BARCallback", "BalancednessLogger", "alpha_schedule", "bar_factors", "bar_rescale_", "create_bar_optimizer"]

DEAD_ADAPTER_PRODUCT = 0.5  # warn when the schedule alone shrinks a factor below half (spec pitfall 2)


class BAR(WrappedOptimizer):
    """nBAR / oBAR over a constructed base optimizer (arXiv:2410.14802, Algs 2–3).

    Args:
        base: any ``torch.optim.Optimizer`` (SGD, AdamW, LoRA+ groups, ...); ``opt.param_groups is base.param_groups``.
        pairs: ``LoRAPair`` s (from :func:`optimlab.lora.find_lora_pairs`; first = ``lora_B``, second = ``lora_A``),
            ``(first, second)`` tensor tuples of any scale-invariant pair, or a model (its LoRA pairs). Every tensor
            must be optimised by ``base`` and require grad; no tensor may be in two pairs.
        variant: ``"nbar"`` (gradient-norm test, Alg. 2) or ``"obar"`` (weight-norm test, Alg. 3).
        mu0: μ0 ≥ 0, the initial strength α_0 (per-group override allowed). ``mu0=0`` is the base optimizer exactly.
        schedule: ``"linear"``, ``"cosine"``, ``"constant"`` or a callable ``t -> m(t)``; α_t = μ0·m(t).
        total_steps: T of the decaying schedules (required for them).
        nonfinite: a non-finite gradient (any tensor of ``base``) or weight norm: ``"raise"`` ``FloatingPointError``
            before any change, or ``"skip"`` the whole step (t unchanged, ``skipped_steps`` += 1).
        low_precision: fp16/bf16 factors where 1 ± c rounds to 1: ``"warn"`` once, ``"accumulate"`` (a pending fp32
            multiplier per tensor, applied once it is representable), or ``"ignore"``.

    ``state_dict()["wrapper"]`` holds ``t``, ``mu0``, ``variant``, ``schedule`` (its name, or ``"callable"``),
    ``total_steps`` and ``skipped_steps`` besides the wrapper's groups.
    """

    _constraints: ClassVar[dict[str, Constraint]] = {
        **WrappedOptimizer._constraints,
        "mu0": Interval(0, math.inf, closed="left"),
        "variant": Options("nbar", "obar"),
        "schedule": AnyOf(Options(*SCHEDULES), Instance(callable)),
        "total_steps": AnyOf(Options(None), Interval(1, None, integer=True)),
        "low_precision": Options("warn", "accumulate", "ignore"),
    }

    def __init__(self, base: Optimizer, pairs: Any, *, variant: str = "nbar", mu0: float = 1.0,
                 schedule: str | Callable[[int], float] = "linear", total_steps: int | None = None,
                 nonfinite: str = "raise", low_precision: str = "warn") -> None:
        owner = type(self).__name__
        opts = self._check({"variant": variant, "schedule": schedule, "total_steps": total_steps,
                            "low_precision": low_precision})
        super().__init__(None, base=base, defaults={"mu0": mu0}, nonfinite=nonfinite)
        self.variant, self.schedule = opts["variant"], opts["schedule"]
        self.total_steps, self.low_precision = opts["total_steps"], opts["low_precision"]
        self._multiplier = alpha_schedule(self.schedule, 1.0, self.total_steps)  # raises if T is missing
        self._pairs = as_factor_pairs(pairs, owner=owner)
        in_base = {id(p) for g in self.param_groups for p in g["params"]}
        for fp in self._pairs:
            for t, n in ((fp.first, fp.first_name), (fp.second, fp.second_name)):
                if id(t) not in in_base:
                    raise ValueError(f"{owner}: tensor {n!r} is not optimised by base (pairs must be tensors in "
                                     f"base.param_groups; {len(in_base)} tensors are)")
        self.t = 0
        self._warned_low_precision = False
        self._warn_dead_adapter()

    # ---------------------------------------------------------------- schedule
    def alpha(self, t: int | None = None) -> float:
        """α_t = μ0·m(t) with the default ``mu0`` (at the current step when ``t`` is None)."""
        return self.defaults["mu0"] * float(self._multiplier(self.t if t is None else t))

    def _warn_dead_adapter(self) -> None:
        """Pitfall: at PEFT init lora_B = 0, so g_A = 0 and nBAR shrinks A; Π_t(1 − c_t) < ½ may kill the adapter."""
        if self.total_steps is None:
            return
        lrs = [g["mu0"] * float(g["lr"]) for g in self.param_groups if "lr" in g]
        c0 = max(lrs, default=0.0)
        if c0 <= 0:
            return
        log_prod = 0.0
        for t in range(self.total_steps):
            c = c0 * float(self._multiplier(t))
            if c >= 1:
                return  # reported at step time
            log_prod += math.log1p(-c)
        if math.exp(log_prod) < DEAD_ADAPTER_PRODUCT:
            warnings.warn(f"BAR: the schedule can shrink a factor by prod_t(1 - c_t) = {math.exp(log_prod):.3g} < "
                          f"{DEAD_ADAPTER_PRODUCT} over {self.total_steps} steps (c_t = mu0*m(t)*lr, largest group); "
                          "at PEFT init (lora_B = 0, so g_A = 0) nBAR keeps shrinking lora_A and the adapter can "
                          "stall at the saddle A = B = 0: lower mu0", RuntimeWarning, stacklevel=3)

    # ---------------------------------------------------------------- the step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run ``closure`` (if given), rescale every pair (nBAR/oBAR), then take the base step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._rescale():
            self.base.step()
            self.t += 1
        return loss

    def _rescale(self) -> bool:
        """The rescale phase: False when the step is skipped (``nonfinite="skip"``)."""
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        index = {id(g): i for i, g in enumerate(grads)}
        active = [fp for fp in self._pairs if fp.first.grad is not None or fp.second.grad is not None]
        weights = [t for fp in active for t in (fp.first, fp.second)] if self.variant == "obar" else []
        norms = per_tensor_norms(grads + weights).tolist() if grads or weights else []  # the one host sync
        if not all(math.isfinite(v) for v in norms):
            self._nonfinite(f"BAR: non-finite {'gradient' if any(not math.isfinite(v) for v in norms[:len(grads)]) else 'weight'} "
                            "norm; weights and state left unchanged")
            return False
        m = float(self._multiplier(self.t))
        plan = []
        for k, fp in enumerate(active):
            gx, gy = group_of[id(fp.first)], group_of[id(fp.second)]
            ax, ay = gx["mu0"] * m, gy["mu0"] * m
            lx, ly = float(gx["lr"]), float(gy["lr"])
            cx, cy = ax * lx, ay * ly
            check_c(cx, ax, lx, fp.first_name, "BAR")
            check_c(cy, ay, ly, fp.second_name, "BAR")
            if cx == 0 and cy == 0:
                continue
            if self.variant == "nbar":
                nx = norms[index[id(fp.first.grad)]] if fp.first.grad is not None else 0.0
                ny = norms[index[id(fp.second.grad)]] if fp.second.grad is not None else 0.0
            else:
                nx, ny = norms[len(grads) + 2 * k], norms[len(grads) + 2 * k + 1]
            sx, sy = bar_factors(nx, ny, cx, cy, self.variant)
            plan += [(fp.first, sx, cx, fp.first_name), (fp.second, sy, cy, fp.second_name)]
        plain_t, plain_f = [], []
        for t, f, c, name in plan:
            if t.dtype in (torch.float16, torch.bfloat16) and self.low_precision == "accumulate":
                self._accumulate(t, f)
                continue
            if rounds_to_one(c, t.dtype) and self.low_precision == "warn" and not self._warned_low_precision:
                self._warned_low_precision = True
                warnings.warn(f"BAR: 1 ± c = 1 ± {c:.3g} rounds to 1 in {t.dtype} for {name!r}: the rescale does "
                              "nothing; keep the adapters in float32 or pass low_precision='accumulate'",
                              RuntimeWarning, stacklevel=3)
            plain_t.append(t)
            plain_f.append(f)
        apply_factors(plain_t, plain_f)
        return True

    def _accumulate(self, t: torch.Tensor, factor: float) -> None:
        """Fold ``factor`` into the tensor's pending fp32 multiplier; apply it once 1 ± δ is representable."""
        state = self.state[t]
        pending = float(torch.tensor(state.get("bar_pending", 1.0) * factor, dtype=torch.float32))
        if abs(pending - 1.0) > torch.finfo(t.dtype).eps / 2:
            t.mul_(pending)
            pending = 1.0
        state["bar_pending"] = pending

    # ---------------------------------------------------------------- reports and checkpoints
    def balancedness(self) -> BalancednessReport:
        """The per-pair balancedness report of this optimizer's pairs."""
        return balancedness_report(self._pairs)

    def _wrapper_state(self) -> dict[str, Any]:
        return {"t": self.t, "mu0": self.defaults["mu0"], "variant": self.variant,
                "schedule": self.schedule if isinstance(self.schedule, str) else "callable",
                "total_steps": self.total_steps}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        self.t = int(state.get("t", self.t))

    def __repr__(self) -> str:
        sched = self.schedule if isinstance(self.schedule, str) else "callable"
        return (f"BAR(variant={self.variant!r}, mu0={self.defaults['mu0']!r}, schedule={sched!r}, "
                f"total_steps={self.total_steps!r}, pairs={len(self._pairs)}, base={type(self.base).__name__})")
