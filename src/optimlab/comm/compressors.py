"""Gradient compressors: the wire format of one gradient tensor, viewed as an n×m matrix.

A compressor maps a tensor ``x`` (viewed as n×m: the first dimension by the product of the rest; a vector as 1×d)
to a :class:`Payload` whose ``data`` tensors are what goes on the wire, plus a local ``ctx`` (indices, hashes) that
is re-derived from shared randomness and never sent. Each class declares

* ``all_reducable``: linear for a fixed random state shared by every rank, so that
  ``decompress(Σ_i compress(x_i)) = Σ_i decompress(compress(x_i))`` and one all-reduce moves O(payload);
* ``contractive`` (δ ∈ (0, 1]): E‖C(x) − x‖² ≤ (1 − δ)‖x‖², with δ from :meth:`Compressor.delta`;
* ``unbiased`` (ω): E C(x) = x and E‖C(x) − x‖² ≤ ω‖x‖², with ω from :meth:`Compressor.omega`;
* ``rounds``: the number of collectives per step (2 for PowerSGD).

Randomness is counter-based (specs/comm.md §3): :func:`counter_generator` seeds a local CPU ``torch.Generator`` from
``mix64(seed, step, crc32(name))`` so ranks sharing (seed, step, name) draw identical index sets, nothing is
sequential, and the global RNG is never touched. Source: Li, Zheng, Raman, Shrivastava, Giannakis, *Contractive error
feedback for gradient compression*, arXiv:2312.08538 (ConEF), and the papers cited per class.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "QSGD",
    "Compressor",
    "CountSketch",
    "Identity",
    "Payload",
    "PowerSGD",
    "RandomBlock",
    "RandomK",
    "ScaledSign",
    "TopK",
    "counter_generator",
    "fmix32",
    "mix64",
    "orthogonalize",
    "sketch",
    "sketch_hash",
    "unsketch",
]

_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1
# The reference's hash constants (specs/comm.md §3 "Hash"), used with unsigned arithmetic.
HASH_A, HASH_B = 994443, 609478


# ----------------------------------------------------------------------------------------------------------------
# Counter-based randomness and hashing
# ----------------------------------------------------------------------------------------------------------------
def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def mix64(*values: int) -> int:
    """Combine integers into one 64-bit value with SplitMix64 (order-sensitive, no state)."""
    h = 0
    for v in values:
        h = _splitmix64(h ^ (int(v) & _M64))
    return h


def counter_generator(seed: int, step: int, name: str, rank: int | None = None) -> torch.Generator:
    """A CPU generator seeded with ``mix64(seed, step, crc32(name)[, rank])`` (specs/comm.md §3).

    Ranks that share ``(seed, step, name)`` get the same stream (shared randomness); ``rank`` is mixed in for
    per-rank randomness (QSGD's rounding). Drawing on CPU makes CPU and CUDA runs agree.
    """
    parts = [seed, step, zlib.crc32(name.encode())]
    if rank is not None:
        parts.append(rank + 1)
    return torch.Generator().manual_seed(mix64(*parts) & ((1 << 63) - 1))


def _mul32(h: Tensor, c: int) -> Tensor:
    """(h · c) mod 2³² for int64 ``h`` in [0, 2³²), without int64 overflow (16-bit split of ``c``)."""
    c &= _M32
    lo, hi = c & 0xFFFF, c >> 16
    return (h * lo + (((h * hi) & 0xFFFF) << 16)) & _M32


def fmix32(h: Tensor) -> Tensor:
    """MurmurHash3's 32-bit finaliser, computed unsigned mod 2³² in masked int64 (never negative)."""
    h = h & _M32
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def sketch_hash(m: int, width: int, a: int = HASH_A, b: int = HASH_B,
                device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Bucket index and sign of each column j < m of a width-``width`` count sketch (specs/comm.md §3).

    h(j) = fmix32(a·j + b) mod W and σ(j) = 2·(fmix32((a+2)·j + b + 3) & 1) − 1, all mod 2³², unsigned. Returns
    ``(h int64 in [0, W), σ float32 in {±1})``.
    """
    if m < 1 or width < 1:
        raise ValueError(f"m and width must be >= 1, got m={m}, width={width}")
    j = torch.arange(m, dtype=torch.int64, device=device)
    h = fmix32((_mul32(j, a) + (b & _M32)) & _M32) % width
    s = fmix32((_mul32(j, (a + 2) & _M32) + ((b + 3) & _M32)) & _M32) & 1
    return h, (2 * s - 1).to(torch.float32)


def sketch(x: Tensor, h: Tensor, sign: Tensor, width: int, *, out: Tensor | None = None,
           chunk_numel: int = 1 << 20) -> Tensor:
    """Row-wise count sketch T = x·Sᵀ (n×W, fp32): T[:, h(j)] += σ(j)·x[:, j], in row chunks of ≤ chunk_numel."""
    n, m = x.shape
    if out is None:
        out = torch.zeros(n, width, dtype=torch.float32, device=x.device)
    rows = max(1, chunk_numel // max(m, 1))
    for r0 in range(0, n, rows):
        out[r0:r0 + rows].index_add_(1, h, x[r0:r0 + rows].float() * sign)
    return out


def unsketch(table: Tensor, h: Tensor, sign: Tensor, out: Tensor, *, scale: float = 1.0, accumulate: bool = False,
             chunk_numel: int = 1 << 20) -> Tensor:
    """out (+)= scale·T·S, i.e. out[:, j] = scale·σ(j)·T[:, h(j)], in row chunks of ≤ chunk_numel."""
    n, m = out.shape
    rows = max(1, chunk_numel // max(m, 1))
    for r0 in range(0, n, rows):
        dec = table[r0:r0 + rows].float().index_select(1, h).mul_(sign)
        if accumulate:
            out[r0:r0 + rows].add_(dec, alpha=scale)
        else:
            out[r0:r0 + rows].copy_(dec.mul_(scale) if scale != 1.0 else dec)
    return out


def orthogonalize(mat: Tensor, epsilon: float = 0.0) -> Tensor:
    """Orthonormalise the columns of ``mat`` (n×r) in place: Gram–Schmidt for r ≤ 2, QR otherwise (as PowerSGD).

    With ``epsilon`` > 0 each column is divided by ‖col‖ + ε; a zero column stays zero.
    """
    r = mat.shape[1]
    if r <= 2 or mat.dtype in (torch.float16, torch.bfloat16):
        tiny = torch.finfo(mat.dtype).tiny
        for i in range(r):
            col = mat[:, i:i + 1]
            norm = torch.linalg.vector_norm(col)
            col.div_(norm + epsilon if epsilon > 0 else norm.clamp_min(tiny))  # a zero column stays zero
            if i + 1 < r:
                rest = mat[:, i + 1:]
                rest.sub_(col @ (col.t() @ rest))
        return mat
    q, _ = torch.linalg.qr(mat)
    return mat.copy_(q)


# ----------------------------------------------------------------------------------------------------------------
# Base class
# ----------------------------------------------------------------------------------------------------------------
class Payload(NamedTuple):
    """``data``: the tensors that go on the wire (fixed sizes given the shape); ``ctx``: local context, never sent."""

    data: tuple[Tensor, ...]
    ctx: Any = None

    def with_data(self, data: Sequence[Tensor]) -> Payload:
        return Payload(tuple(data), self.ctx)


def as_matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """(n, m): the first dimension by the product of the rest; a vector is 1×d, a scalar 1×1."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def _check_ratio(ratio: float) -> float:
    if not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    return float(ratio)


def _k(ratio: float, d: int) -> int:
    return max(1, math.floor(ratio * d))


class Compressor:
    """Base class. Subclasses implement :meth:`wire_spec`, :meth:`compress` and :meth:`decompress`.

    ``linear`` marks compressors that are linear in x for a fixed random state (usable by an incremental
    :class:`~optimlab.comm.memory.CompressedMemory`); ``shared_randomness`` is False when each rank must draw its
    own randomness (QSGD).
    """

    all_reducable: bool = True
    contractive: bool = False
    unbiased: bool = False
    rounds: int = 1
    linear: bool = False
    shared_randomness: bool = True

    # --- declared properties ---------------------------------------------------------------------------------
    def delta(self, shape: Sequence[int]) -> float | None:
        """δ of the contraction E‖C(x)−x‖² ≤ (1−δ)‖x‖² where it has a closed form, else ``None``."""
        return None

    def omega(self, shape: Sequence[int]) -> float | None:
        """ω of an unbiased compressor (E‖C(x)−x‖² ≤ ω‖x‖²), else ``None``."""
        return None

    def is_contractive(self, shape: Sequence[int]) -> bool:
        """Whether C is contractive on tensors of ``shape`` (shape-dependent for :class:`CountSketch`)."""
        return self.contractive

    def wire_spec(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> list[tuple[int, torch.dtype]]:
        """(numel, dtype) of each wire tensor, in order; fixed by the shape (collectives need equal lengths)."""
        raise NotImplementedError

    def payload_numel(self, shape: Sequence[int]) -> int:
        """Number of wire elements for one tensor of ``shape`` (all rounds together)."""
        return sum(n for n, _ in self.wire_spec(shape, torch.float32))

    def payload_bytes(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> int:
        """Wire bytes for one tensor of ``shape`` whose values have ``dtype`` (all rounds together)."""
        return sum(n * (torch.finfo(t).bits // 8 if t.is_floating_point else torch.iinfo(t).bits // 8)
                   for n, t in self.wire_spec(shape, dtype))

    def should_compress(self, shape: Sequence[int], min_compression_rate: float = 2.0) -> bool:
        """True when the payload is smaller than the dense fp32 tensor by more than ``min_compression_rate``."""
        d = math.prod(as_matrix_shape(shape))
        return self.payload_bytes(shape, torch.float32) * min_compression_rate < 4 * d

    # --- wire format ---------------------------------------------------------------------------------------------
    def compress(self, x: Tensor, gen: torch.Generator, key: str | None = None) -> Payload:
        """Payload of the n×m tensor ``x`` (not modified); ``gen`` is a CPU generator (shared across ranks)."""
        raise NotImplementedError

    def decompress(self, payload: Payload, out: Tensor) -> Tensor:
        """Write the decoded n×m tensor into ``out`` (in place) and return it."""
        raise NotImplementedError

    def next_round(self, reduced: Payload, local: Payload) -> Payload:
        """Payload of the next round from the summed previous one (only for ``rounds > 1``)."""
        raise NotImplementedError(f"{type(self).__name__} has a single round")

    def observe(self, key: str | None, reduced: Payload) -> None:
        """Called with the averaged final payload of tensor ``key`` on every rank (PowerSGD's warm start)."""

    def apply(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """The local round trip C(x) (a new tensor of x's shape): compress, the extra rounds, decompress."""
        mat = x.reshape(as_matrix_shape(x.shape))
        payload = self.compress(mat, gen)
        for _ in range(self.rounds - 1):
            payload = self.next_round(payload, payload)
        out = torch.empty_like(mat)
        return self.decompress(payload, out).view_as(x)

    # --- persistent state (PowerSGD's Q) ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def nbytes(self) -> int:
        """Persistent bytes held by the compressor (PowerSGD's warm-start Q)."""
        return 0

    def config(self) -> dict[str, Any]:
        """Hyperparameters (compared on checkpoint load)."""
        return {"class": type(self).__name__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "class")
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------------------------------------------
# Compressors
# ----------------------------------------------------------------------------------------------------------------
class Identity(Compressor):
    """C(x) = x: δ = 1, ω = 0, payload d. Never worth compressing (:meth:`should_compress` is False by rate)."""

    all_reducable, contractive, unbiased, linear = True, True, True, True

    def delta(self, shape):
        return 1.0

    def omega(self, shape):
        return 0.0

    def wire_spec(self, shape, dtype=torch.float32):
        return [(math.prod(as_matrix_shape(shape)), dtype)]

    def compress(self, x, gen, key=None):
        return Payload((x.reshape(-1),))

    def decompress(self, payload, out):
        return out.copy_(payload.data[0].view_as(out))


class RandomBlock(Compressor):
    """Random contiguous block of k = max(1, ⌊ratio·d⌋) coordinates (cyclic), start u ~ U{0..d−1} (shared seed).

    Every coordinate is kept with probability k/d, so E‖C(x)−x‖² = (1−k/d)‖x‖² (contractive, δ = k/d in
    expectation). ``scaled=True`` multiplies by d/k: unbiased with ω = d/k − 1. Used as the gradient compressor Q in
    ConEF's experiments (arXiv:2312.08538; reference default ratio 0.1).
    """

    linear = True

    def __init__(self, ratio: float = 0.1, scaled: bool = False) -> None:
        self.ratio = _check_ratio(ratio)
        self.scaled = bool(scaled)
        self.contractive = not self.scaled
        self.unbiased = self.scaled

    def config(self):
        return {"class": type(self).__name__, "ratio": self.ratio, "scaled": self.scaled}

    def k(self, shape) -> int:
        return _k(self.ratio, math.prod(as_matrix_shape(shape)))

    def delta(self, shape):
        return None if self.scaled else self.k(shape) / math.prod(as_matrix_shape(shape))

    def omega(self, shape):
        return math.prod(as_matrix_shape(shape)) / self.k(shape) - 1.0 if self.scaled else None

    def wire_spec(self, shape, dtype=torch.float32):
        return [(self.k(shape), dtype)]

    def _indices(self, d: int, k: int, gen: torch.Generator):
        return torch.randint(d, (1,), generator=gen).item()

    def compress(self, x, gen, key=None):
        flat = x.reshape(-1)
        d = flat.numel()
        k = _k(self.ratio, d)
        u = self._indices(d, k, gen)
        if u + k <= d:
            vals = flat[u:u + k].clone()
        else:
            vals = torch.cat([flat[u:], flat[: u + k - d]])
        return Payload((vals,), (u, d, k))

    def decompress(self, payload, out):
        u, d, k = payload.ctx
        vals = payload.data[0]
        if self.scaled:
            vals = vals * (d / k)
        flat = out.view(-1)
        flat.zero_()
        if u + k <= d:
            flat[u:u + k] = vals
        else:
            flat[u:] = vals[: d - u]
            flat[: u + k - d] = vals[d - u:]
        return out


class RandomK(RandomBlock):
    """k = max(1, ⌊ratio·d⌋) coordinates drawn without replacement (``randperm`` of the shared generator).

    Same moments as :class:`RandomBlock` (each coordinate kept with probability k/d); Stich et al. arXiv:1809.07599.
    """

    def compress(self, x, gen, key=None):
        flat = x.reshape(-1)
        d = flat.numel()
        k = _k(self.ratio, d)
        idx = torch.randperm(d, generator=gen)[:k].to(flat.device)
        return Payload((flat.index_select(0, idx),), idx)

    def decompress(self, payload, out):
        idx = payload.ctx
        vals = payload.data[0]
        d = out.numel()
        if self.scaled:
            vals = vals * (d / idx.numel())
        flat = out.view(-1)
        flat.zero_()
        flat.index_copy_(0, idx, vals)
        return out


class TopK(Compressor):
    """The k = max(1, ⌊ratio·d⌋) largest-magnitude coordinates: ‖C(x)−x‖² ≤ (1−k/d)‖x‖² for every x.

    Not all-reducable (each rank keeps different indices): the hook all-gathers k values and k int32 indices.
    """

    all_reducable, contractive, unbiased = False, True, False

    def __init__(self, ratio: float = 0.1) -> None:
        self.ratio = _check_ratio(ratio)

    def config(self):
        return {"class": type(self).__name__, "ratio": self.ratio}

    def delta(self, shape):
        d = math.prod(as_matrix_shape(shape))
        return _k(self.ratio, d) / d

    def wire_spec(self, shape, dtype=torch.float32):
        k = _k(self.ratio, math.prod(as_matrix_shape(shape)))
        return [(k, dtype), (k, torch.int32)]

    def compress(self, x, gen, key=None):
        flat = x.reshape(-1)
        k = _k(self.ratio, flat.numel())
        idx = flat.abs().topk(k, sorted=False).indices
        return Payload((flat.index_select(0, idx), idx.to(torch.int32)))

    def decompress(self, payload, out):
        vals, idx = payload.data
        flat = out.view(-1)
        flat.zero_()
        flat.index_copy_(0, idx.long(), vals.to(flat.dtype))
        return out


_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.int32)


class ScaledSign(Compressor):
    """C(x) = (‖x‖₁/d)·sign(x), sign(0) = +1 (Karimireddy et al., arXiv:1901.09847).

    ‖C(x)−x‖² = ‖x‖² − ‖x‖₁²/d exactly, so δ(x) = ‖x‖₁²/(d‖x‖²) ≥ 1/d (:meth:`delta` returns the worst case 1/d).
    Wire: ⌈d/8⌉ bytes of packed signs and one fp32 scale; not all-reducable (per-rank scales).
    """

    all_reducable, contractive, unbiased = False, True, False

    def config(self):
        return {"class": type(self).__name__}

    def delta(self, shape):
        return 1.0 / math.prod(as_matrix_shape(shape))

    def wire_spec(self, shape, dtype=torch.float32):
        d = math.prod(as_matrix_shape(shape))
        return [(-(-d // 8), torch.uint8), (1, torch.float32)]

    def compress(self, x, gen, key=None):
        flat = x.reshape(-1)
        d = flat.numel()
        bits = (flat >= 0).to(torch.int32)
        pad = (-d) % 8
        if pad:
            bits = torch.cat([bits, bits.new_zeros(pad)])
        packed = (bits.view(-1, 8) * _BIT_WEIGHTS.to(bits.device)).sum(1).to(torch.uint8)
        scale = (flat.float().abs().sum() / d).reshape(1)
        return Payload((packed, scale))

    def decompress(self, payload, out):
        packed, scale = payload.data
        d = out.numel()
        bits = (packed.to(torch.int32).unsqueeze(1) >> torch.arange(8, device=packed.device)) & 1
        sign = bits.reshape(-1)[:d].to(out.dtype).mul_(2).sub_(1)
        out.view(-1).copy_(sign.mul_(scale.to(out.dtype)))
        return out


class QSGD(Compressor):
    """QSGD with s levels (Alistarh et al., arXiv:1610.02132): C(x)_j = ‖x‖₂·sign(x_j)·ξ_j/s.

    ξ_j rounds s|x_j|/‖x‖₂ stochastically to an adjacent integer, so E C(x) = x with ω = min(d/s², √d/s). The
    rounding uses per-rank randomness. ``contractive_scale=True`` decodes (1/(1+ω))·C(x): contractive with
    δ = 1/(1+ω), biased. Wire: d int8 levels (int16 above 127 levels) and one fp32 norm; not all-reducable.
    """

    all_reducable = False
    shared_randomness = False

    def __init__(self, levels: int = 127, contractive_scale: bool = False) -> None:
        if not isinstance(levels, int) or isinstance(levels, bool) or not 1 <= levels <= 32767:
            raise ValueError(f"levels must be an integer in [1, 32767], got {levels!r}")
        self.levels = levels
        self.contractive_scale = bool(contractive_scale)
        self.contractive = self.contractive_scale
        self.unbiased = not self.contractive_scale

    def config(self):
        return {"class": type(self).__name__, "levels": self.levels, "contractive_scale": self.contractive_scale}

    def _omega(self, shape) -> float:
        d = math.prod(as_matrix_shape(shape))
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)

    def omega(self, shape):
        return None if self.contractive_scale else self._omega(shape)

    def delta(self, shape):
        return 1.0 / (1.0 + self._omega(shape)) if self.contractive_scale else None

    def _qdtype(self):
        return torch.int8 if self.levels <= 127 else torch.int16

    def wire_spec(self, shape, dtype=torch.float32):
        return [(math.prod(as_matrix_shape(shape)), self._qdtype()), (1, torch.float32)]

    def compress(self, x, gen, key=None):
        flat = x.reshape(-1).float()
        norm = torch.linalg.vector_norm(flat)
        safe = torch.where(norm > 0, norm, torch.ones_like(norm))
        r = flat.abs() / safe * self.levels
        low = r.floor()
        u = torch.rand(flat.numel(), generator=gen).to(flat.device)
        xi = low + (u < (r - low)).to(low.dtype)
        q = (torch.sign(flat) * xi).to(self._qdtype())
        return Payload((q, norm.reshape(1)))

    def decompress(self, payload, out):
        q, norm = payload.data
        scale = norm / self.levels
        if self.contractive_scale:
            scale = scale / (1.0 + self._omega(out.shape))
        out.view(-1).copy_(q.to(torch.float32) * scale)
        return out


class CountSketch(Compressor):
    """Count-sketch wire compressor: each row of the n×m tensor is sketched to W buckets, T = S·x (row-wise).

    W = max(1, ⌊ratio·m/rows⌋) per hash row; decode λ·(1/rows)·Σ_r S_rᵀT_r. Hashes are fresh every step (drawn from
    the shared counter generator), hence E‖SᵀSx − x‖² = κ‖x‖² with κ = (m−1)/(rows·W): unbiased at scale λ = 1
    (ω = κ), and contractive iff 0 < λ < 2/(1+κ), with 1 − δ = (1−λ)² + λ²κ (best at λ = 1/(1+κ)). Linear, so
    all-reducable (FetchSGD, arXiv:2007.07682; ConEF's memory sketch, arXiv:2312.08538).
    """

    linear = True

    def __init__(self, ratio: float = 0.1, rows: int = 1, scale: float = 1.0) -> None:
        self.ratio = _check_ratio(ratio)
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise ValueError(f"rows must be an integer >= 1, got {rows!r}")
        if not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.rows, self.scale = rows, float(scale)
        self.unbiased = self.scale == 1.0

    def config(self):
        return {"class": type(self).__name__, "ratio": self.ratio, "rows": self.rows, "scale": self.scale}

    def width(self, shape) -> int:
        _, m = as_matrix_shape(shape)
        return max(1, math.floor(self.ratio * m / self.rows))

    def kappa(self, shape) -> float:
        _, m = as_matrix_shape(shape)
        return (m - 1) / (self.rows * self.width(shape))

    def delta(self, shape):
        lam, kap = self.scale, self.kappa(shape)
        d = 1.0 - ((1 - lam) ** 2 + lam**2 * kap)
        return d if d > 0 else None

    def omega(self, shape):
        return self.kappa(shape) if self.scale == 1.0 else None

    def is_contractive(self, shape):
        return 0 < self.scale < 2.0 / (1.0 + self.kappa(shape))

    def wire_spec(self, shape, dtype=torch.float32):
        n, _ = as_matrix_shape(shape)
        return [(self.rows * n * self.width(shape), dtype)]

    def hashes(self, m: int, width: int, gen: torch.Generator, device) -> list[tuple[Tensor, Tensor]]:
        out = []
        for _ in range(self.rows):
            a = torch.randint(1 << 31, (1,), generator=gen).item() * 2 + 1
            b = torch.randint(1 << 31, (1,), generator=gen).item()
            out.append(sketch_hash(m, width, a, b, device=device))
        return out

    def compress(self, x, gen, key=None):
        m = x.shape[1]
        w = self.width(x.shape)
        hs = self.hashes(m, w, gen, x.device)
        tables = [sketch(x, h, s, w) for h, s in hs]
        return Payload((torch.cat([t.reshape(-1) for t in tables]).to(x.dtype),), (hs, w))

    def decompress(self, payload, out):
        hs, w = payload.ctx
        n = out.shape[0]
        data = payload.data[0].view(self.rows, n, w)
        out.zero_()
        for r, (h, s) in enumerate(hs):
            unsketch(data[r], h, s, out, scale=self.scale / self.rows, accumulate=True)
        return out


class PowerSGD(Compressor):
    """Rank-r PowerSGD (Vogels et al., arXiv:1905.13727), in the form of PyTorch's ``powerSGD_hook``.

    Round 1: P_i = M_i Q₀ (Q₀ = previous Q̄ re-orthonormalised when ``warm_start``, else Gaussian from the shared
    CPU generator), all-reduce, P̂ = orth(ΣP_i). Round 2: Q_i = M_iᵀP̂, all-reduce, Q̄ = ΣQ_i/N. Output P̂Q̄ᵀ = P̂P̂ᵀM̄.
    r = min(rank, n, m); a tensor is compressed only if (n+m)·r·min_compression_rate < n·m. A projection:
    contractive in expectation but with no closed-form δ; biased.
    """

    all_reducable, contractive, unbiased, rounds = True, True, False, 2

    def __init__(self, rank: int = 1, warm_start: bool = True, min_compression_rate: float = 2.0,
                 orthogonalization_epsilon: float = 0.0) -> None:
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
        if not min_compression_rate >= 0:
            raise ValueError(f"min_compression_rate must be >= 0, got {min_compression_rate!r}")
        if not orthogonalization_epsilon >= 0:
            raise ValueError(f"orthogonalization_epsilon must be >= 0, got {orthogonalization_epsilon!r}")
        self.rank, self.warm_start = rank, bool(warm_start)
        self.min_compression_rate = float(min_compression_rate)
        self.orthogonalization_epsilon = float(orthogonalization_epsilon)
        self._q: dict[str, Tensor] = {}

    def config(self):
        return {"class": type(self).__name__, "rank": self.rank, "warm_start": self.warm_start,
                "min_compression_rate": self.min_compression_rate,
                "orthogonalization_epsilon": self.orthogonalization_epsilon}

    def _r(self, shape) -> int:
        n, m = as_matrix_shape(shape)
        return min(self.rank, n, m)

    def wire_spec(self, shape, dtype=torch.float32):
        n, m = as_matrix_shape(shape)
        r = self._r(shape)
        return [(n * r, dtype), (m * r, dtype)]

    def should_compress(self, shape, min_compression_rate=None):
        n, m = as_matrix_shape(shape)
        return (n + m) * self._r(shape) * self.min_compression_rate < n * m

    def compress(self, x, gen, key=None):
        n, m = x.shape
        r = min(self.rank, n, m)
        q = self._q.get(key) if (self.warm_start and key is not None) else None
        if q is not None and q.shape != (m, r):
            raise ValueError(f"PowerSGD warm-start Q for {key!r} has shape {tuple(q.shape)}, expected {(m, r)}")
        if q is None:
            q = torch.randn(m, r, generator=gen, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
        orthogonalize(q, self.orthogonalization_epsilon)
        p = x @ q
        return Payload((p.reshape(-1),), {"M": x, "key": key, "r": r})

    def next_round(self, reduced, local):
        m_ = local.ctx["M"]
        n, r = m_.shape[0], local.ctx["r"]
        p_hat = orthogonalize(reduced.data[0].view(n, r), self.orthogonalization_epsilon)
        q = m_.t() @ p_hat
        return Payload((q.reshape(-1),), {"P": p_hat, "key": local.ctx["key"], "r": r})

    def decompress(self, payload, out):
        p_hat, r = payload.ctx["P"], payload.ctx["r"]
        q = payload.data[0].view(out.shape[1], r)
        torch.matmul(p_hat, q.t(), out=out)
        return out

    def observe(self, key, reduced):
        if not self.warm_start or key is None:
            return
        q = reduced.data[0].view(-1, reduced.ctx["r"])
        if key in self._q and self._q[key].shape == q.shape:
            self._q[key].copy_(q)
        else:
            self._q[key] = q.clone()

    def state_dict(self):
        return {"q": {k: v.detach().clone() for k, v in self._q.items()}}

    def load_state_dict(self, state):
        self._q = {k: v.clone() for k, v in state.get("q", {}).items()}

    def nbytes(self):
        return sum(v.numel() * v.element_size() for v in self._q.values())

    def predict_nbytes(self, shape, dtype=torch.float32) -> int:
        _, m = as_matrix_shape(shape)
        return m * self._r(shape) * torch.tensor([], dtype=dtype).element_size() if self.warm_start else 0
