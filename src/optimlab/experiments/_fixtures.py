"""Fixtures shared by the claims: the digits split, seeded MLPs, one seeded training loop, thread pinning, and the
allocation tracker of :mod:`optimlab.metrics.memory` (re-exported, not copied).

No DataLoader: minibatches are slices of a seeded permutation (:func:`optimlab.data.batches`), so a
seed fixes the initialisation and the data order for every method in a paired comparison.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optimlab.data import Split, batches, load_sklearn
from optimlab.metrics.memory import MemoryResult, peak_memory, state_bytes

__all__ = ["History", "MemoryResult", "digits_split", "evaluate", "make_mlp", "peak_memory", "state_bytes",
           "torch_threads", "train", "train_classifier"]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count afterwards.

    Small models (MLPs on digits) run fastest on one thread: with 2 threads on a loaded 2-core machine, a step of
    the 64-128-128-10 MLP was measured 17x slower (26 s vs 1.5 s for 1200 SGD steps).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def digits_split(seed: int, device: str | torch.device = "cpu") -> Split:
    """The digits split the claims use: ``load_sklearn("digits", seed=seed)`` (30% test, stratified, features
    standardised with the training mean and std), on ``device``."""
    return load_sklearn("digits", seed=seed, device=device)


def make_mlp(widths: Sequence[int], *, seed: int, device: str | torch.device = "cpu") -> nn.Sequential:
    """ReLU MLP with layer widths ``widths`` (input first), initialised from ``seed`` without touching the global RNG."""
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(device)


@dataclass
class History:
    """Per-epoch training loss (mean over the epoch's minibatches, first-pass loss for two-pass methods) and the
    number of steps taken."""

    train_loss: list[float] = field(default_factory=list)
    steps: int = 0


def _is_two_pass(opt: torch.optim.Optimizer) -> bool:
    from optimlab.sam import SharpnessAware

    return isinstance(opt, SharpnessAware)


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    X: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    two_pass: bool | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_step: Callable[[int], None] | None = None,
    before_step: Callable[[int, Tensor, Tensor], None] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    max_steps: int | None = None,
    drop_last: bool = False,
) -> History:
    """Seeded minibatch training: each epoch draws the batches of :func:`optimlab.data.batches` from ``generator``.

    ``two_pass`` (default: ``opt`` is a :class:`optimlab.sam.SharpnessAware`) calls ``opt.step(closure)``;
    otherwise a plain ``zero_grad`` / ``backward`` / ``step``. ``loss_fn(model(xb), yb)`` is the loss.
    ``scheduler`` is stepped once per minibatch. Hooks, with ``t`` counting steps from 1:
    ``before_step(t, xb, yb)`` at the iterate before step t (``.grad`` is whatever the last step left);
    ``on_step(t)`` after step t; ``on_epoch(e)`` after epoch e (from 1). ``max_steps`` stops after that many
    steps; ``drop_last`` skips a last batch smaller than ``batch_size``. A non-finite loss raises
    ``FloatingPointError``.
    """
    if epochs < 0 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need epochs >= 0 and max_steps >= 1 (or None); got epochs={epochs}, max_steps={max_steps}")
    if two_pass is None:
        two_pass = _is_two_pass(opt)
    hist = History()
    t = 0
    model.train()
    for epoch in range(1, epochs + 1):
        total, count = 0.0, 0
        for idx in batches(X.shape[0], batch_size, generator=generator, drop_last=drop_last):
            idx = idx.to(X.device)
            xb, yb = X[idx], y[idx]
            if before_step is not None:
                before_step(t + 1, xb, yb)
            if two_pass:

                def closure(xb=xb, yb=yb):
                    loss = loss_fn(model(xb), yb)
                    loss.backward()
                    return loss

                loss = opt.step(closure)
            else:
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
            loss = loss.detach()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged: loss {loss.item()} at step {t + 1}")
            total += float(loss) * len(idx)
            count += len(idx)
            t += 1
            hist.steps = t
            if scheduler is not None:
                scheduler.step()
            if on_step is not None:
                on_step(t)
            if max_steps is not None and t >= max_steps:
                break
        if count:
            hist.train_loss.append(total / count)
        if on_epoch is not None:
            on_epoch(epoch)
        if max_steps is not None and t >= max_steps:
            break
    return hist


def train_classifier(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    X: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    two_pass: bool,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_step: Callable[[int], None] | None = None,
) -> History:
    """:func:`train` with cross-entropy and the batch order of ``torch.Generator().manual_seed(seed)``."""
    gen = torch.Generator().manual_seed(seed)
    return train(model, opt, X, y, epochs=epochs, batch_size=batch_size, generator=gen, two_pass=two_pass,
                 scheduler=scheduler, on_step=on_step)


@torch.no_grad()
def evaluate(model: nn.Module, X: Tensor, y: Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) in eval mode; the model's training flag is restored."""
    was_training = model.training
    model.eval()
    try:
        out = model(X)
        return float(F.cross_entropy(out, y)), 100.0 * float((out.argmax(1) == y).float().mean())
    finally:
        model.train(was_training)
