"""Batched runs for the ZO claims: many independent chains as one tensor through :mod:`optimlab.zo.estimators`.

Every problem is a function ``f: (..., d) -> (...)`` in float64. A chain of ZO-SGD is x ← x − lr·ĝ with ĝ the
central two-point estimate (Gaussian directions unless stated) — the functional path that tests/zo proves equal to
:class:`optimlab.zo.ZOSGD`; "DD" uses the exact directional derivative (eps → 0) on the same directions; GD uses
the exact gradient (``torch.func.grad``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from optimlab.zo import directional_derivative, sample_directions, two_point

PAPER = ("Zhang, Li, Thekumparampil, Oh, Muehlebach, He, \"Zeroth-Order Optimization Finds Flat Minima\", "
         "NeurIPS 2025, arXiv:2506.05454")
MEZO = "Malladi et al., \"Fine-Tuning Language Models with Just Forward Passes\", NeurIPS 2023, arXiv:2305.17333"


def grad_of(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Per-chain exact gradient of a batched f."""
    return lambda x: torch.func.grad(lambda v: f(v).sum())(x)


def zo_chains(f: Callable[[Tensor], Tensor], x0: Tensor, *, lr: float, eps: float, steps: int,
              generator: torch.Generator, kind: str = "gaussian", dd: bool = False, every: int = 0,
              grad: Callable[[Tensor], Tensor] | None = None,
              progress: Callable[[str], None] | None = None) -> tuple[Tensor, list[Tensor]]:
    """``steps`` ZO-SGD steps on every chain (rows of ``x0``); returns the last iterate and, every ``every`` steps,
    f of the iterates. A non-finite probe raises ``FloatingPointError`` naming the step (probes left the domain)."""
    x, hist = x0.clone(), []
    for t in range(steps):
        w = sample_directions(x.shape, kind, generator=generator, dtype=x.dtype, device=x.device)
        if dd:
            g = directional_derivative(f, x, w) if grad is None else (grad(x) * w).sum(-1, keepdim=True) * w
        else:
            est = two_point(f, x, w, eps)
            if not bool(torch.isfinite(est.proj).all()):
                raise FloatingPointError(f"non-finite ZO probe at step {t}")
            g = est.grad
        x = x - lr * g
        if every and (t % every == 0 or t == steps - 1):
            hist.append(f(x))
        if progress is not None and t % 5000 == 0:
            progress(f"step {t}/{steps}")
    return x, hist


def gd_chains(f: Callable[[Tensor], Tensor], x0: Tensor, *, lr: float, steps: int, tol: float = 0.0,
              every: int = 0, grad: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, list[Tensor], float]:
    """Plain GD on every chain; stops early once every chain's ‖∇f‖ ≤ ``tol``. Returns (x, history, max ‖∇f‖)."""
    grad = grad_of(f) if grad is None else grad
    x, hist = x0.clone(), []
    for t in range(steps):
        g = grad(x)
        if tol and float(g.norm(dim=-1).max()) <= tol:
            break
        x = x - lr * g
        if every and t % every == 0:
            hist.append(f(x))
    return x, hist, float(grad(x).norm(dim=-1).max())


# ---------------------------------------------------------------- problems
def toy(x: Tensor) -> Tensor:
    """Example 2.1 of the paper: f(y, z) = (yᵀz − 1)²/2, x = [y, z]; tr∇²f = ‖y‖² + ‖z‖² everywhere."""
    d = x.shape[-1] // 2
    y, z = x[..., :d], x[..., d:]
    return ((y * z).sum(-1) - 1) ** 2 / 2


def toy_grad(x: Tensor) -> Tensor:
    d = x.shape[-1] // 2
    y, z = x[..., :d], x[..., d:]
    r = (y * z).sum(-1, keepdim=True) - 1
    return torch.cat([r * z, r * y], dim=-1)


def toy_trace(x: Tensor) -> Tensor:
    return x.square().sum(-1)


