"""Policies over finite response sets, and best-of-n sampling.

A :class:`Policy` has ``log_prob(prompts, responses) -> Tensor[B]`` (sequence log π(y|x), differentiable) and
``sample(prompts, n=1, *, generator=None)`` (``[B]`` for n = 1, else ``[B, n]``). A finite policy also has
``logits(prompts)`` and ``log_probs(prompts)`` (``[B, Y]``, normalised, log space) so that values and KLs are
exact (:mod:`optimlab.rlhf.objective`). Best-of-n: Beirami et al., arXiv:2401.01879, KL(BoN‖π) ≤ log n − (n−1)/n.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from optimlab._random import check_generator
from optimlab._validation import Interval, check

__all__ = ["FinitePolicy", "FixedPolicy", "LinearSoftmaxPolicy", "Policy", "TabularSoftmaxPolicy", "best_of_n"]


@runtime_checkable
class Policy(Protocol):
    def log_prob(self, prompts: Any, responses: Any) -> torch.Tensor: ...

    def sample(self, prompts: Any, n: int = 1, *, generator: Any = None) -> Any: ...


class FinitePolicy(nn.Module):
    """Base of softmax policies over ``n_responses`` responses; subclasses implement :meth:`logits`."""

    n_prompts: int
    n_responses: int

    def logits(self, prompts: Any = None) -> torch.Tensor:
        raise NotImplementedError

    def _rows(self, prompts: Any) -> torch.Tensor | slice:
        if prompts is None:
            return slice(None)
        x = torch.as_tensor(prompts)
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"{type(self).__name__}: prompts must be integer indices, got {x.dtype}")
        return x.long()

    def log_probs(self, prompts: Any = None) -> torch.Tensor:
        """Normalised log π(·|x), ``[B, Y]`` (all prompts when ``prompts`` is None)."""
        return torch.log_softmax(self.logits(prompts), dim=-1)

    def log_prob(self, prompts: Any, responses: Any) -> torch.Tensor:
        y = torch.as_tensor(responses).long()
        return self.log_probs(prompts).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def sample(self, prompts: Any, n: int = 1, *, generator: Any = None) -> torch.Tensor:
        n = check(Interval(1, None, integer=True), n, "n", owner=type(self).__name__)
        p = self.log_probs(prompts).exp()
        out = torch.multinomial(p, n, replacement=True, generator=check_generator(generator))
        return out[:, 0] if n == 1 else out


class TabularSoftmaxPolicy(FinitePolicy):
    """π(y|x) = softmax(logits[x])_y with one free logit per (x, y) (float64 by default)."""

    def __init__(self, n_prompts: int, n_responses: int, init_logits: Any = None) -> None:
        super().__init__()
        self.n_prompts = check(Interval(1, None, integer=True), n_prompts, "n_prompts", owner="TabularSoftmaxPolicy")
        self.n_responses = check(Interval(1, None, integer=True), n_responses, "n_responses",
                                 owner="TabularSoftmaxPolicy")
        if init_logits is None:
            init = torch.zeros(self.n_prompts, self.n_responses, dtype=torch.float64)
        else:
            init = torch.as_tensor(init_logits).detach().clone()
            if init.shape != (self.n_prompts, self.n_responses):
                raise ValueError(f"TabularSoftmaxPolicy: init_logits must have shape ({n_prompts}, {n_responses}),"
                                 f" got {tuple(init.shape)}")
            init = torch.where(torch.isneginf(init), torch.full_like(init, -1e4), init)
        self.table = nn.Parameter(init)

    def logits(self, prompts: Any = None) -> torch.Tensor:
        return self.table[self._rows(prompts)]


class LinearSoftmaxPolicy(FinitePolicy):
    """Log-linear policy log π(y|x) ∝ logp_base(x, y) + φ(x, y)·θ (``features[X, Y, d]``)."""

    def __init__(self, features: Any, logp_base: Any = None, theta: Any = None) -> None:
        super().__init__()
        f = torch.as_tensor(features)
        if f.dim() != 3:
            raise ValueError(f"LinearSoftmaxPolicy: features must have shape [X, Y, d], got {tuple(f.shape)}")
        f = f.to(torch.float64) if not f.dtype.is_floating_point else f
        self.register_buffer("features", f.detach().clone())
        self.n_prompts, self.n_responses, d = f.shape
        base = torch.zeros(f.shape[:2], dtype=f.dtype) if logp_base is None else torch.as_tensor(logp_base, dtype=f.dtype)
        if base.shape != f.shape[:2]:
            raise ValueError(f"LinearSoftmaxPolicy: logp_base must have shape {tuple(f.shape[:2])}, got "
                             f"{tuple(base.shape)}")
        self.register_buffer("logp_base", base.detach().clone())
        th = torch.zeros(d, dtype=f.dtype) if theta is None else torch.as_tensor(theta, dtype=f.dtype)
        if th.shape != (d,):
            raise ValueError(f"LinearSoftmaxPolicy: theta must have shape ({d},), got {tuple(th.shape)}")
        self.theta = nn.Parameter(th.detach().clone())

    def logits(self, prompts: Any = None) -> torch.Tensor:
        rows = self._rows(prompts)
        return self.logp_base[rows] + self.features[rows] @ self.theta


class FixedPolicy(FinitePolicy):
    """A frozen finite policy from log-probabilities ``logp[X, Y]`` (π_ref, a source's π_{r^w}, a control)."""

    def __init__(self, logp: Any) -> None:
        super().__init__()
        t = torch.as_tensor(logp, dtype=torch.float64)
        if t.dim() != 2:
            raise ValueError(f"FixedPolicy: logp must have shape [X, Y], got {tuple(t.shape)}")
        self.register_buffer("logp", torch.log_softmax(t, dim=-1).detach().clone())
        self.n_prompts, self.n_responses = t.shape

    def logits(self, prompts: Any = None) -> torch.Tensor:
        return self.logp[self._rows(prompts)]


def _repeat(prompts: Any, n: int) -> Any:
    if isinstance(prompts, torch.Tensor):
        return prompts.repeat_interleave(n, dim=0)
    return [p for p in prompts for _ in range(n)]


def best_of_n(policy: Any, reward: Any, prompts: Any, n: int = 16, k: int = 1, generator: Any = None) -> Any:
    """The top-``k`` of ``n`` samples from ``policy`` per prompt, ranked by ``reward`` (ties: earlier sample
    first). Tensor responses give ``[B]`` (k = 1) or ``[B, k]``; list responses give a list (of lists for k > 1).
    Raises ``ValueError`` if ``reward`` returns non-finite scores (the caller's round is not applied)."""
    n = check(Interval(1, None, integer=True), n, "n", owner="best_of_n")
    k = check(Interval(1, n, integer=True), k, "k", owner="best_of_n")
    samples = policy.sample(prompts, n, generator=generator)
    if n == 1:
        samples = samples.unsqueeze(-1) if isinstance(samples, torch.Tensor) else [[s] for s in samples]
    if isinstance(samples, torch.Tensor):
        B = samples.shape[0]
        flat = samples.reshape(B * n, *samples.shape[2:])
    else:
        B = len(samples)
        flat = [y for row in samples for y in row]
    scores = torch.as_tensor(reward(_repeat(prompts, n), flat), dtype=torch.float64).reshape(B, n)
    if not torch.isfinite(scores).all():
        raise ValueError("best_of_n: reward returned non-finite scores")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    if isinstance(samples, torch.Tensor):
        top = samples.gather(1, order) if samples.dim() == 2 else samples[torch.arange(B)[:, None], order]
        return top[:, 0] if k == 1 else top
    picked = [[samples[b][int(j)] for j in order[b]] for b in range(B)]
    return [row[0] for row in picked] if k == 1 else picked
