"""Mirror maps for mirror-descent meta-learning (Zhang, Li, Giannakis, arXiv:2312.13486 and arXiv:2509.02418).

Mirror descent with potential ψ: z = ∇ψ(θ), z_{k+1} = z_k − α∇L(θ_k), θ_{k+1} = ∇ψ*(z_{k+1}). A map here is the
learned inverse map h_ω ≈ ∇ψ* from a dual displacement u to a primal displacement (so training never inverts):
``forward(u: dict) -> dict``; ``to_dual`` inverts it (diagnostics, loading a primal point). Every map is the identity
at initialisation, so a fresh mirror learner adapts exactly like MAML with the same α.

* :class:`DiagonalAffineMap`: h(u) = exp(a) ⊙ u — the function class of Meta-SGD (Li et al., arXiv:1707.09835).
* :class:`ElementwiseMonotoneMap` (default): h(u)_i = s_i u_i + Σ_h v_h[tanh(w_h u_i + e_h) − tanh e_h],
  s_i = m_min + e^{clamp(ℓ_i, −10, 10)} + Σ_h |v_h| w_h, w = e^ω: slope in [m_min + e^ℓ, m_min + e^ℓ + 2Σ|v|w], so
  h_i is the derivative of the strongly convex, smooth potential Ψ_i(u) = ½s_i u² + Σ_h (v_h/w_h)[log cosh(w_h u +
  e_h) − log cosh e_h] − v_h tanh(e_h) u — a genuine mirror map, with ‖Δθ‖²/(2s_max) ≤ D_ψ ≤ ‖Δθ‖²/(2s_min). This
  map is this library's design (the authors' flow, :class:`~optimlab.meta.iaf.BlockIAFMap`, is not a gradient field).

Checked: only the abstracts of both papers (the method sections are UNVERIFIED); the maps' forms follow the
library's own derivation above.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from optimlab._validation import Interval, Options, check

LOG_CLAMP = 10.0  # exp of log-scales is taken of clamp(·, −10, 10)


def key(name: str) -> str:
    """Parameter-dict key for a tensor name (dots are not allowed in module names)."""
    return name.replace(".", "__")


class MirrorMap(nn.Module):
    """Base of the mirror maps: ``names`` and ``shapes`` of the adapted tensors, in order."""

    is_gradient_field: ClassVar[bool] = True
    owner: ClassVar[str] = "MirrorMap"

    def __init__(self, named_shapes: dict[str, torch.Size]) -> None:
        super().__init__()
        if not named_shapes:
            raise ValueError(f"{self.owner}: named_shapes must name at least one tensor")
        self.names = list(named_shapes)
        self.shapes = {n: torch.Size(s) for n, s in named_shapes.items()}

    @classmethod
    def for_params(cls, named_shapes, *, dtype=torch.float32, device=None, generator=None, **kw) -> MirrorMap:
        """Build the map for tensors ``{name: shape}`` (or ``{name: tensor}``)."""
        shapes = {n: (s.shape if isinstance(s, Tensor) else torch.Size(s)) for n, s in dict(named_shapes).items()}
        return cls(shapes, dtype=dtype, device=device, generator=generator, **kw)

    def forward(self, u: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def prepare(self):
        """Whatever ``apply`` needs that does not depend on u, computed once per inner loop (default: nothing)."""
        return None

    def apply(self, prepared, u: dict[str, Tensor]) -> dict[str, Tensor]:
        """``forward(u)`` reusing ``prepare()``'s output (the learners call this inside the inner loop)."""
        return self.forward(u)

    def to_dual(self, delta: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def potential(self, u: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not the gradient of a potential")

    def bregman(self, theta: dict[str, Tensor], theta_ref: dict[str, Tensor]) -> Tensor:
        """D_ψ(θ, θ') = ψ(θ) − ψ(θ') − ⟨∇ψ(θ'), θ − θ'⟩ for primal displacements, via the dual:
        D_ψ(θ, θ') = D_Ψ(z', z) with z = h⁻¹(θ), z' = h⁻¹(θ'), Ψ = ψ* the potential of h."""
        z, zr = self.to_dual(theta), self.to_dual(theta_ref)
        hz = self.forward(z)
        lin = sum(((hz[n] * (zr[n] - z[n])).sum() for n in self.names), torch.zeros((), dtype=z[self.names[0]].dtype))
        return self.potential(zr) - self.potential(z) - lin

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _probe(self) -> dict[str, Tensor]:
        p = next(self.parameters())
        g = torch.Generator().manual_seed(0)
        return {n: 0.1 * torch.randn(s, generator=g, dtype=p.dtype).to(p.device) for n, s in self.shapes.items()}

    def diagnostics(self) -> dict[str, float]:
        """``min_slope``/``max_slope`` (bounds on the diagonal of the Jacobian), ``roundtrip_err`` (max |u −
        to_dual(forward(u))| at a fixed probe), ``n_params``, ``jac_asymmetry`` (|wᵀJv − vᵀJw|/(|wᵀJv| + |vᵀJw|)
        for fixed probes v, w at the probe point; 0 for a gradient field)."""
        with torch.no_grad():
            u = self._probe()
            back = self.to_dual(self.forward(u))
            err = max(float((back[n] - u[n]).abs().max()) for n in self.names)
        g = torch.Generator().manual_seed(1)
        v = {n: torch.randn(s, generator=g, dtype=u[n].dtype).to(u[n].device) for n, s in self.shapes.items()}
        w = {n: torch.randn(s, generator=g, dtype=u[n].dtype).to(u[n].device) for n, s in self.shapes.items()}
        f = lambda x: self.forward(x)
        with torch.no_grad():
            jv = torch.func.jvp(f, (u,), (v,))[1]
            jw = torch.func.jvp(f, (u,), (w,))[1]
        a = sum(float((w[n] * jv[n]).sum()) for n in self.names)
        b = sum(float((v[n] * jw[n]).sum()) for n in self.names)
        lo, hi = self.slope_bounds()
        return {"min_slope": lo, "max_slope": hi, "roundtrip_err": err, "n_params": self.n_params(),
                "jac_asymmetry": abs(a - b) / (abs(a) + abs(b) + 1e-300)}

    def slope_bounds(self) -> tuple[float, float]:
        raise NotImplementedError


class DiagonalAffineMap(MirrorMap):
    """h(u) = exp(a) ⊙ u, a per element (zero at init): the function class of Meta-SGD (arXiv:1707.09835);
    potential Ψ(u) = ½Σ exp(a) u²."""

    owner = "DiagonalAffineMap"

    def __init__(self, named_shapes, *, dtype=torch.float32, device=None, generator=None) -> None:
        super().__init__(named_shapes)
        self.log_scale = nn.ParameterDict({key(n): nn.Parameter(torch.zeros(s, dtype=dtype, device=device))
                                           for n, s in self.shapes.items()})

    def _scale(self, n: str) -> Tensor:
        return self.log_scale[key(n)].clamp(-LOG_CLAMP, LOG_CLAMP).exp()

    def forward(self, u):
        return {n: self._scale(n) * u[n] for n in self.names}

    def to_dual(self, delta):
        return {n: delta[n] / self._scale(n) for n in self.names}

    def potential(self, u):
        return sum(0.5 * (self._scale(n) * u[n] ** 2).sum() for n in self.names)

    def slope_bounds(self):
        s = [self._scale(n).detach() for n in self.names]
        return min(float(t.min()) for t in s), max(float(t.max()) for t in s)


class ElementwiseMonotoneMap(MirrorMap):
    """The default map; equation, slope bounds and potential in the module docstring. ``share="tensor"``: the H
    units (v, ω, e) are shared within a tensor; ``"element"``: one set per element. Overhead: 1 parameter per
    element plus 3H per tensor (or per element). No offset parameter (h(0) = 0 always)."""

    owner = "ElementwiseMonotoneMap"

    def __init__(self, named_shapes, *, hidden: int = 8, min_slope: float = 1e-3, share: str = "tensor",
                 unit_range: float = 0.2, dtype=torch.float32, device=None, generator=None) -> None:
        super().__init__(named_shapes)
        self.hidden = check(Interval(0, None, integer=True), hidden, "hidden", owner=self.owner)
        self.min_slope = check(Interval(0, 1, closed="neither"), min_slope, "min_slope", owner=self.owner)
        self.share = check(Options("tensor", "element"), share, "share", owner=self.owner)
        unit_range = check(Interval(0, None), unit_range, "unit_range", owner=self.owner)
        kw = {"dtype": dtype, "device": device}
        self.log_slope = nn.ParameterDict({key(n): nn.Parameter(torch.full(s, math.log(1 - self.min_slope), **kw))
                                           for n, s in self.shapes.items()})
        unit = lambda s: (self.hidden,) + ((1,) * len(s) if share == "tensor" else tuple(s))
        e0 = torch.linspace(-unit_range, unit_range, self.hidden, **kw)
        self.v = nn.ParameterDict({key(n): nn.Parameter(torch.zeros(unit(s), **kw)) for n, s in self.shapes.items()})
        self.log_w = nn.ParameterDict({key(n): nn.Parameter(torch.zeros(unit(s), **kw))
                                       for n, s in self.shapes.items()})
        self.e = nn.ParameterDict({key(n): nn.Parameter(e0.reshape((-1,) + (1,) * len(s)).expand(unit(s)).clone())
                                   for n, s in self.shapes.items()})

    def _parts(self, n):
        k = key(n)
        v, w, e = self.v[k], self.log_w[k].clamp(-LOG_CLAMP, LOG_CLAMP).exp(), self.e[k]
        base = self.min_slope + self.log_slope[k].clamp(-LOG_CLAMP, LOG_CLAMP).exp()
        return base, v, w, e

    def _slope(self, n):
        base, v, w, _ = self._parts(n)
        return base + (v.abs() * w).sum(0)

    def _h(self, n: str, x: Tensor) -> Tensor:
        base, v, w, e = self._parts(n)
        s = base + (v.abs() * w).sum(0)
        return s * x + (v * (torch.tanh(w * x.unsqueeze(0) + e) - torch.tanh(e))).sum(0)

    def prepare(self) -> dict[str, Tensor]:
        """Unit parameters expanded to every element of the concatenated tensors ([H, N]), slopes s [N], tanh e."""
        cols = {"base": [], "v": [], "w": [], "e": []}
        for n in self.names:
            base, v, w, e = self._parts(n)
            full = (self.hidden,) + tuple(self.shapes[n])
            cols["base"].append(base.expand(self.shapes[n]).reshape(-1))
            for name, t in (("v", v), ("w", w), ("e", e)):
                cols[name].append(t.expand(full).reshape(self.hidden, -1))
        base = torch.cat(cols["base"])
        v, w, e = (torch.cat(cols[k], dim=1) for k in ("v", "w", "e"))
        return {"s": base + (v.abs() * w).sum(0), "v": v, "w": w, "e": e, "c": (v * torch.tanh(e)).sum(0)}

    def apply(self, prepared, u):
        """One elementwise pass over all tensors concatenated (a few ops per inner step, whatever the tensor count)."""
        x = torch.cat([u[n].reshape(-1) for n in self.names])
        p = prepared
        y = p["s"] * x + (p["v"] * torch.tanh(torch.addcmul(p["e"], p["w"], x))).sum(0) - p["c"]
        sizes = [math.prod(self.shapes[n]) for n in self.names]
        return {n: t.reshape(self.shapes[n]) for n, t in zip(self.names, torch.split(y, sizes))}

    def forward(self, u):
        return self.apply(self.prepare(), u)

    def potential(self, u):
        total = 0.0
        for n in self.names:
            base, v, w, e = self._parts(n)
            s, x = base + (v.abs() * w).sum(0), u[n]
            lc = lambda t: t.abs() + torch.log1p(torch.exp(-2 * t.abs())) - math.log(2.0)
            units = (v / w) * (lc(w * x.unsqueeze(0) + e) - lc(e)) - v * torch.tanh(e) * x.unsqueeze(0)
            total = total + (0.5 * s * x ** 2).sum() + units.sum()
        return total

    def _bounds(self, n):
        base, v, w, _ = self._parts(n)
        return base, base + 2 * (v.abs() * w).sum(0)

    def to_dual(self, delta, *, iterations: int = 200):
        """Safeguarded bisection per element on the bracket [δ/s_max, δ/s_min] (h is increasing, h(0) = 0)."""
        out = {}
        with torch.no_grad():
            for n in self.names:
                lo_s, hi_s = (t.expand(self.shapes[n]) for t in self._bounds(n))
                d = delta[n]
                a, b = torch.minimum(d / hi_s, d / lo_s), torch.maximum(d / hi_s, d / lo_s)
                for _ in range(iterations):
                    m = 0.5 * (a + b)
                    below = self._h(n, m) < d
                    a, b = torch.where(below, m, a), torch.where(below, b, m)
                    if bool(((b - a) <= 1e-15 * (1 + d.abs())).all()):
                        break
                out[n] = 0.5 * (a + b)
        return out

    def slope_bounds(self):
        lo, hi = zip(*(self._bounds(n) for n in self.names))
        return min(float(t.detach().min()) for t in lo), max(float(t.detach().max()) for t in hi)


__all__ = ["DiagonalAffineMap", "ElementwiseMonotoneMap", "MirrorMap", "key"]
