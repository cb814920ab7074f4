"""Keep BatchNorm running statistics from being updated at the perturbed weights w + ε (arXiv:2010.01412).

The second pass of a sharpness-aware step runs the model in training mode at w + ε; without protection every
BatchNorm layer updates ``running_mean``/``running_var`` a second time, with statistics of the perturbed network,
and counts ``num_batches_tracked`` twice. :func:`batchnorm_guard` is a context manager that protects them::

    with batchnorm_guard(modules, "snapshot"):
        loss_fn(model(x), y).backward()      # pass 2: the buffers are restored on exit

The sharpness-aware optimizers enter it in ``first_step`` and leave it in ``restore`` (through an ``ExitStack``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

__all__ = ["BN_MODES", "batchnorm_guard", "batchnorm_modules", "check_batchnorm"]

BN_MODES = ("snapshot", "momentum0", "none")
_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


def batchnorm_modules(model: nn.Module | None) -> list[nn.Module]:
    """The BatchNorm layers of ``model`` that track running statistics (none for ``model=None``)."""
    if model is None:
        return []
    return [m for m in model.modules() if isinstance(m, _BN_TYPES) and m.track_running_stats]


def check_batchnorm(modules: Sequence[nn.Module], mode: str, *, owner: str = "") -> None:
    """``ValueError`` for ``mode="momentum0"`` with cumulative BatchNorm (``momentum=None``), which it cannot protect."""
    if mode == "momentum0" and any(m.momentum is None for m in modules):
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}bn='momentum0' cannot protect cumulative BatchNorm (momentum=None); use "
                         "bn='snapshot'")


@contextlib.contextmanager
def batchnorm_guard(modules: Sequence[nn.Module], mode: str) -> Iterator[None]:
    """Protect the running statistics of ``modules`` inside the block.

    ``mode``: ``"snapshot"`` saves every buffer (``running_mean``, ``running_var``, ``num_batches_tracked``) on entry
    and copies it back on exit, so the block leaves them bit-identical; ``"momentum0"`` sets ``momentum = 0`` inside
    the block (the running averages keep their values; ``num_batches_tracked`` still counts) and restores it on exit;
    ``"none"`` does nothing. The buffers are restored also when the block raises.
    """
    if mode not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {mode!r}")
    if mode == "none" or not modules:
        yield
        return
    if mode == "snapshot":
        with torch.no_grad():
            saved = [(m, {k: b.detach().clone() for k, b in m.named_buffers(recurse=False) if b is not None})
                     for m in modules]
        try:
            yield
        finally:
            with torch.no_grad():
                for m, data in saved:
                    for k, b in m.named_buffers(recurse=False):
                        if k in data:
                            b.copy_(data[k])
        return
    momenta = [(m, m.momentum) for m in modules]
    for m, _ in momenta:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in momenta:
            m.momentum = momentum
