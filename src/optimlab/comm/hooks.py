"""Compressed gradient communication as a DDP communication hook, and the same pipeline without DDP.

Per tensor (n×m view of a gradient of ndim ≥ 2 that :meth:`Compressor.should_compress` accepts) and step t, on each of
N workers (specs/comm.md §3, arXiv:2312.08538):

    p_i = g_i + ê_i                                   (memory.compensate)
    c_i = Q(p_i; generator(seed, t, name))            (compressor.compress; shared randomness)
    ḡ   = decode(Σ_i c_i) / N                         (one all-reduce, or an all-gather of bytes)
    memory.update(v_i = p_i − decode(c_i))            (residual="local")   or   p_i − ḡ   ("global")

Vectors and tensors not worth compressing are all-reduced densely in the same flat buffer. DDP does not divide by N
before the hook; the hook divides exactly once. Before ``start_iter`` it behaves as PyTorch's ``allreduce_hook``.

* :class:`CommState` + :func:`comm_hook`: ``ddp.register_comm_hook(state, comm_hook)``; prefer
  :func:`register_hook`, which also maps parameters to names so memory keys survive DDP's bucket rebuild.
* :class:`SimulatedGroup`: N workers in one process, same code path (the test reference; fast sweeps).
* :func:`aggregate`: the pipeline over a process group for loops without DDP.
* :func:`predict_memory`: the :class:`MemoryReport` from parameter shapes alone.

Non-finite inputs: a worker whose compensated tensor is not finite writes NaN into one float field of its payload
(``torch.where``, no host sync), so every rank receives a non-finite result (AMP's scaler then skips the step
everywhere); memory updates of that bucket are skipped (``nonfinite="skip_memory"``) or ``FloatingPointError`` is
raised on every rank after the collective (``"raise"``, one host sync per tensor).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from optimlab.comm.compressors import Compressor, Payload, PowerSGD, as_matrix_shape, counter_generator
from optimlab.comm.memory import ConEFMemory, EFMemory, ErrorMemory, NoMemory, finite

__all__ = [
    "CommReport",
    "CommState",
    "MemoryReport",
    "SimulatedGroup",
    "aggregate",
    "comm_hook",
    "predict_memory",
    "register_hook",
]


# ----------------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class MemoryReport:
    """Persistent memory of a compressed-communication setup (specs/comm.md §3 "Memory accounting").

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


# ----------------------------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------------------------
def _compresses(compressor: Compressor, shape: Sequence[int], compress_vectors: bool, rate: float) -> bool:
    if len(shape) < 2 and not compress_vectors:
        return False
    if isinstance(compressor, PowerSGD):
        return compressor.should_compress(shape)
    return compressor.should_compress(shape, rate)


