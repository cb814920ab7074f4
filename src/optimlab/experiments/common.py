"""Training helpers shared by the claims: seeded MLPs, a plain minibatch loop, evaluation.

No DataLoader: minibatches are slices of a seeded permutation (specs/sam.md §4, common set-up), so a seed fixes the
initialisation and the data order for every method in a paired comparison.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


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
    """Per-epoch training loss (mean over the epoch's minibatches, first-pass loss for two-pass methods)."""

    train_loss: list[float] = field(default_factory=list)


def train_classifier(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    two_pass: bool,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_step: Callable[[int], None] | None = None,
) -> History:
    """Minibatch training with cross-entropy; the batch order comes from ``torch.Generator().manual_seed(seed)``.

    ``two_pass=True`` calls ``opt.step(closure)`` (SAM family); otherwise a plain zero_grad/backward/step.
    ``scheduler`` is stepped once per minibatch. ``on_step(t)`` is called after step t (t counts from 1).
    """
    gen = torch.Generator().manual_seed(seed)
    n = X.shape[0]
    hist = History()
    t = 0
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(X.device)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            xb, yb = X[idx], y[idx]
            if two_pass:

                def closure(xb=xb, yb=yb):
                    loss = F.cross_entropy(model(xb), yb)
                    loss.backward()
                    return loss

                loss = opt.step(closure)
            else:
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
            loss = loss.detach()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged: loss {loss.item()} at step {t + 1}")
            total += float(loss) * len(idx)
            count += len(idx)
            t += 1
            if scheduler is not None:
                scheduler.step()
            if on_step is not None:
                on_step(t)
        hist.train_loss.append(total / count)
    return hist


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) in eval mode; the model's training flag is restored."""
    was_training = model.training
    model.eval()
    try:
        out = model(X)
        return float(F.cross_entropy(out, y)), 100.0 * float((out.argmax(1) == y).float().mean())
    finally:
        model.train(was_training)
