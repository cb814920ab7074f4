"""Memory of a method, comparable between methods: bytes of persistent state and peak extra bytes of a step.

On CUDA the peak comes from the allocator (``torch.cuda.max_memory_allocated``). On CPU it comes from tracking
tensor storages: a ``TorchDispatchMode`` sees every op's outputs, counts each new storage's bytes while it is alive
(freed ones are noticed through weak references) and keeps the maximum. It counts tensors made by torch ops during
the call, not Python or allocator overheads, which is what two methods' steps should be compared on.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass(frozen=True)
class MemoryResult:
    """``peak_bytes``: the largest total of live tensor bytes allocated during the call (beyond what existed
    before it); ``retained_bytes``: those still alive when it returned; ``method``: how it was measured."""

    peak_bytes: int
    retained_bytes: int
    method: str


class _Tracker(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.seen: dict[int, Any] = {}

    def _free(self, key: int, nbytes: int) -> None:
        self.seen.pop(key, None)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key = st.data_ptr()
                if key and key not in self.seen:
                    nbytes = st.nbytes()
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                    self.seen[key] = weakref.finalize(st, self._free, key, nbytes) if _weakrefable(st) else None
        return out


def _weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def peak_memory(fn: Callable[[], Any], *, device: str | torch.device = "cpu") -> MemoryResult:
    """Peak extra memory of ``fn()`` on ``device`` (see the module docstring for how)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return MemoryResult(torch.cuda.max_memory_allocated(device) - start,
                            torch.cuda.memory_allocated(device) - start, "cuda allocator")
    tracker = _Tracker()
    with tracker:
        fn()
    return MemoryResult(tracker.peak, tracker.live, "tensor storages (TorchDispatchMode)")


def state_bytes(obj: Any) -> int:
    """Total bytes of the tensors in a (nested) state_dict, list or tensor."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0
