"""Memory of a method, comparable between methods: bytes of persistent state and peak extra bytes of a call.

On CUDA the peak comes from the caching allocator (``torch.cuda.reset_peak_memory_stats`` /
``max_memory_allocated``, minus what was allocated before the call). On CPU it comes from tracking tensor storages:
a ``TorchDispatchMode`` sees every op's outputs; each storage that is new (not one of the op's inputs, so in-place
ops and views of existing tensors count nothing) adds its ``nbytes`` while alive, a weakref finalizer subtracts them
when it is freed, and the running maximum is the peak. This counts exactly the tensor bytes created by torch ops
during the call (factory functions, outputs, autograd's saved and gradient tensors), not allocator rounding, Python
objects or memory freed from tensors that existed before; that is what two methods' steps should be compared on.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass(frozen=True)
class MemoryResult:
    """``peak_bytes``: the largest total of bytes allocated during the call and alive at once (beyond what existed
    before it); ``retained_bytes``: those still alive when it returned; ``baseline_bytes``: tensor bytes alive before
    the call as the CUDA allocator counts them, ``None`` on CPU (tensors held only by C++, such as ``.grad``, have
    no Python object to find, so no reliable total exists); ``method``: how it was measured."""

    peak_bytes: int
    retained_bytes: int
    baseline_bytes: int | None
    method: str


class _Tracker(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.seen: set[int] = set()
        self.finalizers: list[weakref.finalize] = []

    def _free(self, key: int, nbytes: int) -> None:
        self.seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {_ptr(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            key = _ptr(t)
            if key and key not in inputs and key not in self.seen:
                st = t.untyped_storage()
                self.seen.add(key)
                self.live += st.nbytes()
                self.peak = max(self.peak, self.live)
                self.finalizers.append(weakref.finalize(st, self._free, key, st.nbytes()))
        return out


def _ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. meta, sparse): not counted
        return 0


def peak_memory(fn: Callable[[], Any], *, device: str | torch.device = "cpu") -> MemoryResult:
    """Peak extra memory of ``fn()`` on ``device``: max over the call of (bytes allocated − bytes before the call);
    see the module docstring for how each device measures it. ``fn``'s return value is discarded."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return MemoryResult(torch.cuda.max_memory_allocated(device) - start,
                            torch.cuda.memory_allocated(device) - start, start, "cuda allocator")
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {str(device)!r}")
    tracker = _Tracker()
    with tracker:
        fn()
    gc.collect()  # storages kept only by reference cycles made during the call are freed, not retained
    for f in tracker.finalizers:  # storages that outlive the call no longer report to the tracker
        f.detach()
    return MemoryResult(tracker.peak, tracker.live, None, "tensor storages (TorchDispatchMode)")


def state_bytes(obj: Any) -> int:
    """Total bytes of the tensors in a (nested) state_dict, list or tensor (each tensor counted by numel·itemsize)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0
