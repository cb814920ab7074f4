"""Gradient compressors: the wire format of one gradient tensor, viewed as an n×m matrix.

A compressor maps a tensor ``x`` (viewed as n×m: the first dimension by the product of the rest; a vector as 1×d)
to a :class:`Payload` whose ``data`` tensors are what goes on the wire, plus a local ``ctx`` (indices, hashes) that
is re-derived from shared randomness and never sent. Each class declares

* ``all_reducible``: linear for a fixed random state shared by every process, so that
  ``decompress(Σ_i compress(x_i)) = Σ_i decompress(compress(x_i))`` and one all-reduce moves O(payload);
* ``contractive`` (δ ∈ (0, 1]): E‖C(x) − x‖² ≤ (1 − δ)‖x‖², with δ from :meth:`Compressor.delta`;
* ``unbiased`` (ω): E C(x) = x and E‖C(x) − x‖² ≤ ω‖x‖², with ω from :meth:`Compressor.omega`;
* ``rounds``: the number of collectives per step (2 for PowerSGD).

Randomness is counter-based: the hook seeds a local CPU ``torch.Generator`` with
:func:`optimlab._random.counter_generator` ``(seed, step, name)``, so processes sharing (seed, step, name) draw
identical index sets, nothing is sequential, and the global RNG is never touched. Source: Li, Zheng, Raman,
Shrivastava, Giannakis, *Contractive error feedback for gradient compression*, arXiv:2312.08538 (ConEF), and the
papers cited per class. :class:`~optimlab.comm.sketch.CountSketch` and :class:`~optimlab.comm.powersgd.PowerSGD` live
in their own modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from optimlab._validation import Interval, Options, validate

__all__ = ["QSGD", "Compressor", "Identity", "Payload", "RandomBlock", "RandomK", "ScaledSign", "TopK",
           "as_matrix_shape"]

_RATIO = {"ratio": Interval(0, 1, closed="right")}


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


def _k(ratio: float, d: int) -> int:
    return max(1, math.floor(ratio * d))


class Compressor:
    """Base class. Subclasses implement :meth:`wire_spec`, :meth:`compress` and :meth:`decompress`.

    Class attributes: ``all_reducible``, ``contractive``, ``unbiased``, ``rounds`` (see the module docstring);
    ``linear`` marks compressors that are linear in x for a fixed random state (usable by an incremental
    :class:`~optimlab.comm.memory.CompressedMemory`); ``shared_randomness`` is False when each process must draw its
    own randomness (QSGD); ``contraction_depends_on_shape`` is True when :meth:`is_contractive` depends on the shape
    (a count sketch); ``default_residual`` is the residual a :class:`~optimlab.comm.hooks.CommState` uses when none
    is given (``"global"`` for PowerSGD, as PyTorch's hook).
    """

    all_reducible: bool = True
    contractive: bool = False
    unbiased: bool = False
    rounds: int = 1
    linear: bool = False
    shared_randomness: bool = True
    contraction_depends_on_shape: bool = False
    default_residual: str = "local"

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

    def should_compress(self, shape: Sequence[int], rate: float = 2.0) -> bool:
        """True when the payload is smaller than the dense fp32 tensor by more than ``rate`` (payload·rate < 4d)."""
        d = math.prod(as_matrix_shape(shape))
        return self.payload_bytes(shape, torch.float32) * rate < 4 * d

    def predict_nbytes(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> int:
        """Persistent bytes the compressor will hold for one tensor of ``shape`` (PowerSGD's Q), from the shape."""
        return 0

    # --- wire format ---------------------------------------------------------------------------------------------
    def compress(self, x: Tensor, generator: torch.Generator, key: str | None = None) -> Payload:
        """Payload of the n×m tensor ``x`` (not modified); ``generator``: a CPU generator (shared across processes)."""
        raise NotImplementedError

    def decompress(self, payload: Payload, out: Tensor) -> Tensor:
        """Write the decoded n×m tensor into ``out`` (in place) and return it."""
        raise NotImplementedError

    def next_round(self, reduced: Payload, local: Payload) -> Payload:
        """Payload of the next round from the summed previous one (only for ``rounds > 1``)."""
        raise NotImplementedError(f"{type(self).__name__} has a single round")

    def observe(self, key: str | None, reduced: Payload) -> None:
        """Called with the averaged final payload of tensor ``key`` on every process (PowerSGD's warm start)."""

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """The local round trip C(x) (a new tensor of x's shape): compress, the extra rounds, decompress."""
        mat = x.reshape(as_matrix_shape(x.shape))
        payload = self.compress(mat, generator)
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

    all_reducible, contractive, unbiased, linear = True, True, True, True

    def delta(self, shape):
        return 1.0

    def omega(self, shape):
        return 0.0

    def wire_spec(self, shape, dtype=torch.float32):
        return [(math.prod(as_matrix_shape(shape)), dtype)]

    def compress(self, x, generator, key=None):
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
        v = validate({**_RATIO, "scaled": Options(True, False)}, {"ratio": ratio, "scaled": scaled},
                     owner=type(self).__name__)
        self.ratio, self.scaled = v["ratio"], v["scaled"]
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

    def _indices(self, d: int, k: int, generator: torch.Generator):
        return torch.randint(d, (1,), generator=generator).item()

    def compress(self, x, generator, key=None):
        flat = x.reshape(-1)
        d = flat.numel()
        k = _k(self.ratio, d)
        u = self._indices(d, k, generator)
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

    def compress(self, x, generator, key=None):
        flat = x.reshape(-1)
        d = flat.numel()
        k = _k(self.ratio, d)
        idx = torch.randperm(d, generator=generator)[:k].to(flat.device)
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

    Not all-reducible (each process keeps different indices): the hook all-gathers k values and k int32 indices.
    """

    all_reducible, contractive, unbiased = False, True, False

    def __init__(self, ratio: float = 0.1) -> None:
        self.ratio = validate(_RATIO, {"ratio": ratio}, owner="TopK")["ratio"]

    def config(self):
        return {"class": type(self).__name__, "ratio": self.ratio}

    def delta(self, shape):
        d = math.prod(as_matrix_shape(shape))
        return _k(self.ratio, d) / d

    def wire_spec(self, shape, dtype=torch.float32):
        k = _k(self.ratio, math.prod(as_matrix_shape(shape)))
        return [(k, dtype), (k, torch.int32)]

    def compress(self, x, generator, key=None):
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
    Wire: ⌈d/8⌉ bytes of packed signs and one fp32 scale; not all-reducible (per-process scales).
    """

    all_reducible, contractive, unbiased = False, True, False

    def config(self):
        return {"class": type(self).__name__}

    def delta(self, shape):
        return 1.0 / math.prod(as_matrix_shape(shape))

    def wire_spec(self, shape, dtype=torch.float32):
        d = math.prod(as_matrix_shape(shape))
        return [(-(-d // 8), torch.uint8), (1, torch.float32)]

    def compress(self, x, generator, key=None):
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
    rounding uses per-process randomness. ``contractive_scale=True`` decodes (1/(1+ω))·C(x): contractive with
    δ = 1/(1+ω), biased. Wire: d int8 levels (int16 above 127 levels) and one fp32 norm; not all-reducible.
    """

    all_reducible = False
    shared_randomness = False

    def __init__(self, levels: int = 127, contractive_scale: bool = False) -> None:
        v = validate({"levels": Interval(1, 32767, integer=True), "contractive_scale": Options(True, False)},
                     {"levels": levels, "contractive_scale": contractive_scale}, owner="QSGD")
        self.levels, self.contractive_scale = v["levels"], v["contractive_scale"]
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

    def compress(self, x, generator, key=None):
        flat = x.reshape(-1).float()
        norm = torch.linalg.vector_norm(flat)
        safe = torch.where(norm > 0, norm, torch.ones_like(norm))
        r = flat.abs() / safe * self.levels
        low = r.floor()
        u = torch.rand(flat.numel(), generator=generator).to(flat.device)
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


