"""Helpers: run a measurement on a model in eval mode and restore its mode and weights bit-exactly."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


def as_batches(data) -> list[Batch]:
    """``(X, y)`` tensors, or an iterable of ``(X, y)`` batches, as a list of batches."""
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return [data]
    batches = list(data)
    if not batches or not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in batches):
        raise ValueError("data must be (X, y) tensors or a non-empty iterable of (X, y) batches")
    return [tuple(b) for b in batches]


def trainable(model: nn.Module, params: Iterable[Tensor] | None) -> list[Tensor]:
    ps = [p for p in model.parameters() if p.requires_grad] if params is None else list(params)
    if not ps:
        raise ValueError("params must contain at least one tensor that requires grad")
    return ps


@contextlib.contextmanager
def measuring(model: nn.Module, params: list[Tensor]) -> Iterator[None]:
    """eval() mode during the block; afterwards the training flags, weights and buffers are as before."""
    modes = {m: m.training for m in model.modules()}
    saved = [p.detach().clone() for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    model.eval()
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
            for b, s in buffers:
                b.copy_(s)
        for m, mode in modes.items():
            m.training = mode


def full_loss(model: nn.Module, loss_fn: Callable, batches: list[Batch]) -> Callable[[], Tensor]:
    """Closure for the dataset loss (1/N) Σ_b |b| · loss(b), exact whatever the batching."""
    n = sum(int(x.shape[0]) for x, _ in batches)

    def loss() -> Tensor:
        return sum(loss_fn(model(x), y) * (x.shape[0] / n) for x, y in batches)

    return loss
