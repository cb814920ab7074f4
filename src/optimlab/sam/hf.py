"""Sharpness-aware training inside a Hugging Face ``transformers.Trainer`` (transformers is imported lazily).

Usage::

    from transformers import Trainer
    from optimlab.sam.hf import SAMTrainerMixin

    class SAMTrainer(SAMTrainerMixin, Trainer):
        sam_class = VaSSO                       # default SAM
        sam_kwargs = {"rho": 0.05, "theta": 0.9}

The Trainer keeps its own optimizer and scheduler (they are the *base*); each ``training_step`` runs pass 1 at w,
perturbs to w + ε with the wrapper's ``first_step``, runs pass 2 at w + ε on the same inputs and restores w exactly,
leaving the pass-2 gradient in ``.grad``. The Trainer then clips it and steps its optimizer as usual, so the update
is BaseStep(w, ∇L(w + ε)) — SAM. Gradient accumulation would perturb per micro-batch (m-SAM, not SAM), so
``gradient_accumulation_steps`` must be 1.
"""

from __future__ import annotations

from typing import Any

from optimlab.sam.base import SharpnessAware
from optimlab.sam.sam import SAM


class SAMTrainerMixin:
    """Mixin placed before ``transformers.Trainer`` that turns every training step into a two-pass SAM step."""

    sam_class: type[SharpnessAware] = SAM
    sam_kwargs: dict[str, Any] = {"rho": 0.05}  # noqa: RUF012 - a class-level default, copied before use

    def _sam_wrapper(self, model) -> SharpnessAware:
        base = getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate wraps the torch optimizer
        sam = getattr(self, "_optimlab_sam", None)
        if sam is None or sam.base is not base:
            kwargs = dict(self.sam_kwargs)
            kwargs.setdefault("model", model)
            sam = self.sam_class(base=base, **kwargs)
            self._optimlab_sam = sam
        return sam

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.args.gradient_accumulation_steps != 1:
            raise ValueError("SAMTrainerMixin needs gradient_accumulation_steps=1: accumulating micro-batches "
                             f"would perturb per micro-batch (m-SAM); got {self.args.gradient_accumulation_steps}")
        sam = self._sam_wrapper(model)
        loss = super().training_step(model, inputs, num_items_in_batch)  # pass 1: ∇L(w) in .grad
        sam.first_step(zero_grad=True)
        try:
            super().training_step(model, inputs, num_items_in_batch)  # pass 2 at w + ε
        except BaseException:
            sam.restore(commit=False)
            raise
        sam.restore()  # the Trainer takes the base step: keep the variant's new state
        return loss