class Perspective:
    """f(S, t) = ‖AS − b‖²/t + max(0, t − τ)⁴ on t > 0 (+∞ for t ≤ 0): convex; minimizers {AS = b, 0 < t ≤ τ};
    tr∇²f = 2‖A‖_F²/t + 2‖AS − b‖²/t³ + 12·max(0, t − τ)², smallest on the minimizers at t = τ (derived here)."""

    def __init__(self, A: Tensor, b: Tensor, tau: float = 4.0) -> None:
        self.A, self.b, self.tau = A, b, tau  # A: (C, m, n), b: (C, m): one problem per chain
        self.fro2 = A.square().sum((-2, -1))

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        S, t = x[..., :-1], x[..., -1]
        A = self.A if x.dim() == 2 else self.A.unsqueeze(1)
        b = self.b if x.dim() == 2 else self.b.unsqueeze(1)
        r = (A @ S.unsqueeze(-1)).squeeze(-1) - b
        return r.square().sum(-1), t

    def __call__(self, x: Tensor) -> Tensor:
        res, t = self._parts(x)
        val = res / t + torch.clamp(t - self.tau, min=0) ** 4
        return torch.where(t > 0, val, torch.full_like(val, math.inf))

    def grad(self, x: Tensor) -> Tensor:
        S, t = x[..., :-1], x[..., -1:]
        r = (self.A @ S.unsqueeze(-1)).squeeze(-1) - self.b
        gS = 2 * (self.A.transpose(-2, -1) @ r.unsqueeze(-1)).squeeze(-1) / t
        gt = -r.square().sum(-1, keepdim=True) / t**2 + 4 * torch.clamp(t - self.tau, min=0) ** 3
        return torch.cat([gS, gt], dim=-1)

    def trace(self, x: Tensor) -> Tensor:
        res, t = self._parts(x)
        return 2 * self.fro2 / t + 2 * res / t**3 + 12 * torch.clamp(t - self.tau, min=0) ** 2

    def min_trace(self) -> Tensor:
        return 2 * self.fro2 / self.tau


class Logistic:
    """Mean logistic loss of labels y ∈ {±1} on features X (one design shared by the chains);
    tr∇²f = mean_i p_i(1 − p_i)‖x_i‖²."""

    def __init__(self, X: Tensor, y: Tensor) -> None:
        self.X, self.y, self.row2 = X, y, X.square().sum(-1)
        self.L = float(torch.linalg.matrix_norm(X, 2) ** 2 / (4 * X.shape[0]))

    def __call__(self, x: Tensor) -> Tensor:
        return torch.nn.functional.softplus(-(x @ self.X.T) * self.y).mean(-1)

    def grad(self, x: Tensor) -> Tensor:
        m = x @ self.X.T
        return (-self.y * torch.sigmoid(-self.y * m)) @ self.X / self.X.shape[0]

    def trace(self, x: Tensor) -> Tensor:
        p = torch.sigmoid(x @ self.X.T)
        return (p * (1 - p) * self.row2).mean(-1)


def lifted_logistic(seed: int, n: int = 300, d0: int = 10, D: int = 1000) -> Logistic:
    """y = sign(X₀w* + N(0,1)), X₀ ∈ ℝ^{n×d0} N(0,1), features [X₀G, 1] with G ∈ ℝ^{d0×D} N(0, 1/D) (rank d0 + 1)."""
    g = torch.Generator().manual_seed(seed)
    X0 = torch.randn(n, d0, generator=g, dtype=torch.float64)
    w = torch.randn(d0, generator=g, dtype=torch.float64)
    y = torch.sign(X0 @ w + torch.randn(n, generator=g, dtype=torch.float64))
    G = torch.randn(d0, D, generator=g, dtype=torch.float64) / math.sqrt(D)
    X = torch.cat([X0 @ G, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    return Logistic(X, y)
