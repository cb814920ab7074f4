"""``MetaCurvature`` (Park, Oliva, arXiv:1902.03356): a meta-learned, Kronecker-factored preconditioner of the inner
gradient. A tensor reshaped to its modes (d_1, …, d_r) (a conv weight (o, i, kh, kw) → (o, i, kh·kw)) gets one
identity-initialised matrix per mode, M_j ∈ R^{d_j×d_j}, and
    θ ← θ − α · (G ×₁ M₁ ×₂ ⋯ ×_r M_r),
the mode products of the gradient G. 1-D tensors get an elementwise scale (``vector_mode="diag"``, as the public
implementations do) or a full matrix when numel ≤ ``full_max`` (``"full"``). PSD-ness of M is not enforced
(UNVERIFIED whether the paper constrains it). At initialisation the update is MAML's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from optimlab._validation import Interval, Options, check
from optimlab.meta.iaf import mode_shape
from optimlab.meta.learners import GradientMetaLearner
from optimlab.meta.maps import key


class MetaCurvature(GradientMetaLearner):
    """Equation in the module docstring; ``inner_lr`` α is fixed (the matrices carry the scale)."""

    owner = "MetaCurvature"

    def __init__(self, model, loss_fn, *, vector_mode: str = "diag", full_max: int = 256, **kw) -> None:
        super().__init__(model, loss_fn, **kw)
        self.vector_mode = check(Options("diag", "full"), vector_mode, "vector_mode", owner=self.owner)
        self.full_max = check(Interval(1, None, integer=True), full_max, "full_max", owner=self.owner)
        params = dict(model.named_parameters())
        self.curvature = nn.ModuleDict()
        self.diag = nn.ParameterDict()
        for n in self.adapted_names:
            p = params[n]
            kw_t = {"dtype": p.dtype, "device": p.device}
            if p.dim() >= 2 or (self.vector_mode == "full" and p.numel() <= self.full_max):
                modes = mode_shape(p.shape) if p.dim() >= 2 else (p.numel(),)
                self.curvature[key(n)] = nn.ParameterList(nn.Parameter(torch.eye(d, **kw_t)) for d in modes)
            else:
                self.diag[key(n)] = nn.Parameter(torch.ones_like(p.detach()))

    def _precondition(self, n: str, g: Tensor) -> Tensor:
        k = key(n)
        if k in self.diag:
            return self.diag[k] * g
        mats = self.curvature[k]
        x = g.reshape(tuple(m.shape[0] for m in mats))
        for j, m in enumerate(mats):
            x = torch.movedim(torch.tensordot(x, m, dims=([j], [1])), -1, j)
        return x.reshape(g.shape)

    def init_state(self, init):
        return dict(init)

    def state_to_params(self, state):
        return state

    def update(self, state, grads, k):
        return {n: state[n] - self.inner_lr * self._precondition(n, grads[n]) for n in state}


__all__ = ["MetaCurvature"]
