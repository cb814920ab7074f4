"""Seeded directions and in-place / swap / master probes of the ZO optimizers (a mixin of
:class:`optimlab.zo.base.ZOOptimizer`).

Chunk k of parameter j for direction i at step t is drawn from a private generator on the parameter's device
seeded with ``mix64(seed, t, process_rank, i, j, k)`` (:func:`optimlab._random.mix64`); nothing is stored, the
same chunk is regenerated for the restore and the update (MeZO's seed trick, arXiv:2305.17333, chunked).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from optimlab._random import mix64

__all__ = ["ZOPerturbMixin"]

_M63 = (1 << 63) - 1


class ZOPerturbMixin:
    """Directions (``regenerate``), probes and restores; expects ``param_groups``, ``state``, ``seed``,
    ``direction``, ``chunk_numel``, ``noise_dtype``, ``perturb``, ``distributed``, ``process_rank``, ``_gens``,
    ``_scratch`` and ``_sphere`` from the optimizer."""

    # ---------------------------------------------------------------- parameters and directions
    def _trainables(self) -> list[tuple[dict, Tensor, int]]:
        """(group, param, index) of every trainable parameter in group order, each tensor once (tied weights)."""
        out, seen = [], set()
        for g in self.param_groups:
            for p in g["params"]:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    out.append((g, p, len(out)))
        return out

    @property
    def _dir_rank(self) -> int:
        """The process rank folded into direction seeds: this process's in ``per_process`` mode, else 0."""
        return self.process_rank if self.distributed == "per_process" else 0

    def _noise_dtype(self, p: Tensor) -> torch.dtype:
        if self.noise_dtype is not None:
            return self.noise_dtype
        return torch.float64 if p.dtype == torch.float64 else torch.float32

    def _gen(self, device: torch.device) -> torch.Generator:
        g = self._gens.get(device)
        if g is None:
            g = self._gens[device] = torch.Generator(device=device)
        return g

    def _chunks(self, p: Tensor):
        n, c = p.numel(), self.chunk_numel
        return [(k, lo, min(lo + c, n)) for k, lo in enumerate(range(0, n, c))]

    def _raw(self, t: int, rank: int, i: int, j: int, k: int, n: int, p: Tensor) -> Tensor:
        gen = self._gen(p.device)
        gen.manual_seed(mix64(self.seed, t, rank, i, j, k) & _M63)
        nd = self._noise_dtype(p)
        if self.direction == "rademacher":
            return torch.empty(n, dtype=nd, device=p.device).bernoulli_(0.5, generator=gen).mul_(2).sub_(1)
        return torch.randn(n, generator=gen, dtype=nd, device=p.device)

    def _noise(self, t: int, rank: int, i: int, j: int, k: int, n: int, p: Tensor) -> Tensor:
        w = self._raw(t, rank, i, j, k, n, p)
        if self.direction == "sphere":
            w.mul_(self._sphere_scale(t, rank, i))
        return w

    def _sphere_scale(self, t: int, rank: int, i: int) -> float:
        key = (t, rank, i)
        if key not in self._sphere:  # one extra RNG pass: ‖z‖² over every trainable, accumulated in float64
            total, d = 0.0, 0
            for _, p, j in self._trainables():
                d += p.numel()
                for k, lo, hi in self._chunks(p):
                    total += float(self._raw(t, rank, i, j, k, hi - lo, p).double().square().sum())
            self._sphere[key] = math.sqrt(d / total)
        return self._sphere[key]

    def regenerate(self, step: int, direction: int = 0, process_rank: int | None = None) -> list[Tensor]:
        """The direction tensors w_{direction, p} of ``step`` (shape of each trainable, in the noise dtype)."""
        rank = self._dir_rank if process_rank is None else process_rank
        out = []
        for _, p, j in self._trainables():
            w = torch.empty(p.numel(), dtype=self._noise_dtype(p), device=p.device)
            for k, lo, hi in self._chunks(p):
                w[lo:hi] = self._noise(step, rank, direction, j, k, hi - lo, p)
            out.append(w.view_as(p))
        return out

    # ---------------------------------------------------------------- probes and restore
    def _source(self, p: Tensor, orig: dict) -> Tensor:
        st = self.state[p]
        return st["master"] if "master" in st else orig.get(p, p)

    def _probe(self, t: int, i: int, sign: int, rel: int, orig: dict) -> None:
        """θ ← source + sign·eps·w_i (master/swap) or θ += rel·eps·w_i (inplace)."""
        for g, p, j in self._trainables():
            eps, st, flat = g["eps"], self.state[p], p.view(-1)
            if "master" in st or self.perturb == "swap":
                if "master" in st:
                    src, dst = st["master"].view(-1), flat
                else:
                    if p not in orig:
                        orig[p] = p.data
                    scratch = self._scratch.get(p)
                    if scratch is None:
                        scratch = self._scratch[p] = torch.empty_like(p.data)
                    src, dst = orig[p].view(-1), scratch.view(-1)
                for k, lo, hi in self._chunks(p):
                    w = self._noise(t, self._dir_rank, i, j, k, hi - lo, p)
                    dst[lo:hi].copy_(w.mul_(sign * eps).add_(src[lo:hi]))
                if "master" not in st:
                    p.data = self._scratch[p]
            else:
                for k, lo, hi in self._chunks(p):
                    flat[lo:hi].add_(self._noise(t, self._dir_rank, i, j, k, hi - lo, p), alpha=rel * eps)

    def _restore(self, t: int, i: int, sign: int, orig: dict) -> None:
        """Undo a probe at ``sign``: copy the master, point ``p.data`` back, or subtract sign·eps·w_i (inplace)."""
        for g, p, j in self._trainables():
            st = self.state[p]
            if "master" in st:
                p.copy_(st["master"])
            elif self.perturb == "swap":
                if p in orig:
                    p.data = orig[p]
            else:
                flat = p.view(-1)
                for k, lo, hi in self._chunks(p):
                    flat[lo:hi].add_(self._noise(t, self._dir_rank, i, j, k, hi - lo, p), alpha=-sign * g["eps"])