class CommState:
    """Configuration and state of compressed communication; the ``state`` argument of :func:`comm_hook`.

    Args:
        compressor: the wire compressor Q (:mod:`optimlab.comm.compressors`).
        memory: the error memory (default :class:`NoMemory`).
        process_group: default the world.
        start_iter: steps of plain all-reduce before compressing (≥ 0; ≥ 2 for a bare ``register_comm_hook``,
            because DDP rebuilds its buckets after iteration 0). Reference examples use 10.
        seed: seed of the counter-based shared randomness.
        residual: ``"local"`` (v = p − decode(c_i)) or ``"global"`` (v = p − ḡ); ``None`` picks ``"global"`` for
            PowerSGD (as PyTorch's hook) and ``"local"`` otherwise.
        communicator: ``"auto"`` (all-reduce if ``compressor.all_reducable`` else all-gather, with a one-time
            warning that the payload grows with N), ``"allreduce"`` or ``"allgather"``.
        compress_vectors: also compress tensors with ndim ≤ 1 (default: they bypass compression and memory).
        min_compression_rate: compress a tensor only if payload bytes × rate < dense fp32 bytes (PowerSGD uses its
            own ``min_compression_rate`` on element counts, as PyTorch).
        nonfinite: ``"skip_memory"`` or ``"raise"`` (see the module docstring).

    ``stats`` counts steps and the last step's collectives; ``state_dict()``/``load_state_dict()`` resume exactly
    (memory keyed by parameter name); pickling drops the process group and the parameter→name map.
    """

    def __init__(self, compressor: Compressor, memory: ErrorMemory | None = None, *, process_group=None,
                 start_iter: int = 10, seed: int = 0, residual: str | None = None, communicator: str = "auto",
                 compress_vectors: bool = False, min_compression_rate: float = 2.0,
                 nonfinite: str = "skip_memory") -> None:
        if not isinstance(compressor, Compressor):
            raise TypeError(f"compressor must be an optimlab.comm Compressor, got {type(compressor).__name__}")
        memory = NoMemory() if memory is None else memory
        if not isinstance(memory, ErrorMemory):
            raise TypeError(f"memory must be an optimlab.comm ErrorMemory, got {type(memory).__name__}")
        if not isinstance(start_iter, int) or isinstance(start_iter, bool) or start_iter < 0:
            raise ValueError(f"start_iter must be an integer >= 0, got {start_iter!r}")
        if residual is None:
            residual = "global" if isinstance(compressor, PowerSGD) else "local"
        if residual not in ("local", "global"):
            raise ValueError(f"residual must be 'local', 'global' or None, got {residual!r}")
        if communicator not in ("auto", "allreduce", "allgather"):
            raise ValueError(f"communicator must be 'auto', 'allreduce' or 'allgather', got {communicator!r}")
        if communicator == "allreduce" and not compressor.all_reducable:
            raise ValueError(f"communicator='allreduce' needs an all-reducable compressor; {type(compressor).__name__}"
                             " is not (per-rank indices or scales would be summed): use 'allgather' or 'auto'")
        if communicator == "allgather" and compressor.rounds > 1:
            raise ValueError(f"{type(compressor).__name__} needs {compressor.rounds} all-reduce rounds; "
                             "communicator='allgather' is not supported for it")
        if communicator == "auto":
            communicator = "allreduce" if compressor.all_reducable else "allgather"
            if communicator == "allgather":
                warnings.warn(f"{type(compressor).__name__} is not all-reducable: using all-gather, whose payload "
                              "per worker grows with the number of workers N", RuntimeWarning, stacklevel=2)
        if not min_compression_rate >= 0:
            raise ValueError(f"min_compression_rate must be >= 0, got {min_compression_rate!r}")
        if nonfinite not in ("skip_memory", "raise"):
            raise ValueError(f"nonfinite must be 'skip_memory' or 'raise', got {nonfinite!r}")
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        self.compressor, self.memory, self.process_group = compressor, memory, process_group
        self.start_iter, self.seed, self.residual, self.communicator = start_iter, seed, residual, communicator
        self.compress_vectors, self.min_compression_rate = bool(compress_vectors), float(min_compression_rate)
        self.nonfinite = nonfinite
        self.iter = 0
        self.stats: dict[str, Any] = {"steps": 0, "compressed_steps": 0, "last_step": {}}
        self._cur: dict[str, Any] = self._fresh()
        self._names: dict[Tensor, str] | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._compressed: set[str] = set()
        self._all_dense: dict[tuple[int, int], bool] = {}  # bucket layout -> nothing to compress in it
        self._decisions: dict[tuple[int, ...], bool] = {}  # shape -> compressed
        self._scratch_peak = 0

    # --- configuration -----------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"compressor": self.compressor.config(), "memory": self.memory.config(),
                "start_iter": self.start_iter, "seed": self.seed, "residual": self.residual,
                "communicator": self.communicator, "compress_vectors": self.compress_vectors,
                "min_compression_rate": self.min_compression_rate, "nonfinite": self.nonfinite}

    def compresses(self, shape: Sequence[int]) -> bool:
        """Whether a gradient of ``shape`` is compressed (else all-reduced densely, without memory)."""
        shape = tuple(shape)
        hit = self._decisions.get(shape)
        if hit is None:
            hit = self._decisions[shape] = _compresses(self.compressor, shape, self.compress_vectors,
                                                       self.min_compression_rate)
        return hit

    def _group(self):
        return self.process_group if self.process_group is not None else dist.group.WORLD

    # --- step bookkeeping --------------------------------------------------------------------------------------
    @staticmethod
    def _fresh() -> dict[str, Any]:
        return {"payload_numel": 0, "payload_bytes": 0, "collectives": 0, "dense_numel": 0, "bucket_numels": [],
                "compressed": False, "world_size": 0}

    def _end_step(self) -> None:
        self.stats["steps"] += 1
        if self._cur["compressed"]:
            self.stats["compressed_steps"] += 1
        self.stats["last_step"] = self._cur
        self._cur = self._fresh()
        self.iter += 1

    # --- reports -----------------------------------------------------------------------------------------------
    def comm_report(self) -> CommReport:
        """Collectives of the last complete step (see :class:`CommReport`)."""
        last = self.stats["last_step"]
        if not last:
            raise RuntimeError("no step has completed yet")
        comm = self.communicator if last["compressed"] else "allreduce"
        return CommReport(last["payload_numel"], last["payload_bytes"], last["collectives"], last["world_size"],
                          comm, last["dense_numel"])

    def memory_report(self) -> MemoryReport:
        """Persistent memory measured on the tensors held now (see :class:`MemoryReport`)."""
        per = self.memory.breakdown()
        ef_ref = 4 * sum(math.prod(self._shapes[k]) for k in self._compressed)
        bucket_ref = 4 * sum(math.prod(s) for s in self._shapes.values())
        return MemoryReport(
            error_bytes=sum(v["error_bytes"] for v in per.values()),
            compressor_bytes=self.compressor.nbytes(),
            cache_bytes=sum(v["cache_bytes"] for v in per.values()),
            ef_reference_bytes=ef_ref, bucket_reference_bytes=bucket_ref,
            scratch_peak_bytes=self._scratch_peak, per_tensor=per)

    # --- checkpointing -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config(), "iter": self.iter, "memory": self.memory.state_dict(),
                "compressor": self.compressor.state_dict(),
                "stats": {"steps": self.stats["steps"], "compressed_steps": self.stats["compressed_steps"]},
                "shapes": dict(self._shapes), "compressed": sorted(self._compressed)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; ``ValueError`` if the configuration differs from this state's."""
        if state.get("config") != self.config():
            raise ValueError(f"CommState configuration mismatch on load: saved {state.get('config')}, "
                             f"this state {self.config()}")
        self.iter = int(state["iter"])
        self.memory.load_state_dict(state["memory"])
        self.compressor.load_state_dict(state["compressor"])
        self.stats["steps"] = state["stats"]["steps"]
        self.stats["compressed_steps"] = state["stats"]["compressed_steps"]
        self._shapes = dict(state["shapes"])
        self._compressed = set(state["compressed"])

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["process_group"] = None
        d["_names"] = None
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


