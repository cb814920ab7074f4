"""``ICNNGradientMap``: the exact gradient of a learned strongly convex potential, after input-convex neural
networks (Amos, Xu, Kolter, arXiv:1609.07152) used as mirror potentials (Tan, Mukherjee, Tang, Schönlieb,
arXiv:2206.06733). For each adapted tensor (flattened, numel ≤ ``max_numel``):
    Ψ(u) = ½(m_min + e^ℓ)‖u‖² + F(u) − F(0) − ⟨∇F(0), u⟩,   h(u) = ∇Ψ(u) (``torch.func.grad``),
F an ICNN with softplus activations: z₁ = σ(W₀u + b₀), z_{j+1} = σ(softplus(V_j) z_j + W_j u + b_j),
F = Σ max(a, 0) ⊙ z_L with the output weights a zero-initialised (so h(u) = u at init, as ℓ = log(1 − m_min)).
F is convex (non-negative weights on convex non-decreasing units), so the Jacobian of h is symmetric with every
eigenvalue ≥ m_min + e^ℓ: a genuine mirror map. Cost: a double backward per inner step and third-order terms in
the second-order meta-gradient — for toy problems. Design of this library (the papers' maps are not ICNNs).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optimlab._random import check_generator
from optimlab._validation import Interval, check
from optimlab.meta.maps import LOG_CLAMP, MirrorMap, key


class _ICNN(nn.Module):
    def __init__(self, n: int, hidden: tuple[int, ...], *, dtype, device, generator) -> None:
        super().__init__()
        kw = {"dtype": dtype, "device": device}

        def uniform(*shape, fan_in):
            return nn.Parameter(torch.empty(shape, **kw).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in),
                                                                   generator=generator))
        self.W = nn.ParameterList([uniform(h, n, fan_in=n) for h in hidden])
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(h, **kw)) for h in hidden])
        self.V = nn.ParameterList([uniform(b, a, fan_in=a) for a, b in zip(hidden[:-1], hidden[1:])])
        self.a = nn.Parameter(torch.zeros(hidden[-1], **kw))  # output weights, zero at init, used as max(a, 0)

    def forward(self, x: Tensor) -> Tensor:
        z = F.softplus(self.W[0] @ x + self.b[0])
        for V, W, b in zip(self.V, self.W[1:], self.b[1:]):
            z = F.softplus(F.softplus(V) @ z + W @ x + b)
        return self.a.clamp(min=0) @ z


class ICNNGradientMap(MirrorMap):
    """Equation in the module docstring. ``hidden``: widths of the ICNN; ``max_numel``: the largest tensor it may
    act on (the Jacobian-free cost is O(numel·width) per call, but inversion builds numel × numel Hessians)."""

    owner = "ICNNGradientMap"

    def __init__(self, named_shapes, *, hidden: tuple[int, ...] = (32, 32), min_slope: float = 1e-3,
                 max_numel: int = 4096, dtype=torch.float32, device=None, generator=None) -> None:
        super().__init__(named_shapes)
        hidden = tuple(hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"{self.owner}: hidden must be a non-empty tuple of ints >= 1, got {hidden!r}")
        self.min_slope = check(Interval(0, 1, closed="neither"), min_slope, "min_slope", owner=self.owner)
        self.max_numel = check(Interval(1, None, integer=True), max_numel, "max_numel", owner=self.owner)
        big = {n: math.prod(s) for n, s in self.shapes.items() if math.prod(s) > self.max_numel}
        if big:
            raise ValueError(f"{self.owner}: tensors {big} have more than max_numel={self.max_numel} elements; use "
                             "ElementwiseMonotoneMap or adapt fewer tensors")
        generator = check_generator(generator)
        self.log_slope = nn.ParameterDict({key(n): nn.Parameter(torch.tensor(math.log(1 - self.min_slope),
                                                                             dtype=dtype, device=device))
                                           for n in self.names})
        self.nets = nn.ModuleDict({key(n): _ICNN(math.prod(s), hidden, dtype=dtype, device=device,
                                                 generator=generator) for n, s in self.shapes.items()})

    def _s(self, n: str) -> Tensor:
        return self.min_slope + self.log_slope[key(n)].clamp(-LOG_CLAMP, LOG_CLAMP).exp()

    def _psi(self, n: str, x: Tensor) -> Tensor:
        net = self.nets[key(n)]
        zero = torch.zeros_like(x)
        g0 = torch.func.grad(net)(zero)
        return 0.5 * self._s(n) * (x * x).sum() + net(x) - net(zero) - (g0 * x).sum()

    def potential(self, u):
        return sum(self._psi(n, u[n].reshape(-1)) for n in self.names)

    def forward(self, u):
        return {n: torch.func.grad(lambda x, n=n: self._psi(n, x))(u[n].reshape(-1)).reshape(self.shapes[n])
                for n in self.names}

    def to_dual(self, delta, *, iterations: int = 50):
        """Newton's method on the strongly convex Ψ(u) − ⟨δ, u⟩, from u = δ/s."""
        out = {}
        with torch.no_grad():
            for n in self.names:
                d = delta[n].reshape(-1)
                x = d / self._s(n)
                grad = torch.func.grad(lambda y, n=n: self._psi(n, y))
                for _ in range(iterations):
                    r = grad(x) - d
                    if float(r.abs().max()) <= 1e-13 * (1 + float(d.abs().max())):
                        break
                    x = x - torch.linalg.solve(torch.func.jacfwd(grad)(x), r)
                out[n] = x.reshape(self.shapes[n])
        return out

    def slope_bounds(self):
        """(smallest m_min + e^ℓ, largest Jacobian eigenvalue at the probe point)."""
        u = self._probe()
        lo, hi = math.inf, 0.0
        with torch.no_grad():
            for n in self.names:
                grad = torch.func.grad(lambda y, n=n: self._psi(n, y))
                J = torch.func.jacfwd(grad)(u[n].reshape(-1))
                lo = min(lo, float(self._s(n)))
                hi = max(hi, float(torch.linalg.eigvalsh((J + J.T) / 2).max()))
        return lo, hi


__all__ = ["ICNNGradientMap"]
