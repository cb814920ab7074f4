"""Task batches and task samplers for gradient-based meta-learning, plus the analytic floors of the synthetic
families.

Every sampler takes ``seed: int`` (stored) and derives one ``torch.Generator`` per split from it (train, val and
test streams are independent and never touch the global RNG). ``sample(n_tasks, split)`` returns a
:class:`TaskBatch` whose fields carry a leading task dimension B. Toy families (:class:`ExpGeometryTasks`,
:class:`QuadraticTasks`) run through the same learner code with :class:`ParameterVector` (a model whose output is
its parameter vector); their x is a dummy ``[B, 1, 1]`` tensor.

Sources: sinusoid protocol of Finn et al., MAML (arXiv:1703.03400); the exponential-geometry, Poisson-GLM and
quadratic families and their floors are this library's own constructions for testing mirror-descent
meta-learning (Zhang, Li, Giannakis, arXiv:2312.13486 / arXiv:2509.02418; derivations in the docstrings).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from optimlab._random import mix64
from optimlab._validation import Interval, Options, check

_SPLITS = ("train", "val", "test")


class TaskBatch(NamedTuple):
    """B tasks: support and query sets with a leading task dimension; ``info`` holds per-task extras (e.g. true
    log-rates) with the same leading dimension."""

    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor
    info: dict[str, Tensor] | None = None

    @property
    def n_tasks(self) -> int:
        return int(self.x_support.shape[0])

    def task(self, i: int) -> TaskBatch:
        """Task ``i`` without the task dimension."""
        info = None if self.info is None else {k: v[i] for k, v in self.info.items()}
        return TaskBatch(self.x_support[i], self.y_support[i], self.x_query[i], self.y_query[i], info)

    def validate(self, owner: str = "TaskBatch") -> TaskBatch:
        """Raise ``ValueError`` when the fields disagree on B or support/query feature shapes differ."""
        fields = {"x_support": self.x_support, "y_support": self.y_support, "x_query": self.x_query,
                  "y_query": self.y_query, **{f"info[{k!r}]": v for k, v in (self.info or {}).items()}}
        for name, t in fields.items():
            if not isinstance(t, Tensor) or t.dim() < 1:
                raise ValueError(f"{owner}: {name} must be a tensor with a leading task dimension, got {t!r}")
        sizes = {name: int(t.shape[0]) for name, t in fields.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"{owner}: every field must have the same task dimension B, got {sizes}")
        if self.x_support.shape[2:] != self.x_query.shape[2:]:
            raise ValueError(f"{owner}: x_support and x_query must have the same feature shape, got "
                             f"{tuple(self.x_support.shape[2:])} and {tuple(self.x_query.shape[2:])}")
        return self

    def to(self, device=None, dtype=None) -> TaskBatch:
        def mv(t):
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)
        return TaskBatch(*(mv(t) for t in self[:4]), None if self.info is None else
                         {k: mv(v) for k, v in self.info.items()})


class ParameterVector(nn.Module):
    """A model whose output is its parameter θ ∈ R^dim, whatever the input (toy task families)."""

    def __init__(self, dim: int, *, init: Tensor | None = None, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(dim, dtype=dtype) if init is None else init.clone().to(dtype))

    def forward(self, x: Tensor) -> Tensor:
        return self.theta


def _phi(x: Tensor) -> Tensor:
    """φ(x) = eˣ − 1 − x ≥ 0, computed stably for small x."""
    return torch.expm1(x) - x


class _Sampler:
    owner = "Sampler"

    def __init__(self, seed: int) -> None:
        self.seed = check(Interval(0, None, integer=True), seed, "seed", owner=self.owner)
        self._generators = {s: torch.Generator().manual_seed(mix64(self.seed, i)) for i, s in enumerate(_SPLITS)}

    def generator(self, split: str) -> torch.Generator:
        check(Options(*_SPLITS), split, "split", owner=self.owner)
        return self._generators[split]

    def _check_n(self, n_tasks: int) -> int:
        return check(Interval(1, None, integer=True), n_tasks, "n_tasks", owner=self.owner)


class SinusoidTasks(_Sampler):
    """y = A sin(x − φ), A ~ U[0.1, 5], φ ~ U[0, π], x ~ U[−5, 5] (the MAML sinusoid protocol, arXiv:1703.03400);
    model: MLP 1-40-40-1 ReLU; loss: MSE."""

    owner = "SinusoidTasks"

    def __init__(self, shots: int = 10, queries: int = 10, *, seed: int = 0, dtype=torch.float32) -> None:
        super().__init__(seed)
        self.shots = check(Interval(1, None, integer=True), shots, "shots", owner=self.owner)
        self.queries = check(Interval(1, None, integer=True), queries, "queries", owner=self.owner)
        self.dtype = dtype
        self.loss_fn = nn.functional.mse_loss
        self.metric = lambda pred, y, info=None: nn.functional.mse_loss(pred, y)

    def make_model(self, *, seed: int | None = None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed if seed is None else seed)
            return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                                 nn.Linear(40, 1)).to(self.dtype)

    def sample(self, n_tasks: int, split: str = "train", *, queries: int | None = None) -> TaskBatch:
        g, n = self.generator(split), self._check_n(n_tasks)
        q = self.queries if queries is None else queries
        amp = 0.1 + 4.9 * torch.rand(n, 1, 1, generator=g, dtype=self.dtype)
        phase = math.pi * torch.rand(n, 1, 1, generator=g, dtype=self.dtype)
        x = 10 * torch.rand(n, self.shots + q, 1, generator=g, dtype=self.dtype) - 5
        y = amp * torch.sin(x - phase)
        return TaskBatch(x[:, :self.shots], y[:, :self.shots], x[:, self.shots:], y[:, self.shots:],
                         {"amplitude": amp[:, 0, 0], "phase": phase[:, 0, 0]})


class ExpGeometryTasks(_Sampler):
    """θ ∈ R^dim, b = exp(u), u ~ U[log_range]^dim; L_t(θ) = Σ_i (e^{θ_i} − b_i θ_i), shifted by its minimum so
    that the loss IS the gap Σ_i b_i φ(θ_i − log b_i), φ(x) = eˣ − 1 − x (same gradients). Support = query.
    The mirror map ψ(θ) = Σ e^{θ_i} solves every task in one step at rate 1 (the oracle; gap 0)."""

    owner = "ExpGeometryTasks"

    def __init__(self, dim: int = 20, log_range: tuple[float, float] = (-3.0, 3.0), *, seed: int = 0) -> None:
        super().__init__(seed)
        self.dim = check(Interval(1, None, integer=True), dim, "dim", owner=self.owner)
        self.log_range = (float(log_range[0]), float(log_range[1]))
        if not self.log_range[0] < self.log_range[1]:
            raise ValueError(f"{self.owner}: log_range must be (low, high) with low < high, got {log_range!r}")
        self.metric = lambda pred, y, info=None: self.loss_fn(pred, y)

    @staticmethod
    def loss_fn(theta: Tensor, y: Tensor) -> Tensor:
        b = y.reshape(-1)
        return (b * _phi(theta - torch.log(b))).sum()

    def make_model(self, *, seed: int | None = None) -> nn.Module:
        return ParameterVector(self.dim)

    def sample(self, n_tasks: int, split: str = "train") -> TaskBatch:
        g, n = self.generator(split), self._check_n(n_tasks)
        lo, hi = self.log_range
        u = lo + (hi - lo) * torch.rand(n, 1, self.dim, generator=g, dtype=torch.float64)
        b, x = u.exp(), torch.zeros(n, 1, 1, dtype=torch.float64)
        return TaskBatch(x, b, x.clone(), b.clone(), {"log_b": u[:, 0]})

    def linear_floor(self, steps: int, *, grid: tuple[int, int] = (60, 55), points: int = 200_000,
                     polish: int = 8) -> float:
        """dim × min_{θ₀, p} E_u[b φ(θ_K − u)] over θ_{k+1} = θ_k − p(e^{θ_k} − b): the best MAML or Meta-SGD
        (any init, any fixed per-coordinate rate) after K steps; coordinates are i.i.d. and the loss separable.
        Grid over θ₀ ∈ [−3, 3], log p ∈ [−5, 0.5], then L-BFGS from the best ``polish`` grid points on a
        ``points``-point midpoint quadrature of u (a coarse grid lands in a second basin at K = 3)."""
        from scipy.optimize import minimize

        lo, hi = self.log_range

        def quadrature(n):
            u = lo + (hi - lo) * (np.arange(n) + 0.5) / n
            return u, np.exp(u)

        def value(z, u, b):
            p = math.exp(z[1])
            t = np.full_like(u, z[0])
            for _ in range(steps):
                t = t - p * (np.exp(np.minimum(t, 50)) - b)
            v = np.mean(b * (np.expm1(np.minimum(t - u, 50)) - (t - u)))
            return float(v) if np.isfinite(v) else 1e300

        coarse = quadrature(max(points // 50, 100))
        starts = sorted((value((th, lp), *coarse), th, lp) for th in np.linspace(-3, 3, grid[0])
                        for lp in np.linspace(-5, 0.5, grid[1]))[:polish]
        fine = quadrature(points)
        best = min(minimize(value, np.array([th, lp]), args=fine, method="L-BFGS-B").fun for _, th, lp in starts)
        return self.dim * float(best)


class QuadraticTasks(_Sampler):
    """L_t(θ) = ½(θ − θ_t)ᵀA(θ − θ_t)/mean(diag A), A = Q diag(logspace(0, log10 cond, dim)) Qᵀ with Q a seeded
    rotation, θ_t ~ N(μ, task_std² I), μ fixed by the seed; support = query; the loss is the gap. ``family_seed``
    (default ``seed``) draws (A, μ) alone, so that several task streams can share one family."""

    owner = "QuadraticTasks"

    def __init__(self, dim: int = 20, cond: float = 1e3, task_std: float = 1.0, *, seed: int = 0,
                 family_seed: int | None = None) -> None:
        super().__init__(seed)
        self.dim = check(Interval(1, None, integer=True), dim, "dim", owner=self.owner)
        cond = check(Interval(1, None), cond, "cond", owner=self.owner)
        self.task_std = check(Interval(0, None, closed="neither"), task_std, "task_std", owner=self.owner)
        fam = self.seed if family_seed is None else check(Interval(0, None, integer=True), family_seed,
                                                          "family_seed", owner=self.owner)
        g = torch.Generator().manual_seed(mix64(fam, 17))
        q, r = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=g, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))
        A = q @ torch.diag(torch.logspace(0, math.log10(cond), self.dim, dtype=torch.float64)) @ q.T
        self.A = (A + A.T) / 2
        self.mu = torch.randn(self.dim, generator=g, dtype=torch.float64)
        self.metric = lambda pred, y, info=None: self.loss_fn(pred, y)

    def loss_fn(self, theta: Tensor, y: Tensor) -> Tensor:
        e = theta - y.reshape(-1)
        A = self.A.to(e)
        return 0.5 * (e @ (A @ e)) / torch.diagonal(A).mean()

    def make_model(self, *, seed: int | None = None) -> nn.Module:
        return ParameterVector(self.dim)

    def sample(self, n_tasks: int, split: str = "train") -> TaskBatch:
        g, n = self.generator(split), self._check_n(n_tasks)
        t = self.mu + self.task_std * torch.randn(n, 1, self.dim, generator=g, dtype=torch.float64)
        x = torch.zeros(n, 1, 1, dtype=torch.float64)
        return TaskBatch(x, t, x.clone(), t.clone(), None)

    def diagonal_floor(self) -> float:
        """Population gap of the best diagonal preconditioner P after one step from the best init θ₀ = μ:
        ½[tr A − dᵀ(A∘A²)⁻¹d]·σ²/mean(diag A), d = diag(A²) (E½e₁ᵀAe₁ with e₁ = (I − PA)e₀, e₀ ~ N(0, σ²I), is
        quadratic in p: ½σ²[tr A − 2dᵀp + pᵀ(A∘A²)p]). By the Gaussian argument of this library, no elementwise
        (even nonlinear) map does better at K = 1."""
        A = self.A
        A2 = A @ A
        d = torch.diagonal(A2)
        val = 0.5 * (torch.trace(A) - d @ torch.linalg.solve(A * A2, d)) * self.task_std ** 2
        return float(val / torch.diagonal(A).mean())


class PoissonTasks(_Sampler):
    """Poisson GLM tasks: log λ = c_t + x·w_t, c_t ~ U[intercept_range], w_t ~ N(0, weight_std² I), x ~ N(0, I);
    y ~ Poisson(λ); model ``Linear(features, 1)``; loss: Poisson NLL with log link (mean); metric: mean over query
    points of KL(Poisson(λ) ‖ Poisson(λ̂)) = λ φ(log λ̂ − log λ), from the true rates in ``info``."""

    owner = "PoissonTasks"

    def __init__(self, features: int = 5, weight_std: float = 0.3, intercept_range=(-2.0, 2.0), shots: int = 20,
                 queries: int = 50, *, seed: int = 0, dtype=torch.float64) -> None:
        super().__init__(seed)
        self.features = check(Interval(1, None, integer=True), features, "features", owner=self.owner)
        self.weight_std = check(Interval(0, None), weight_std, "weight_std", owner=self.owner)
        self.intercept_range = (float(intercept_range[0]), float(intercept_range[1]))
        self.shots = check(Interval(1, None, integer=True), shots, "shots", owner=self.owner)
        self.queries = check(Interval(1, None, integer=True), queries, "queries", owner=self.owner)
        self.dtype = dtype

    @staticmethod
    def loss_fn(log_rate: Tensor, y: Tensor) -> Tensor:
        return (log_rate.exp() - y * log_rate).mean()

    @staticmethod
    def metric(log_rate: Tensor, y: Tensor, info: dict[str, Tensor]) -> Tensor:
        true = info["log_rate_query"].reshape(log_rate.shape)
        return (true.exp() * _phi(log_rate - true)).mean()

    def make_model(self, *, seed: int | None = None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed if seed is None else seed)
            return nn.Linear(self.features, 1).to(self.dtype)

    def sample(self, n_tasks: int, split: str = "train") -> TaskBatch:
        g, n = self.generator(split), self._check_n(n_tasks)
        lo, hi = self.intercept_range
        c = lo + (hi - lo) * torch.rand(n, 1, 1, generator=g, dtype=self.dtype)
        w = self.weight_std * torch.randn(n, self.features, 1, generator=g, dtype=self.dtype)
        x = torch.randn(n, self.shots + self.queries, self.features, generator=g, dtype=self.dtype)
        log_rate = c + x @ w
        y = torch.poisson(log_rate.exp(), generator=g)
        s = self.shots
        return TaskBatch(x[:, :s], y[:, :s], x[:, s:], y[:, s:],
                         {"log_rate_support": log_rate[:, :s, 0], "log_rate_query": log_rate[:, s:, 0],
                          "intercept": c[:, 0, 0], "weights": w[:, :, 0]})


__all__ = ["ExpGeometryTasks", "ParameterVector", "PoissonTasks", "QuadraticTasks", "SinusoidTasks", "TaskBatch"]
