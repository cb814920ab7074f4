"""One bucket, one step: the pipeline shared by the DDP hook, :class:`~optimlab.comm.simulate.SimulatedGroup` and
:func:`~optimlab.comm.simulate.aggregate`.

Per tensor (n×m view of a gradient that :func:`~optimlab.comm.reports.compresses` accepts) and step t, on each of N
workers (ConEF, arXiv:2312.08538):

    p_i = g_i + ê_i                                   (compensate: memory.compensate)
    c_i = Q(p_i; generator(seed, t, name))            (compress: shared counter-based randomness)
    poison c_i with NaN if p_i is not finite          (torch.where; no host sync)
    pack the dense rest and every c_i in one buffer   (one all-reduce, or an all-gather of bytes)
    ḡ   = decode(Σ_i c_i) / N                         (decode, into the gradient views)
    memory.update(v_i = p_i − decode(c_i))            (residual="local")   or   p_i − ḡ   ("global")

Vectors and tensors not worth compressing are all-reduced densely in the same flat buffer. DDP does not divide by N
before the hook; the pipeline divides exactly once. Before ``start_iter`` it is PyTorch's ``allreduce_hook``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from optimlab._random import counter_generator
from optimlab.comm.compressors import Payload, as_matrix_shape
from optimlab.comm.memory import finite

if TYPE_CHECKING:
    from optimlab.comm.hooks import CommState

__all__ = ["BucketStep"]


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _align8(n: int) -> int:
    return -(-n // 8) * 8


class BucketStep:
    """Compress, collect and decode one bucket on one worker; the driver runs the collectives.

    ``views`` are the gradients of the bucket (views into ``buffer`` under DDP; ``buffer=None`` when they are
    separate tensors), named by ``keys``; ``t`` is the step (the counter of the shared randomness).
    ``start()`` compensates (memory), compresses and poisons non-finite payloads, packs the dense rest and the payloads
    into one flat send buffer and returns it; ``receive(result)`` takes the collective's result (the reduced buffer, or
    the list of gathered buffers) and returns the next send buffer (PowerSGD's second round) or ``None`` once it has
    decoded into ``views`` and updated the memory. The driver (the DDP hook, :class:`SimulatedGroup`,
    :func:`aggregate`) runs the collectives and calls ``state.end_step()`` after the last bucket of a step.
    """

    def __init__(self, state: CommState, keys: Sequence[str], views: Sequence[Tensor], buffer: Tensor | None,
                 t: int, process_rank: int, world_size: int) -> None:
        self.s, self.keys, self.views, self.buffer = state, list(keys), list(views), buffer
        self.t, self.process_rank, self.world_size = t, process_rank, world_size
        self.dense_mode = t < state.start_iter
        self.received: list[Tensor] = []  # reduced buffers (for the bucket-wide finiteness flag)

    # -- round 1 --
    def start(self) -> Tensor:
        """Round 1: compensate and compress each compressed tensor, then pack (and poison) the send buffer."""
        s, cur = self.s, self.s._cur
        cur["world_size"] = self.world_size
        cur["bucket_numels"].append(sum(v.numel() for v in self.views))
        for k, v in zip(self.keys, self.views):
            s._shapes.setdefault(k, tuple(v.shape))
        if not self.dense_mode and not any(s.compresses(v.shape) for v in self.views):
            self.dense_mode = True  # nothing to compress here (e.g. Identity): exactly allreduce_hook's path
        if self.dense_mode:  # PyTorch's allreduce_hook: divide first, then sum
            flat = self.buffer if self.buffer is not None else torch.cat([v.reshape(-1) for v in self.views])
            flat.div_(self.world_size)
            self.flat = flat
            self._count(flat, rounds=[flat.numel()])
            self.n_rounds = 1
            return flat
        cur["compressed"] = True
        self._compensate_and_compress()
        cur["dense_numel"] += self.dense_len
        if s.communicator == "allgather":
            flat = self._pack_bytes()
            self._count(flat, rounds=[flat.numel()])
        else:
            flat = self._pack_allreduce()
            rounds = [flat.numel()]
            if s.compressor.rounds == 2:
                rounds.append(sum(s.compressor.wire_spec(m.shape)[1][0] for _, m, _, _ in self.comp))
            self._count(flat, rounds=[r for r in rounds if r > 0] or [0])
        self.round = 1
        self.n_rounds = 2 if (s.compressor.rounds == 2 and s.communicator != "allgather" and self.comp) else 1
        self._scratch(flat)
        return flat

    def _compensate_and_compress(self) -> None:
        """p = g + ê in place (memory), its finiteness flag, and Q(p) with the counter generator of (seed, t, name)."""
        s = self.s
        self.comp: list[tuple[str, Tensor, Payload, Tensor]] = []
        self.dense: list[tuple[str, Tensor]] = []
        for k, v in zip(self.keys, self.views):
            if s.compresses(v.shape):
                s._compressed.add(k)
                mat = v.view(as_matrix_shape(v.shape))
                s.memory.compensate(k, mat)
                fin = finite(mat)
                generator = counter_generator(s.seed, self.t, k,
                                              None if s.compressor.shared_randomness else self.process_rank)
                self.comp.append((k, mat, s.compressor.compress(mat, generator, key=k), fin))
            else:
                self.dense.append((k, v))
        self.dense_len = sum(v.numel() for _, v in self.dense)

    def _pack_allreduce(self) -> Tensor:
        """The dense rest, then every payload, in one flat buffer; a non-finite tensor's first payload element gets
        NaN added (x + 0 = x otherwise), so every process receives a non-finite result."""
        parts = [v.reshape(-1) for _, v in self.dense] + [t.reshape(-1) for _, _, p, _ in self.comp for t in p.data]
        flat = torch.cat(parts) if parts else self.views[0].new_zeros(0)
        offs, o = [], self.dense_len
        for _, _, p, _ in self.comp:
            offs.append(o)
            o += sum(t.numel() for t in p.data)
        if self.comp:
            idx = torch.tensor(offs, device=flat.device)
            fins = torch.stack([f for *_, f in self.comp])
            flat.index_add_(0, idx, torch.where(fins, 0.0, math.nan).to(flat.dtype))
        return flat

    def _count(self, flat: Tensor, rounds: list[int]) -> None:
        cur = self.s._cur
        cur["payload_numel"] += sum(rounds)
        cur["payload_bytes"] += sum(rounds) * flat.element_size()
        cur["collectives"] += len(rounds)

    def _scratch(self, flat: Tensor) -> None:
        mem = self.s.memory.keeps_error
        ag = self.s.communicator == "allgather"
        per = [(int(mem) + int(ag) + int(ag and mem)) * _nbytes(m) + self.s.memory.scratch_bytes(tuple(m.shape))
               for _, m, _, _ in self.comp]
        gathered = _nbytes(flat) * (self.world_size if self.s.communicator == "allgather" else 1)
        self.s._scratch_peak = max(self.s._scratch_peak, gathered + max(per, default=0))

    def _pack_bytes(self) -> Tensor:
        """All-gather layout: every field as bytes at an 8-byte aligned offset fixed by the shapes; a non-finite
        tensor's first float field is overwritten with NaN."""
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
        """Take a collective's result; return the next send buffer, or ``None`` once decoded and memory updated."""
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
                flat.div_(self.world_size)
            else:
                flat[: self.dense_len].div_(self.world_size)
            self._write_dense(flat)
            reduced = self._split(flat[self.dense_len:], [p for _, _, p, _ in self.comp])
            if self.s.compressor.rounds == 1 or not self.comp:
                self._finish([(p, r) for (_, _, p, _), r in zip(self.comp, reduced)])
                return None
            self.round = 2
            self.local2 = [self.s.compressor.next_round(r, p) for (_, _, p, _), r in zip(self.comp, reduced)]
            return torch.cat([t.reshape(-1) for p in self.local2 for t in p.data])
        flat.div_(self.world_size)
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
        """Whether the whole bucket is finite on every process: a poisoned payload carries a NaN, so checking the
        received buffers (O(payload): dense part and payloads) and the local flags suffices."""
        flags = [f for *_, f in self.comp] + [finite(t) for t in received if t.is_floating_point()]
        return torch.stack(flags).all() if flags else torch.ones((), dtype=torch.bool)

    def _finish(self, pairs: list[tuple[Payload, Payload]]) -> None:
        """Decode into the gradient views, one tensor at a time (one O(d_t) temporary at most)."""
        s = self.s
        for (k, _, _, _), (_, reduced) in zip(self.comp, pairs):
            s.compressor.observe(k, reduced)
        use_memory = s.memory.keeps_error
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
        s, n = self.s, self.world_size
        o = 0
        for _, v in self.dense:  # dense part: sum over processes in process order, then divide
            nb = _nbytes(v)
            acc = torch.zeros(v.numel(), dtype=v.dtype, device=v.device)
            for g in gathered:
                acc.add_(g[o:o + nb].view(v.dtype))
            v.copy_(acc.div_(n).view_as(v))
            o += _align8(nb)
        per_process = [[[g[off:off + cnt * torch.tensor([], dtype=dt).element_size()].view(dt) for off, cnt, dt in lay]
                     for g in gathered] for lay in self.layout]
        use_memory = s.memory.keeps_error
        ok = self._bucket_ok([v for _, v in self.dense] + [t for fs in per_process for data in fs for t in data]) \
            if use_memory else None
        for (k, mat, local, _), fields in zip(self.comp, per_process):
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
