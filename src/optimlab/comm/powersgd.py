"""Rank-r PowerSGD as a compressor (Vogels, Karimireddy, Jaggi, arXiv:1905.13727), in the form of PyTorch's
``powerSGD_hook``: two all-reduce rounds per step (P, then Q), a warm-started Q, Gram–Schmidt orthogonalisation.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from optimlab._validation import Constraint, Interval, Options, validate
from optimlab.comm.compressors import Compressor, Payload, as_matrix_shape

__all__ = ["PowerSGD", "orthogonalize"]


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


class PowerSGD(Compressor):
    """Rank-r PowerSGD (Vogels et al., arXiv:1905.13727), in the form of PyTorch's ``powerSGD_hook``.

    Round 1: P_i = M_i Q₀ (Q₀ = previous Q̄ re-orthonormalised when ``warm_start``, else Gaussian from the shared
    CPU generator), all-reduce, P̂ = orth(ΣP_i). Round 2: Q_i = M_iᵀP̂, all-reduce, Q̄ = ΣQ_i/N. Output P̂Q̄ᵀ = P̂P̂ᵀM̄.
    r = min(rank, n, m); a tensor is compressed only if (n+m)·r·min_compression_rate < n·m. A projection:
    contractive in expectation but with no closed-form δ; biased.
    """

    all_reducible, contractive, unbiased, rounds = True, True, False, 2
    default_residual = "global"  # as PyTorch's powerSGD_hook (error = input − the decoded average)
    _constraints: ClassVar[dict[str, Constraint]] = {
        "rank": Interval(1, None, integer=True), "warm_start": Options(True, False),
        "min_compression_rate": Interval(0, math.inf, closed="left"),
        "orthogonalization_epsilon": Interval(0, math.inf, closed="left")}

    def __init__(self, rank: int = 1, warm_start: bool = True, min_compression_rate: float = 2.0,
                 orthogonalization_epsilon: float = 0.0) -> None:
        v = validate(self._constraints, {"rank": rank, "warm_start": warm_start,
                                         "min_compression_rate": min_compression_rate,
                                         "orthogonalization_epsilon": orthogonalization_epsilon}, owner="PowerSGD")
        self.rank, self.warm_start = v["rank"], v["warm_start"]
        self.min_compression_rate = v["min_compression_rate"]
        self.orthogonalization_epsilon = v["orthogonalization_epsilon"]
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

    def should_compress(self, shape, rate=None):
        """PyTorch's rule, with this compressor's own ``min_compression_rate`` (``rate`` is ignored):
        (n + m)·r·min_compression_rate < n·m."""
        n, m = as_matrix_shape(shape)
        return (n + m) * self._r(shape) * self.min_compression_rate < n * m

    def compress(self, x, generator, key=None):
        n, m = x.shape
        r = min(self.rank, n, m)
        q = self._q.get(key) if (self.warm_start and key is not None) else None
        if q is not None and q.shape != (m, r):
            raise ValueError(f"PowerSGD warm-start Q for {key!r} has shape {tuple(q.shape)}, expected {(m, r)}")
        if q is None:
            q = torch.randn(m, r, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
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
