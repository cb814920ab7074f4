"""Drop-in forms of BAR (arXiv:2410.14802): an optimizer factory in the style of PEFT's
``create_loraplus_optimizer``, and Hugging Face Trainer callbacks (transformers is imported lazily).

Prefer ``Trainer(optimizers=(create_bar_optimizer(model, lr=..., total_steps=...), None))``: the rescale then runs
inside the optimizer's ``step``, so the steps that the fp16 loss scaler skips skip BAR too. :func:`BARCallback` is for
code that cannot replace the optimizer; it acts in ``on_pre_optimizer_step``, which the Trainer also calls on steps
that the loss scaler then skips (documented limitation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["BARCallback", "BalancednessLogger", "create_bar_optimizer"]


def create_bar_optimizer(model: nn.Module, optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW, *,
                         lr: float, variant: str = "nbar", mu0: float = 1.0,
                         schedule: str | Callable[[int], float] = "linear", total_steps: int | None = None,
                         adapter: str | None = None, nonfinite: str = "raise", low_precision: str = "warn",
                         **optimizer_kwargs: Any):
    """``BAR(optimizer_cls(trainable params of model, lr=lr, **optimizer_kwargs), find_lora_pairs(model, adapter))``.

    Raises ``ValueError`` saying what was found when the model has no (active, trainable) LoRA pair, e.g. a model
    that was not wrapped by ``peft.get_peft_model`` or :func:`optimlab.lora.inject_lora`.
    """
    from optimlab.lora.bar import BAR
    from optimlab.lora.pairs import resolve_pairs

    if not isinstance(model, nn.Module):
        raise ValueError(f"create_bar_optimizer: model must be a torch.nn.Module, got {type(model).__name__}")
    pairs = resolve_pairs(model, owner="create_bar_optimizer", adapter=adapter)
    params = [p for p in model.parameters() if p.requires_grad]
    base = optimizer_cls(params, lr=lr, **optimizer_kwargs)
    return BAR(base, pairs, variant=variant, mu0=mu0, schedule=schedule, total_steps=total_steps,
               nonfinite=nonfinite, low_precision=low_precision)


def _trainer_callback_base():
    try:
        import transformers
        from transformers import TrainerCallback
    except ImportError as e:  # pragma: no cover - transformers is an extra
        raise ImportError("BARCallback needs transformers (pip install 'optimlab[lora]')") from e
    if not hasattr(TrainerCallback, "on_pre_optimizer_step"):
        raise ImportError("BARCallback needs a transformers version whose TrainerCallback has on_pre_optimizer_step "
                          f"(transformers >= 4.47); found transformers {transformers.__version__}")
    return TrainerCallback


def _unwrap(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (or the optimizer itself)."""
    return getattr(optimizer, "optimizer", optimizer)


def BARCallback(variant: str = "nbar", mu0: float = 1.0, schedule: str | Callable[[int], float] = "linear",
                total_steps: int | None = None, adapter: str | None = None):
    """A ``transformers.TrainerCallback`` that applies the BAR rescale in ``on_pre_optimizer_step``.

    c_X = α_t·lr(group of X) with α_t = μ0·m(t), t = ``state.global_step`` and T = ``total_steps`` (default
    ``state.max_steps``). Pairs come from :func:`optimlab.lora.find_lora_pairs` on the Trainer's model at the first
    step. Raises ``ImportError`` naming the needed version when transformers lacks ``on_pre_optimizer_step``.
    Unlike :func:`create_bar_optimizer`, it also rescales on the steps the fp16 loss scaler skips.
    """
    from optimlab.lora._bar_functional import SCHEDULES, alpha_schedule

    base = _trainer_callback_base()
    if variant not in ("nbar", "obar"):
        raise ValueError(f"BARCallback: variant must be 'nbar' or 'obar', got {variant!r}")
    if not callable(schedule) and schedule not in SCHEDULES:
        raise ValueError(f"BARCallback: schedule must be one of {SCHEDULES} or a callable t -> multiplier, "
                         f"got {schedule!r}")
    alpha_schedule("constant", mu0, None)  # checks mu0

    class _BARCallback(base):
        def __init__(self) -> None:
            self.variant, self.mu0, self.schedule = variant, float(mu0), schedule
            self.total_steps, self.adapter = total_steps, adapter
            self.pairs = None
            self._multiplier = None

        def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
            from optimlab.lora._bar_functional import bar_rescale_
            from optimlab.lora._bar_pairs import as_factor_pairs
            from optimlab.lora.pairs import resolve_pairs

            if self.pairs is None:
                self.pairs = as_factor_pairs(resolve_pairs(model, owner="BARCallback", adapter=self.adapter),
                                             owner="BARCallback")
                self._multiplier = alpha_schedule(self.schedule, 1.0, self.total_steps or state.max_steps)
            lr_of = {id(p): float(g["lr"]) for g in _unwrap(optimizer).param_groups for p in g["params"]}
            alpha = self.mu0 * float(self._multiplier(state.global_step))
            bar_rescale_(self.pairs, variant=self.variant, alpha=alpha,
                         lrs=[(lr_of[id(fp.first)], lr_of[id(fp.second)]) for fp in self.pairs])
            return control

    _BARCallback.__name__ = _BARCallback.__qualname__ = "BARCallback"
    return _BARCallback()


def BalancednessLogger(every: int = 10, prefix: str = "balancedness"):
    """A ``transformers.TrainerCallback`` adding :func:`optimlab.lora.balancedness.balancedness_report` ``.to_dict()``
    (per-layer bal, |bal|, gradient imbalance; totals) to the Trainer's logs every ``every`` steps; the rows are also
    kept in ``.history`` as ``(step, dict)``. Works with plain LoRA, SAM and BAR alike."""
    from optimlab.lora.balancedness import balancedness_report

    base = _trainer_callback_base()
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"BalancednessLogger: every must be an integer >= 1, got {every!r}")

    class _Logger(base):
        def __init__(self) -> None:
            self.history: list[tuple[int, dict[str, float]]] = []

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0:  # gradients are still there: the imbalance is known
                self.history.append((state.global_step, balancedness_report(model).to_dict(prefix)))
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is not None and self.history:
                logs.update(self.history[-1][1])
            return control

    _Logger.__name__ = _Logger.__qualname__ = "BalancednessLogger"
    return _Logger()
