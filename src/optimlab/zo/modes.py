"""Helpers for running zeroth-order steps on ``nn.Module`` models: evaluation mode, param groups, closures.

A ZO step evaluates the loss 2q times on the same batch; modules must not change between the evaluations (BatchNorm
running statistics would be updated 2q times in train mode) and no autograd graph is needed (MeZO,
arXiv:2305.17333, runs its forwards in eval + inference mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["zo_closure", "zo_eval", "zo_param_groups"]


@contextlib.contextmanager
def zo_eval(model: nn.Module, inference_mode: bool = False) -> Iterator[nn.Module]:
    """Set ``model.eval()`` and enter ``torch.no_grad()`` (or ``torch.inference_mode()``); on exit restore every
    module's own previous ``training`` flag (mixed flags included)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"zo_eval: model must be an nn.Module, got {type(model).__name__}")
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode() if inference_mode else torch.no_grad():
            yield model
    finally:
        for m, flag in flags:
            m.training = flag


def zo_param_groups(model: nn.Module, weight_decay: float,
                    no_decay: Sequence[str] = ("bias", "norm", "LayerNorm")) -> list[dict[str, Any]]:
    """Two groups of the trainable parameters (each tensor once, tied ones deduplicated by identity): names that
    contain one of ``no_decay`` get weight decay 0, the others ``weight_decay``. Empty groups are left out."""
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
        raise ValueError(f"zo_param_groups: weight_decay must be a finite number >= 0, got {weight_decay!r}")
    decay, plain, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (plain if any(k in name for k in no_decay) else decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}, {"params": plain, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def zo_closure(model: nn.Module, batch: Mapping[str, Tensor] | Sequence[Tensor] | Tensor,
               loss_fn: Callable[..., Any] | None = None) -> Callable[[], Tensor]:
    """A closure for ``opt.step``: under :func:`zo_eval`, ``loss_fn(model(batch-as-inputs), batch)`` (or, with no
    ``loss_fn``, the ``.loss`` of a Hugging Face model called with ``**batch``), returned as a float32 0-d tensor.
    ``loss_fn`` may be non-differentiable (accuracy, F1): only its values are used."""

    def run() -> Tensor:
        with zo_eval(model):
            if isinstance(batch, Mapping):
                out = model(**batch)
            elif isinstance(batch, (tuple, list)):
                out = model(batch[0])
            else:
                out = model(batch)
            if loss_fn is None:
                loss = getattr(out, "loss", None)
                if loss is None:
                    raise ValueError("zo_closure: the model output has no .loss; pass loss_fn")
            else:
                loss = loss_fn(out, batch)
            return torch.as_tensor(loss).detach().float().reshape(())

    return run
