"""Count-sketch kernels: the unsigned fmix32 hash, row-wise sketching and decoding, and the count-sketch compressor.

A count sketch of width W maps the m columns of an n×m tensor to W buckets: S ∈ {0, ±1}^{W×m} with
S[h(j), j] = σ(j), applied row-wise (T = x·Sᵀ, n×W), and decoded as λ·T·S. ConEF (Li, Zheng, Raman, Shrivastava,
Giannakis, arXiv:2312.08538) stores its error memory this way; FetchSGD (arXiv:2007.07682) sends gradients this way.

The hash is the reference code's (constants a = 994443, b = 609478), computed with **unsigned** arithmetic mod 2³² in
masked int64, so indices are never negative (the reference's signed kernel overflows and gives negative
indices).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from optimlab._validation import Constraint, Interval, validate
from optimlab.comm.compressors import Compressor, Payload, as_matrix_shape

__all__ = ["HASH_A", "HASH_B", "CountSketch", "fmix32", "sketch", "sketch_hash", "unsketch"]

_M32 = 0xFFFFFFFF
# The reference code's hash constants (github.com/BingcongLi/ConEF), used with unsigned arithmetic.
HASH_A, HASH_B = 994443, 609478


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
    """Bucket index and sign of each column j < m of a width-``width`` count sketch (ConEF, arXiv:2312.08538).

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


def unsketch(table: Tensor, h: Tensor, sign: Tensor, out: Tensor, *, lam: float = 1.0, accumulate: bool = False,
             chunk_numel: int = 1 << 20) -> Tensor:
    """out (+)= λ·T·S, i.e. out[:, j] = λ·σ(j)·T[:, h(j)], in row chunks of ≤ chunk_numel (λ = ``lam``)."""
    n, m = out.shape
    rows = max(1, chunk_numel // max(m, 1))
    for r0 in range(0, n, rows):
        dec = table[r0:r0 + rows].float().index_select(1, h).mul_(sign)
        if accumulate:
            out[r0:r0 + rows].add_(dec, alpha=lam)
        else:
            out[r0:r0 + rows].copy_(dec.mul_(lam) if lam != 1.0 else dec)
    return out


class CountSketch(Compressor):
    """Count-sketch wire compressor: each row of the n×m tensor is sketched to W buckets, T = S·x (row-wise).

    W = max(1, ⌊ratio·m/rows⌋) per hash row; decode λ·(1/rows)·Σ_r S_rᵀT_r. Hashes are fresh every step (drawn from
    the shared counter generator), hence E‖SᵀSx − x‖² = κ‖x‖² with κ = (m−1)/(rows·W): unbiased at λ = 1 (ω = κ),
    and contractive iff 0 < λ < 2/(1+κ), with 1 − δ = (1−λ)² + λ²κ (best at λ = 1/(1+κ)). Linear, so
    all-reducible (FetchSGD, arXiv:2007.07682; ConEF's memory sketch, arXiv:2312.08538).
    """

    linear = True
    contraction_depends_on_shape = True
    _constraints: ClassVar[dict[str, Constraint]] = {
        "ratio": Interval(0, 1, closed="right"), "rows": Interval(1, None, integer=True),
        "lam": Interval(0, math.inf, closed="neither")}

    def __init__(self, ratio: float = 0.1, rows: int = 1, lam: float = 1.0) -> None:
        v = validate(self._constraints, {"ratio": ratio, "rows": rows, "lam": lam}, owner="CountSketch")
        self.ratio, self.rows, self.lam = v["ratio"], v["rows"], v["lam"]
        self.unbiased = self.lam == 1.0

    def config(self):
        return {"class": type(self).__name__, "ratio": self.ratio, "rows": self.rows, "lam": self.lam}

    def width(self, shape) -> int:
        _, m = as_matrix_shape(shape)
        return max(1, math.floor(self.ratio * m / self.rows))

    def kappa(self, shape) -> float:
        _, m = as_matrix_shape(shape)
        return (m - 1) / (self.rows * self.width(shape))

    def delta(self, shape):
        lam, kap = self.lam, self.kappa(shape)
        d = 1.0 - ((1 - lam) ** 2 + lam**2 * kap)
        return d if d > 0 else None

    def omega(self, shape):
        return self.kappa(shape) if self.lam == 1.0 else None

    def is_contractive(self, shape):
        return 0 < self.lam < 2.0 / (1.0 + self.kappa(shape))

    def wire_spec(self, shape, dtype=torch.float32):
        n, _ = as_matrix_shape(shape)
        return [(self.rows * n * self.width(shape), dtype)]

    def hashes(self, m: int, width: int, generator: torch.Generator, device) -> list[tuple[Tensor, Tensor]]:
        """(h, σ) of each hash row, with (a, b) drawn from ``generator`` (a odd)."""
        out = []
        for _ in range(self.rows):
            a = torch.randint(1 << 31, (1,), generator=generator).item() * 2 + 1
            b = torch.randint(1 << 31, (1,), generator=generator).item()
            out.append(sketch_hash(m, width, a, b, device=device))
        return out

    def compress(self, x, generator, key=None):
        m = x.shape[1]
        w = self.width(x.shape)
        hs = self.hashes(m, w, generator, x.device)
        tables = [sketch(x, h, s, w) for h, s in hs]
        return Payload((torch.cat([t.reshape(-1) for t in tables]).to(x.dtype),), (hs, w))

    def decompress(self, payload, out):
        hs, w = payload.ctx
        n = out.shape[0]
        data = payload.data[0].view(self.rows, n, w)
        out.zero_()
        for r, (h, s) in enumerate(hs):
            unsketch(data[r], h, s, out, lam=self.lam / self.rows, accumulate=True)
        return out
