"""What compressed communication costs: persistent memory (:class:`MemoryReport`, :func:`predict_memory`) and what
one step hands to collectives (:class:`CommReport`), plus the persistent state of PyTorch's ``powerSGD_hook`` for
comparison (:func:`powersgd_state_bytes`). Memory is compared with what fp32 EF would hold, 4 bytes
per compressed coordinate (ConEF, arXiv:2312.08538: the error memory is what ConEF compresses).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from optimlab.comm.compressors import Compressor, as_matrix_shape
from optimlab.comm.memory import ErrorMemory

__all__ = ["CommReport", "MemoryReport", "compresses", "powersgd_state_bytes", "predict_memory"]


@dataclass
class MemoryReport:
    """Persistent memory of a compressed-communication setup.

    ``error_bytes``: Σ numel·element_size of the error-memory tensors; ``compressor_bytes``: PowerSGD's warm-start Q;
    ``cache_bytes``: hash caches; ``ef_reference_bytes``: 4·Σ numel of the compressed tensors (what fp32 EF would
    hold, the primary denominator); ``bucket_reference_bytes``: 4·Σ numel of every gradient (PyTorch's
    whole-bucket EF buffer, biases included); ``scratch_peak_bytes``: the largest transient of one bucket step,
    summed from the sizes of the buffers the code allocates (a model of the allocations, not an allocator reading).
    """

    error_bytes: int = 0
    compressor_bytes: int = 0
    cache_bytes: int = 0
    ef_reference_bytes: int = 0
    bucket_reference_bytes: int = 0
    scratch_peak_bytes: int = 0
    per_tensor: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ratio_to_ef(self) -> float:
        """(error_bytes + cache_bytes) / ef_reference_bytes (≤ s for ConEF at ratio s, s/2 in fp16)."""
        return (self.error_bytes + self.cache_bytes) / self.ef_reference_bytes if self.ef_reference_bytes else math.nan

    @property
    def ratio_to_bucket(self) -> float:
        return (self.error_bytes + self.cache_bytes) / self.bucket_reference_bytes \
            if self.bucket_reference_bytes else math.nan

    @property
    def persistent_bytes(self) -> int:
        return self.error_bytes + self.compressor_bytes + self.cache_bytes


@dataclass
class CommReport:
    """What one step hands to collectives, per worker (the last complete step).

    ``payload_numel``/``payload_bytes``: elements/bytes of the buffers given to collectives (all buckets and rounds;
    for all-gather, the bytes each worker contributes); ``collectives``: their number; ``wire_bytes``: bytes a worker
    sends on the wire under the usual models, 2(N−1)/N·bytes for a ring all-reduce and (N−1)·bytes for all-gather.
    """

    payload_numel: int
    payload_bytes: int
    collectives: int
    world_size: int
    communicator: str
    dense_numel: int

    @property
    def wire_bytes(self) -> float:
        n = self.world_size
        if self.communicator == "allgather":
            return float((n - 1) * self.payload_bytes)
        return 2.0 * (n - 1) / n * self.payload_bytes if n > 0 else 0.0


def compresses(compressor: Compressor, shape: Sequence[int], *, compress_vectors: bool = False,
               rate: float = 2.0) -> bool:
    """Whether a gradient of ``shape`` is compressed: ndim ≥ 2 (or ``compress_vectors``) and
    ``compressor.should_compress(shape, rate)``; otherwise it is all-reduced densely, without memory."""
    if len(shape) < 2 and not compress_vectors:
        return False
    return compressor.should_compress(shape, rate)


def predict_memory(model: nn.Module, compressor: Compressor, memory: ErrorMemory, *,
                   compress_vectors: bool = False, min_compression_rate: float = 2.0,
                   dtype: torch.dtype = torch.float32) -> MemoryReport:
    """The :class:`MemoryReport` that :class:`~optimlab.comm.hooks.CommState` would measure, from parameter shapes
    alone. ``scratch_peak_bytes`` is left at 0 (it depends on the bucketing)."""
    rep = MemoryReport()
    seen_cache: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        shape = tuple(p.shape)
        rep.bucket_reference_bytes += 4 * p.numel()
        if not compresses(compressor, shape, compress_vectors=compress_vectors, rate=min_compression_rate):
            continue
        rep.ef_reference_bytes += 4 * p.numel()
        err, cache = memory.predict(shape, dtype)
        m = as_matrix_shape(shape)[1]
        if cache and m in seen_cache:
            cache = 0
        seen_cache.add(m)
        rep.error_bytes += err
        rep.cache_bytes += cache
        rep.per_tensor[name] = {"error_bytes": err, "cache_bytes": cache}
        rep.compressor_bytes += compressor.predict_nbytes(shape, dtype)
    return rep


def powersgd_state_bytes(state: Any) -> int:
    """Persistent bytes of PyTorch's ``PowerSGDState``: its whole-bucket error buffers plus the P and Q memories
    (``error_dict``, ``p_memory_dict``, ``q_memory_dict``; the peer in ``optimlab bench comm``)."""
    return sum(v.numel() * v.element_size() for d in (state.error_dict, state.p_memory_dict, state.q_memory_dict)
               for v in d.values())