# ----------------------------------------------------------------------------------------------------------------
# One bucket, one step: the pipeline shared by the hook, SimulatedGroup and aggregate
# ----------------------------------------------------------------------------------------------------------------
def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _align8(n: int) -> int:
    return -(-n // 8) * 8


def _memory_scratch(memory: ErrorMemory, shape: tuple[int, int]) -> int:
    """Transient bytes of one compensate+update (from the allocations the memory code makes)."""
    n, m = shape
    d = n * m
    if isinstance(memory, NoMemory):
        return 0
    if isinstance(memory, EFMemory):
        return 8 * min(d, 1 << 16)  # chunked p − decoded and the torch.where result
    if isinstance(memory, ConEFMemory):
        if memory._is_dense(m):
            return 8 * d
        w = memory.width(m)
        chunk = min(d, max(m, (memory.chunk_numel // max(m, 1)) * m))
        return 4 * n * w * 4 + 8 * chunk + 12 * m  # g-sketch, sketch(decoded), old, where; chunk; hashes
    return 12 * d


class _BucketStep:
    """Compress, collect and decode one bucket on one worker; the driver runs the collectives.

    ``start()`` returns the first send buffer; ``receive(result)`` takes the collective's result (the reduced buffer,
    or the list of gathered buffers) and returns the next send buffer or ``None`` when the bucket is done.
    """

    def __init__(self, state: CommState, keys: Sequence[str], views: Sequence[Tensor], buffer: Tensor | None,
                 t: int, rank: int, world: int) -> None:
        self.s, self.keys, self.views, self.buffer = state, list(keys), list(views), buffer
        self.t, self.rank, self.world = t, rank, world
        self.dense_mode = t < state.start_iter
        self.received: list[Tensor] = []  # reduced buffers (for the bucket-wide finiteness flag)

    # -- round 1 --
    def start(self) -> Tensor:
        s, cur = self.s, self.s._cur
        cur["world_size"] = self.world
        cur["bucket_numels"].append(sum(v.numel() for v in self.views))
        for k, v in zip(self.keys, self.views):
            s._shapes.setdefault(k, tuple(v.shape))
        if not self.dense_mode and not any(s.compresses(v.shape) for v in self.views):
            self.dense_mode = True  # nothing to compress here (e.g. Identity): exactly allreduce_hook's path
        if self.dense_mode:  # PyTorch's allreduce_hook: divide first, then sum
            flat = self.buffer if self.buffer is not None else torch.cat([v.reshape(-1) for v in self.views])
            flat.div_(self.world)
            self.flat = flat
            self._count(flat, rounds=[flat.numel()])
            self.n_rounds = 1
            return flat
        cur["compressed"] = True
        self.comp: list[tuple[str, Tensor, Payload, Tensor]] = []
        self.dense: list[tuple[str, Tensor]] = []
        for k, v in zip(self.keys, self.views):
            if s.compresses(v.shape):
                s._compressed.add(k)
                mat = v.view(as_matrix_shape(v.shape))
                s.memory.compensate(k, mat)
                fin = finite(mat)
                gen = counter_generator(s.seed, self.t, k, None if s.compressor.shared_randomness else self.rank)
                self.comp.append((k, mat, s.compressor.compress(mat, gen, key=k), fin))
            else:
                self.dense.append((k, v))
        self.dense_len = sum(v.numel() for _, v in self.dense)
        cur["dense_numel"] += self.dense_len
        if s.communicator == "allgather":
            flat = self._pack_bytes()
            self._count(flat, rounds=[flat.numel()])
        else:
            parts = [v.reshape(-1) for _, v in self.dense] + [t.reshape(-1) for _, _, p, _ in self.comp for t in p.data]
            flat = torch.cat(parts) if parts else self.views[0].new_zeros(0)
            offs, o = [], self.dense_len
            for _, _, p, _ in self.comp:
                offs.append(o)
                o += sum(t.numel() for t in p.data)
            if self.comp:  # poison: NaN added to the first payload element of a non-finite tensor (x + 0 = x)
                idx = torch.tensor(offs, device=flat.device)
                fins = torch.stack([f for *_, f in self.comp])
                flat.index_add_(0, idx, torch.where(fins, 0.0, math.nan).to(flat.dtype))
            rounds = [flat.numel()]
            if s.compressor.rounds == 2:
                rounds.append(sum(s.compressor.wire_spec(m.shape)[1][0] for _, m, _, _ in self.comp))
            self._count(flat, rounds=[r for r in rounds if r > 0] or [0])
        self.round = 1
        self.n_rounds = 2 if (s.compressor.rounds == 2 and s.communicator != "allgather" and self.comp) else 1
        self._scratch(flat)
        return flat

    def _count(self, flat: Tensor, rounds: list[int]) -> None:
        cur = self.s._cur
        cur["payload_numel"] += sum(rounds)
        cur["payload_bytes"] += sum(rounds) * flat.element_size()
        cur["collectives"] += len(rounds)

    def _scratch(self, flat: Tensor) -> None:
        mem = not isinstance(self.s.memory, NoMemory)
        ag = self.s.communicator == "allgather"
        per = [(int(mem) + int(ag) + int(ag and mem)) * _nbytes(m) + _memory_scratch(self.s.memory, tuple(m.shape))
               for _, m, _, _ in self.comp]
        gathered = _nbytes(flat) * (self.world if self.s.communicator == "allgather" else 1)
        self.s._scratch_peak = max(self.s._scratch_peak, gathered + max(per, default=0))

    def _pack_bytes(self) -> Tensor:
        fields: list[Tensor] = [v.reshape(-1) for _, v in self.dense]
        self.poison_at: list[tuple[int, torch.dtype]] = []
        self.layout: list[list[tuple[int, int, torch.dtype]]] = []
        off = sum(_align8(_nbytes(f)) for f in fields)
        for _, _, p, _ in self.comp:
            lay = []
            first_float = None
            for t in p.data:
                lay.append((off, t.numel(), t.dtype))
                if first_float is None and t.is_floating_point():
                    first_float = (off, t.dtype)
                off += _align8(_nbytes(t))
                fields.append(t.reshape(-1))
            self.layout.append(lay)
            self.poison_at.append(first_float)
        buf = torch.zeros(off, dtype=torch.uint8, device=self.views[0].device if self.views else "cpu")
        o = 0
        for f in fields:
            nb = _nbytes(f)
            buf[o:o + nb].copy_(f.contiguous().view(torch.uint8))
            o += _align8(nb)
        for (o, dt), (_, _, _, fin) in zip(self.poison_at, self.comp):
            if o is not None:
                cell = buf[o:o + torch.tensor([], dtype=dt).element_size()].view(dt)
                cell.copy_(torch.where(fin, cell, torch.full_like(cell, math.nan)))
        return buf

    # -- after a collective --
    def receive(self, result: Tensor | list[Tensor]) -> Tensor | None:
        if self.dense_mode:
            if result is not self.flat:
                self.flat.copy_(result)
            if self.buffer is None:
                o = 0
                for v in self.views:
                    v.copy_(self.flat[o:o + v.numel()].view_as(v))
                    o += v.numel()
            self._check_raise([(k, v) for k, v in zip(self.keys, self.views)])
            return None
        if self.s.communicator == "allgather":
            self._finish_allgather(result)
            return None
        flat = result
        self.received.append(flat)
        if self.round == 1:
            if self.s.compressor.rounds == 1:
                flat.div_(self.world)
            else:
                flat[: self.dense_len].div_(self.world)
            self._write_dense(flat)
            reduced = self._split(flat[self.dense_len:], [p for _, _, p, _ in self.comp])
            if self.s.compressor.rounds == 1 or not self.comp:
                self._finish([(p, r) for (_, _, p, _), r in zip(self.comp, reduced)])
                return None
            self.round = 2
            self.local2 = [self.s.compressor.next_round(r, p) for (_, _, p, _), r in zip(self.comp, reduced)]
            return torch.cat([t.reshape(-1) for p in self.local2 for t in p.data])
        flat.div_(self.world)
        reduced = self._split(flat, self.local2)
        self._finish(list(zip(self.local2, reduced)))
        return None

    def _write_dense(self, flat: Tensor) -> None:
        o = 0
        for _, v in self.dense:
            v.copy_(flat[o:o + v.numel()].view_as(v))
            o += v.numel()

    @staticmethod
    def _split(flat: Tensor, locals_: list[Payload]) -> list[Payload]:
        out, o = [], 0
        for p in locals_:
            data = []
            for t in p.data:
                data.append(flat[o:o + t.numel()].view_as(t))
                o += t.numel()
            out.append(p.with_data(data))
        return out

    def _bucket_ok(self, received: list[Tensor]) -> Tensor:
        """Whether the whole bucket is finite on every rank: a poisoned payload carries a NaN, so checking the
        received buffers (O(payload): dense part and payloads) and the local flags suffices."""
        flags = [f for *_, f in self.comp] + [finite(t) for t in received if t.is_floating_point()]
        return torch.stack(flags).all() if flags else torch.ones((), dtype=torch.bool)

    def _finish(self, pairs: list[tuple[Payload, Payload]]) -> None:
        """Decode into the gradient views, one tensor at a time (one O(d_t) temporary at most)."""
        s = self.s
        for (k, _, _, _), (_, reduced) in zip(self.comp, pairs):
            s.compressor.observe(k, reduced)
        use_memory = not isinstance(s.memory, NoMemory)
        ok = self._bucket_ok(self.received) if use_memory else None
        for (k, mat, _, _), (local, reduced) in zip(self.comp, pairs):
            if not use_memory:
                s.compressor.decompress(reduced, mat)
            elif s.residual == "local":  # update while mat still holds p, then decode the average into it
                s.memory.update(k, s.compressor.decompress(local, torch.empty_like(mat)), finite=ok)
                s.compressor.decompress(reduced, mat)
            else:
                agg = s.compressor.decompress(reduced, torch.empty_like(mat))
                s.memory.update(k, agg, finite=ok)
                mat.copy_(agg)
                del agg
        self._check_raise([(k, m) for k, m, _, _ in self.comp] + self.dense)

    def _finish_allgather(self, gathered: list[Tensor]) -> None:
        s, n = self.s, self.world
        o = 0
        for _, v in self.dense:  # dense part: sum over ranks in rank order, then divide
            nb = _nbytes(v)
            acc = torch.zeros(v.numel(), dtype=v.dtype, device=v.device)
            for g in gathered:
                acc.add_(g[o:o + nb].view(v.dtype))
            v.copy_(acc.div_(n).view_as(v))
            o += _align8(nb)
        per_rank = [[[g[off:off + cnt * torch.tensor([], dtype=dt).element_size()].view(dt) for off, cnt, dt in lay]
                     for g in gathered] for lay in self.layout]
        use_memory = not isinstance(s.memory, NoMemory)
        ok = self._bucket_ok([v for _, v in self.dense] + [t for fields in per_rank for data in fields for t in data]) \
            if use_memory else None
        for (k, mat, local, _), fields in zip(self.comp, per_rank):
            if use_memory and s.residual == "local":
                s.memory.update(k, s.compressor.decompress(local, torch.empty_like(mat)), finite=ok)
            agg = torch.zeros_like(mat) if (use_memory and s.residual == "global") else mat.zero_()
            tmp = torch.empty_like(mat)
            for data in fields:
                agg.add_(s.compressor.decompress(local.with_data(data), tmp))
            agg.div_(n)
            if use_memory and s.residual == "global":
                s.memory.update(k, agg, finite=ok)
                mat.copy_(agg)
        self._check_raise([(k, m) for k, m, _, _ in self.comp] + self.dense)

    def _check_raise(self, named: list[tuple[str, Tensor]]) -> None:
        if self.s.nonfinite != "raise":
            return
        for k, v in named:
            if not bool(finite(v)):
                raise FloatingPointError(f"non-finite averaged gradient for parameter {k!r} at step {self.t} "
                                         "(a worker's gradient had inf or NaN)")


# ----------------------------------------------------------------------------------------------------------------
# DDP hook
# ----------------------------------------------------------------------------------------------------------------
def _launch(state: CommState, send: Tensor, world: int):
    group = state._group()
    if state.communicator == "allgather" and not send.is_floating_point():
        out = [torch.empty_like(send) for _ in range(world)]
        return dist.all_gather(out, send, group=group, async_op=True), out
    return dist.all_reduce(send, group=group, async_op=True), send


def comm_hook(state: CommState, bucket: dist.GradBucket) -> torch.futures.Future[Tensor]:
    """DDP communication hook running :class:`CommState`'s pipeline on one bucket (returns ``bucket.buffer()``).

    Register with :func:`register_hook` (recommended) or ``ddp.register_comm_hook(state, comm_hook)``; the latter
    keys memory by (bucket index, position) and needs ``start_iter >= 2``.
    """
    group = state._group()
    world = dist.get_world_size(group)
    if state._names is None and state.start_iter < 2:
        raise ValueError("comm_hook registered without parameter names needs start_iter >= 2 (DDP rebuilds its "
                         f"buckets after iteration 0); got start_iter={state.start_iter}. Use "
                         "optimlab.comm.register_hook(ddp, state) instead")
    buffer = bucket.buffer()
    layout = (bucket.index(), buffer.numel())
    if state.nonfinite != "raise" and layout in state._all_dense and (
            state.iter < state.start_iter or state._all_dense[layout]):
        return _dense_fast_path(state, bucket, buffer, group, world)
    rank = dist.get_rank(group)
    params = bucket.parameters()
    if state._names is None:
        keys = [f"bucket{bucket.index()}.{i}" for i in range(len(params))]
    else:
        keys = [state._names[p] for p in params]
    step = _BucketStep(state, keys, bucket.gradients(), buffer, state.iter, rank, world)
    work, result = _launch(state, step.start(), world)
    # Every collective is issued from this (the autograd) thread, in bucket order: issuing PowerSGD's second round
    # from a future callback would let it race with the next bucket's first round and mismatch across ranks.
    for _ in range(step.n_rounds - 1):
        work.wait()
        work, result = _launch(state, step.receive(result), world)

    def finish(fut: torch.futures.Future) -> Tensor:
        fut.value()  # re-raises a failed collective
        if step.receive(result) is not None:
            raise RuntimeError("internal error: a bucket needed more collectives than planned")
        return bucket.buffer()

    state._all_dense[layout] = not any(state.compresses(v.shape) for v in step.views)
    if bucket.is_last():
        state._end_step()
    return work.get_future().then(finish)


def _dense_fast_path(state: CommState, bucket, buffer: Tensor, group, world: int):
    """A bucket seen before with nothing to compress (or before ``start_iter``): exactly ``allreduce_hook``."""
    n = buffer.numel()
    cur = state._cur
    cur["world_size"] = world
    cur["bucket_numels"].append(n)
    cur["dense_numel"] += n
    cur["payload_numel"] += n
    cur["payload_bytes"] += n * buffer.element_size()
    cur["collectives"] += 1
    buffer.div_(world)
    fut = dist.all_reduce(buffer, group=group, async_op=True).get_future()
    if bucket.is_last():
        state._end_step()
    return fut.then(lambda f: f.value()[0])


# DDP checks the annotations by identity; with postponed evaluation they would be strings.
comm_hook.__annotations__ = {"state": CommState, "bucket": dist.GradBucket,
                             "return": torch.futures.Future[torch.Tensor]}


def register_hook(ddp: nn.parallel.DistributedDataParallel, state: CommState) -> CommState:
    """``ddp.register_comm_hook(state, comm_hook)``, after giving ``state`` the parameter→name map of
    ``ddp.module.named_parameters()`` so that memory keys are names (stable across bucket rebuilds and checkpoints).
    """
    state._names = {p: n for n, p in ddp.module.named_parameters()}
    ddp.register_comm_hook(state, comm_hook)
    return state


# ----------------------------------------------------------------------------------------------------------------
# Without DDP
# ----------------------------------------------------------------------------------------------------------------
def _flat_views(grads: Mapping[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
    names = list(grads)
    buffer = torch.cat([grads[k].detach().reshape(-1) for k in names]) if names else torch.zeros(0)
    views, o = [], 0
    for k in names:
        n = grads[k].numel()
        views.append(buffer[o:o + n].view(grads[k].shape))
        o += n
    return buffer, views


class SimulatedGroup:
    """N workers in one process running the hook's pipeline, for tests and fast sweeps.

    ``make_state()`` must build a fresh :class:`CommState` (own compressor and memory) per worker. ``step(grads)``
    takes one ``{name: gradient}`` per worker (same names and shapes), treats them as one bucket (like DDP, a flat
    buffer of the gradients in dict order), sums the buffers in rank order and returns ``{name: averaged}``
    (worker 0's; every worker's is in :attr:`outputs`). The inputs are not modified.
    """

    def __init__(self, n_workers: int, make_state: Callable[[], CommState]) -> None:
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
        self.states = [make_state() for _ in range(n_workers)]
        if len({id(s.compressor) for s in self.states}) < n_workers or \
                len({id(s.memory) for s in self.states}) < n_workers:
            raise ValueError("make_state must build a new compressor and memory for every worker")
        self.n_workers = n_workers
        self.outputs: list[dict[str, Tensor]] = []

    def step(self, grads: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        n = self.n_workers
        if len(grads) != n:
            raise ValueError(f"expected {n} gradient dicts (one per worker), got {len(grads)}")
        names = list(grads[0])
        for g in grads[1:]:
            if list(g) != names or any(g[k].shape != grads[0][k].shape for k in names):
                raise ValueError("every worker must give the same names and shapes in the same order")
        flats = [_flat_views(g) for g in grads]
        steps = [_BucketStep(st, names, views, buf, st.iter, r, n)
                 for r, (st, (buf, views)) in enumerate(zip(self.states, flats))]
        sends = [s.start() for s in steps]
        while sends[0] is not None:
            if isinstance(sends[0], Tensor) and self.states[0].communicator == "allgather" and \
                    not sends[0].is_floating_point():
                gathered = [x.clone() for x in sends]
                sends = [s.receive([g.clone() for g in gathered]) for s in steps]
            else:
                total = sends[0].clone()
                for x in sends[1:]:
                    total.add_(x)
                for x in sends:
                    x.copy_(total)
                sends = [s.receive(x) for s, x in zip(steps, sends)]
        for st in self.states:
            st._end_step()
        self.outputs = [{k: v.clone() for k, v in zip(names, views)} for _, views in flats]
        return self.outputs[0]


def aggregate(named_grads: Mapping[str, Tensor], state: CommState) -> Mapping[str, Tensor]:
    """Run one step of the pipeline over ``state.process_group`` on ``named_grads`` (modified in place, returned).

    For training loops without DDP; every rank must call it with the same names and shapes. Synchronous.
    """
    group = state._group()
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    names = list(named_grads)
    step = _BucketStep(state, names, [named_grads[k] for k in names], None, state.iter, rank, world)
    nxt = step.start()
    while nxt is not None:
        w, r = _launch(state, nxt, world)
        w.wait()
        nxt = step.receive(r)
    state._end_step()
    return named_grads


def predict_memory(model: nn.Module, compressor: Compressor, memory: ErrorMemory, *,
                   compress_vectors: bool = False, min_compression_rate: float = 2.0,
                   dtype: torch.dtype = torch.float32) -> MemoryReport:
    """The :class:`MemoryReport` that :class:`CommState` would measure, from parameter shapes alone.

    ``scratch_peak_bytes`` is left at 0 (it depends on the bucketing).
    """
    rep = MemoryReport()
    seen_cache: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        shape = tuple(p.shape)
        rep.bucket_reference_bytes += 4 * p.numel()
        if not _compresses(compressor, shape, compress_vectors, min_compression_rate):
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
        if isinstance(compressor, PowerSGD):
            rep.compressor_bytes += compressor.predict_nbytes(shape, dtype)
    return rep
