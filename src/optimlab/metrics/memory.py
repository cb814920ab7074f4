"""Memory of a method, comparable between methods: bytes of persistent state and peak extra bytes of a call.

On CUDA the peak comes from the caching allocator (``torch.cuda.reset_peak_memory_stats`` /
``max_memory_allocated``, minus what was allocated before the call). On CPU it comes from tracking tensor storages
(:class:`AllocationTracker`, the library's one allocation tracker): a ``TorchDispatchMode`` sees every op's outputs; each storage that is new (not one of the op's inputs, so in-place
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

__all__ = ["AllocationTracker", "MemoryResult", "largest_allocation", "peak_memory", "state_bytes"]


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


class AllocationTracker(TorchDispatchMode):
    """The allocation tracker (one copy in the library): a ``TorchDispatchMode`` that sees every op's outputs.

    Each output storage that is new (not one of the op's inputs, so in-place ops and views of existing tensors count
    nothing) adds its bytes to ``live_bytes`` while alive (a weakref finalizer subtracts them when it is freed).
    ``peak_bytes`` is the running maximum of ``live_bytes``; ``largest_numel`` / ``largest_bytes`` are the element
    count of the largest new tensor and the size of the largest new storage. Use it as a context manager::

        with AllocationTracker() as tracker:
            fn()
        tracker.largest_numel

    (:func:`peak_memory` and :func:`largest_allocation` wrap exactly this.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self.largest_numel = 0
        self.largest_bytes = 0
        self._seen: set[int] = set()
        self._finalizers: list[weakref.finalize] = []

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live_bytes -= nbytes

    def detach(self) -> None:
        """Stop following storages that outlive the tracked block (their later frees no longer count)."""
        for f in self._finalizers:
            f.detach()
        self._finalizers.clear()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {_ptr(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            key = _ptr(t)
            if not key or key in inputs:
                continue
            self.largest_numel = max(self.largest_numel, t.numel())
            if key not in self._seen:
                st = t.untyped_storage()
                self._seen.add(key)
                self.live_bytes += st.nbytes()
                self.peak_bytes = max(self.peak_bytes, self.live_bytes)
                self.largest_bytes = max(self.largest_bytes, st.nbytes())
                self._finalizers.append(weakref.finalize(st, self._free, key, st.nbytes()))
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
    with AllocationTracker() as tracker:
        fn()
    gc.collect()  # storages kept only by reference cycles made during the call are freed, not retained
    tracker.detach()  # storages that outlive the call no longer report to the tracker
    return MemoryResult(tracker.peak_bytes, tracker.live_bytes, None, "tensor storages (TorchDispatchMode)")


def largest_allocation(fn: Callable[[], Any]) -> int:
    """Element count of the largest tensor that ``fn()`` allocates (outputs sharing storage with an op's input, i.e.
    views and in-place results, are not allocations), on any device; ``fn``'s return value is discarded. Used to
    check that an algorithm keeps no buffer larger than it should (e.g. O((m + n)r) for ScaledGD)."""
    with AllocationTracker() as tracker:
        fn()
    tracker.detach()
    return tracker.largest_numel


def state_bytes(obj: Any) -> int:
    """Total bytes of the tensors in a (nested) state_dict, list or tensor (each tensor counted by numel·itemsize)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0
