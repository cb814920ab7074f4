"""Runs of the claims zo.balancing (Prop. 2.2) and zo.equal_loss_trace (traces at matched training loss).

Balancing (arXiv:2506.05454, Prop. 2.2): on h(y, z) = (yᵀz − 1)²/2 the expected ZO step for y is
−lr·[(yᵀz − 1)z + λ²y], so B = (‖y‖² − ‖z‖²)/2 obeys dE[B]/dt = −2λ²E[B] in the small-lr limit:
E[B_t] ≈ B₀·exp(−2λ²·lr·t), while gradient flow keeps B constant.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from optimlab.experiments._zo_runs import gd_chains, toy, toy_grad, zo_chains
from optimlab.zo import sample_directions


def imbalance(x: Tensor) -> Tensor:
    d = x.shape[-1] // 2
    return (x[..., :d].square().sum(-1) - x[..., d:].square().sum(-1)) / 2


def balancing_run(lams: tuple[float, ...], chains: int, scale_steps: float, progress=None) -> dict[str, list[float]]:
    """Per λ: the chain values of B_T/B₀ over the prediction exp(−2λ²·lr·T) (T = scale_steps/(2λ²lr)); and the GD
    control |B_polished/B_raw − 1|."""
    g = torch.Generator().manual_seed(17)
    x0 = torch.cat([math.sqrt(2) * torch.randn(100, generator=g, dtype=torch.float64),
                    torch.randn(100, generator=g, dtype=torch.float64) / math.sqrt(2)]).unsqueeze(0)
    b_raw = float(imbalance(x0))
    x0, _, _ = gd_chains(toy, x0, lr=1e-3, steps=3000, grad=toy_grad)
    b0 = float(imbalance(x0))
    out = {"gd control |B/B_raw - 1|": [abs(b0 / b_raw - 1)], "B0": [b0]}
    lr = 1e-3
    for lam in lams:
        steps = max(1, round(scale_steps / (2 * lam**2 * lr)))
        if progress:
            progress(f"lambda {lam}: {steps} steps")
        xs, _ = zo_chains(toy, x0.expand(chains, -1), lr=lr, eps=lam, steps=steps,
                          generator=torch.Generator().manual_seed(int(1000 * lam)))
        pred = math.exp(-2 * lam**2 * lr * steps)
        out[f"lambda={lam} B_T/B0 over prediction"] = (imbalance(xs) / b0 / pred).tolist()
        out[f"lambda={lam} prediction"] = [pred]
    return out


# ---------------------------------------------------------------- equal-loss traces on a small MLP
class MLP:
    """Cross-entropy of a 4-h-3 tanh MLP on (X, y), as a batched function of the flat parameters (..., d)."""

    def __init__(self, X: Tensor, y: Tensor, hidden: int = 8) -> None:
        self.X, self.y, self.h = X, y, hidden
        self.n_in, self.n_out = X.shape[1], int(y.max()) + 1
        self.d = hidden * self.n_in + hidden + self.n_out * hidden + self.n_out

    def _forward(self, x: Tensor):
        h, i, o = self.h, self.n_in, self.n_out
        lead = x.shape[:-1]
        W1 = x[..., :h * i].reshape(*lead, h, i)
        b1 = x[..., h * i:h * i + h]
        W2 = x[..., h * i + h:h * i + h + o * h].reshape(*lead, o, h)
        b2 = x[..., -o:]
        a = torch.tanh(torch.einsum("ni,...hi->...nh", self.X, W1) + b1.unsqueeze(-2))
        logits = torch.einsum("...nh,...oh->...no", a, W2) + b2.unsqueeze(-2)
        return a, W2, torch.log_softmax(logits, -1)

    def __call__(self, x: Tensor) -> Tensor:
        _, _, logp = self._forward(x)
        lead = x.shape[:-1]
        return -logp.gather(-1, self.y.expand(*lead, -1).unsqueeze(-1)).squeeze(-1).mean(-1)

    def grad(self, x: Tensor) -> Tensor:
        """Per-chain exact gradient by hand-written backpropagation (checked against autograd in the tests)."""
        a, W2, logp = self._forward(x)
        n = self.X.shape[0]
        dlog = (logp.exp() - torch.nn.functional.one_hot(self.y, self.n_out).to(x.dtype)) / n  # (..., n, o)
        gW2 = torch.einsum("...no,...nh->...oh", dlog, a)
        gb2 = dlog.sum(-2)
        dz = torch.einsum("...no,...oh->...nh", dlog, W2) * (1 - a * a)
        gW1 = torch.einsum("...nh,ni->...hi", dz, self.X)
        gb1 = dz.sum(-2)
        lead = x.shape[:-1]
        return torch.cat([gW1.reshape(*lead, -1), gb1, gW2.reshape(*lead, -1), gb2], dim=-1)

    def trace(self, x: Tensor) -> float:
        return float(torch.diagonal(torch.func.hessian(self)(x)).sum())


def trajectory(f: MLP, x0: Tensor, *, method: str, lr: float, steps: int, every: int, eps: float = 0.0,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Checkpoints (k, chains, d) and their losses (k, chains) every ``every`` steps (step 0 included)."""
    grad = f.grad
    x, xs, ls = x0.clone(), [x0.clone()], [f(x0)]
    for t in range(1, steps + 1):
        if method == "gd":
            g = grad(x)
        else:
            w = sample_directions(x.shape, generator=generator, dtype=x.dtype)
            if method == "dd":
                g = (grad(x) * w).sum(-1, keepdim=True) * w
            else:
                fp, fm = f(x + eps * w), f(x - eps * w)
                g = ((fp - fm) / (2 * eps)).unsqueeze(-1) * w
        x = x - lr * g
        if t % every == 0:
            xs.append(x.clone())
            ls.append(f(x))
    return torch.stack(xs), torch.stack(ls)


def traces_at_levels(f: MLP, xs: Tensor, ls: Tensor, levels: tuple[float, ...]) -> dict[float, list[float]]:
    """Per level and chain: the exact trace at the first checkpoint whose loss is ≤ the level (NaN if never)."""
    out: dict[float, list[float]] = {}
    for lev in levels:
        vals = []
        for c in range(xs.shape[1]):
            hit = (ls[:, c] <= lev).nonzero()
            vals.append(f.trace(xs[int(hit[0]), c]) if len(hit) else math.nan)
        out[lev] = vals
    return out
