"""Plumbing shared by the LoRA gradient wrappers (:class:`~optimlab.lora.RefLoRA`, :class:`~optimlab.lora.NoRAPlus`).

The maths of those methods runs in hooks registered on the *base* optimizer (``register_step_pre_hook`` and
``register_step_post_hook``), so a direct ``base.step()`` (HF ``Trainer``, ``GradScaler``) does the same as
``wrapper.step()``; :meth:`PairHookOptimizer.detach` removes them. The real-step counter ``k`` counts completed base
steps only: a step skipped by ``nonfinite="skip"`` (or by ``GradScaler``, which then never calls ``step``) does
not advance it.

Non-finite gradients: ``wrapper.step()`` checks every gradient of the base's parameters *before* the base step, so
``nonfinite="skip"`` can skip the whole step (weights, base state and counters unchanged). A hook fired by a direct
``base.step()`` cannot cancel that step, so there a non-finite gradient in a pair always raises
``FloatingPointError`` naming the pair.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimlab._numerics import all_finite, global_norm
from optimlab._validation import AnyOf, Constraint, Interval, Options
from optimlab._wrapper import WrappedOptimizer
from optimlab.lora.pairs import LoRAPair, resolve_pairs

__all__ = ["CLIP", "PairHookOptimizer", "check_factory_class"]

CLIP = AnyOf(Options(None), Interval(0, math.inf, closed="neither"))


class PairHookOptimizer(WrappedOptimizer):
    """A :class:`~optimlab._wrapper.WrappedOptimizer` over the LoRA pairs of a model whose maths lives in base-step
    hooks. Subclasses implement :meth:`_before` (change the pair gradients; runs in the pre-step hook) and may
    implement :meth:`_after` (runs in the post-step hook). ``self.k`` is the number of real steps taken before the
    current one. Hyperparameters are wrapper-level (not per group); ``clip_after=c`` rescales the gradients of every
    base parameter so that their global norm is at most c *after* the preconditioning (§ pitfall L7: a trainer clips
    the raw gradients, so the preconditioned update would be unbounded)."""

    _constraints: ClassVar[dict[str, Constraint]] = {**WrappedOptimizer._constraints, "clip_after": CLIP}

    def __init__(self, model_or_pairs: Any, base: Optimizer, *, clip_after: float | None = None,
                 nonfinite: str = "raise", settings: dict[str, Any] | None = None) -> None:
        owner = type(self).__name__
        values = self._check({"clip_after": clip_after, **(settings or {})})
        super().__init__(None, base=base, defaults={}, nonfinite=nonfinite)
        self._all_pairs: list[LoRAPair] = resolve_pairs(model_or_pairs, owner=owner)
        held = self._held()
        partial = [f"{p.qualified_name}.{w}" for p in self._all_pairs for w, t, o in (("A", p.A, p.B), ("B", p.B, p.A))
                   if id(t) not in held and id(o) in held]
        absent = [p.qualified_name for p in self._all_pairs if id(p.A) not in held and id(p.B) not in held]
        if partial or len(absent) == len(self._all_pairs):
            missing = partial or [f"{n}.A" for n in absent] + [f"{n}.B" for n in absent]
            raise ValueError(f"{owner}: {len(missing)} LoRA factor(s) are not parameters of base: {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}; build base over the model's trainable parameters")
        if absent:
            warnings.warn(f"{owner}: {len(absent)} LoRA pair(s) are not in base yet and are left alone until "
                          f"add_param_group adds both factors: {absent[:5]}", stacklevel=3)
        self.pairs: list[LoRAPair] = []
        self._refresh()
        self.clip_after = values.pop("clip_after")
        self.settings = values
        self.k = 0
        self.skipped_pairs: dict[str, int] = {}
        self._checked = False
        self._handles = [base.register_step_pre_hook(self._pre_hook), base.register_step_post_hook(self._post_hook)]

    def _held(self) -> set[int]:
        return {id(p) for g in self.base.param_groups for p in g["params"]} if hasattr(self, "base") else set()

    def _refresh(self) -> None:
        """The pairs acted on: those whose two factors are parameters of base."""
        held = self._held()
        self.pairs = [p for p in self._all_pairs if id(p.A) in held and id(p.B) in held]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As the base's; pairs whose two factors are now in base join the method."""
        super().add_param_group(param_group)
        if hasattr(self, "_all_pairs"):
            self._refresh()

    # ------------------------------------------------------------------ extension points
    def _before(self) -> None:
        """Change the pairs' gradients in place (pre-step hook)."""

    def _after(self) -> None:
        """Act after the base step (post-step hook), before ``k`` advances."""

    # ------------------------------------------------------------------ the step
    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _first_nonfinite(self) -> str:
        names = {id(t): f"{pair.qualified_name}.{w}" for pair in self.pairs for w, t in (("A", pair.A), ("B", pair.B))}
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    return f"LoRA pair factor {names[id(p)]}" if id(p) in names else f"parameter {pi} of group {gi}"
        return "a parameter"

    def _message(self) -> str:
        return f"{type(self).__name__}: non-finite gradient in {self._first_nonfinite()} at real step {self.k}"

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step: optional ``closure`` (forward and backward), the finiteness check of every gradient,
        then ``base.step()`` (whose hooks apply the method)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not all_finite([p.grad for p in self._params()]):
            self._nonfinite(self._message())  # raises, or counts the skipped step
            return loss
        self._checked = True
        try:
            self.base.step()
        finally:
            self._checked = False
        return loss

    def _pre_hook(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        with torch.no_grad():
            if not self._checked:  # a direct base.step(): cannot skip, so a non-finite pair gradient raises
                grads = [t.grad for pair in self.pairs for t in (pair.A, pair.B) if t.grad is not None]
                if not all_finite(grads):
                    raise FloatingPointError(self._message() + " (a direct base.step() cannot skip the step)")
            self._before()
            if self.clip_after is not None:
                grads = [p.grad for p in self._params()]
                norm = float(global_norm(grads))
                if norm > self.clip_after:
                    torch._foreach_mul_(grads, self.clip_after / norm)

    def _post_hook(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        with torch.no_grad():
            self._after()
        self.k += 1

    def detach(self) -> None:
        """Remove the hooks from ``base``: afterwards ``base.step()`` is the plain base step."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def _skip_pair(self, pair: LoRAPair) -> None:
        self.skipped_pairs[pair.qualified_name] = self.skipped_pairs.get(pair.qualified_name, 0) + 1

    # ------------------------------------------------------------------ checkpoints
    def _wrapper_state(self) -> dict[str, Any]:
        return {"step": self.k, "skipped_pairs": dict(self.skipped_pairs)}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        self.k = int(state.get("step", self.k))
        self.skipped_pairs = dict(state.get("skipped_pairs", self.skipped_pairs))

    def __repr__(self) -> str:
        own = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({own}, pairs={len(self.pairs)}, base={type(self.base).__name__})"


def check_factory_class(owner: str, optimizer_cls: Any) -> None:
    """Factories accept any ``torch.optim.Optimizer`` subclass except closure-only ones (LBFGS)."""
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, Optimizer)):
        raise ValueError(f"{owner}: optimizer_cls must be a torch.optim.Optimizer subclass, got {optimizer_cls!r}")
    if issubclass(optimizer_cls, torch.optim.LBFGS):
        raise ValueError(f"{owner}: optimizer_cls must not be {optimizer_cls.__name__}: it needs its own closure, "
                         "which the LoRA hooks cannot give; use SGD, Adam, AdamW, ...")
    if issubclass(optimizer_cls, WrappedOptimizer):
        raise ValueError(f"{owner}: optimizer_cls must be a plain optimizer, not the wrapper {optimizer_cls.__name__}")
