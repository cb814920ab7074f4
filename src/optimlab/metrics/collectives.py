"""Count what a process hands to ``torch.distributed`` collectives: :func:`count_collectives`.

Used to check the payload of communication hooks against analytic counts (ConEF, arXiv:2312.08538: the
``conef.bytes_per_step`` claim) and against PyTorch's own hooks, which call the same module-level functions::

    with count_collectives() as c:
        train_step()
    c.numel, c.nbytes, c.calls   # elements, bytes and calls handed to all_reduce / all_gather on this process

Counting wraps ``torch.distributed.all_reduce`` and ``torch.distributed.all_gather`` (the module attributes, which
is what DDP hooks call) for the duration of the ``with`` block and restores them afterwards, even on error. It
counts what this process contributes (an all-gather's input tensor, not the gathered list), not wire bytes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CollectiveCount", "count_collectives"]

_LOCK = threading.Lock()
_active = False


@dataclass
class CollectiveCount:
    """Totals over the ``with`` block: ``numel`` (elements), ``nbytes`` (bytes) and ``calls`` (collectives), and
    ``per_call``, one ``(op, numel, nbytes)`` per collective in call order (``op`` is ``"all_reduce"`` or
    ``"all_gather"``)."""

    numel: int = 0
    nbytes: int = 0
    calls: int = 0
    per_call: list[tuple[str, int, int]] = field(default_factory=list)

    def _add(self, op: str, tensor: Any) -> None:
        n, b = tensor.numel(), tensor.numel() * tensor.element_size()
        self.numel += n
        self.nbytes += b
        self.calls += 1
        self.per_call.append((op, n, b))


@contextlib.contextmanager
def count_collectives() -> Iterator[CollectiveCount]:
    """Yield a :class:`CollectiveCount` of the collectives this process calls inside the ``with`` block.

    Nested or concurrent counting raises ``RuntimeError`` (two counters would each count through the other).
    """
    import torch.distributed as dist

    global _active
    with _LOCK:
        if _active:
            raise RuntimeError("count_collectives is already active; nested or concurrent counting is not supported")
        _active = True
    count = CollectiveCount()
    orig_reduce, orig_gather = dist.all_reduce, dist.all_gather

    def all_reduce(tensor, *args, **kwargs):
        count._add("all_reduce", tensor)
        return orig_reduce(tensor, *args, **kwargs)

    def all_gather(tensor_list, tensor, *args, **kwargs):
        count._add("all_gather", tensor)
        return orig_gather(tensor_list, tensor, *args, **kwargs)

    dist.all_reduce, dist.all_gather = all_reduce, all_gather
    try:
        yield count
    finally:
        dist.all_reduce, dist.all_gather = orig_reduce, orig_gather
        with _LOCK:
            _active = False
