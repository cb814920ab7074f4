"""Small models and tasks shared by the tests of optimlab.meta."""

from __future__ import annotations

import torch
from torch import nn

from optimlab.meta import ParameterVector, TaskBatch


def tiny_mlp(seed: int = 0, widths=(2, 16, 1), dtype=torch.float64, act=nn.Tanh) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(act())
        return nn.Sequential(*layers).to(dtype)


def regression_batch(B: int = 8, n: int = 6, d: int = 2, seed: int = 3, dtype=torch.float64) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    xs, xq = torch.randn(B, n, d, generator=g, dtype=dtype), torch.randn(B, n, d, generator=g, dtype=dtype)
    w = torch.randn(B, d, 1, generator=g, dtype=dtype)
    return TaskBatch(xs, torch.sin(xs @ w), xq, torch.sin(xq @ w))


def quadratic(dim: int = 4, seed: int = 0):
    """(A, c, loss_fn, model, batch): L = ½(θ − c)ᵀA(θ − c), support = query, one task."""
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    A = M @ M.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
    c = torch.randn(dim, generator=g, dtype=torch.float64)
    theta0 = torch.randn(dim, generator=g, dtype=torch.float64)

    def loss_fn(theta, y):
        e = theta - y.reshape(-1)
        return 0.5 * e @ (A @ e)

    x = torch.zeros(1, 1, 1, dtype=torch.float64)
    batch = TaskBatch(x, c.reshape(1, 1, -1), x.clone(), c.reshape(1, 1, -1))
    return A, c, loss_fn, ParameterVector(dim, init=theta0), batch


def meta_grads(learner, batch, names=None):
    learner.zero_grad(set_to_none=True)
    loss = learner.meta_loss(batch)
    loss.backward()
    out = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in learner.named_parameters()
           if names is None or n in names}
    return loss.detach(), out
