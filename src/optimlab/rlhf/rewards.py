"""Reward models (sources), the gold preference oracle, and wrappers.

Protocols (runtime-checkable, arXiv:2502.19255 §2): a :class:`RewardModel` maps ``(prompts, responses)`` to a
float tensor ``[B]`` (any scale, possibly misspecified; any callable works); a :class:`PreferenceOracle` labels
pairs, 1.0 where y1 ≻ y2. The Bradley–Terry model: P(y1 ≻ y2 | x) = σ((r(x, y1) − r(x, y2))/temperature).
Prompts and responses are opaque: integer index tensors for finite environments, lists of strings or token
tensors for language models.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from optimlab._random import check_generator
from optimlab._validation import Interval, Options, check

__all__ = ["BradleyTerryOracle", "LinearReward", "NoisySource", "PreferenceOracle", "RewardModel",
           "SequenceLogProbReward", "StandardizedReward", "TabularReward", "noisy_table"]


@runtime_checkable
class RewardModel(Protocol):
    """``__call__(prompts, responses) -> Tensor[B]``: a scalar reward per (prompt, response) pair."""

    def __call__(self, prompts: Any, responses: Any) -> torch.Tensor: ...


@runtime_checkable
class PreferenceOracle(Protocol):
    """``compare(prompts, y1, y2, *, generator=None) -> Tensor[B]`` (1.0 where y1 ≻ y2), ``n_calls`` (labels
    issued), ``reset_counter()``. Optional ``scores(prompts, responses)`` for listwise gold-best-of-K wins."""

    n_calls: int

    def compare(self, prompts: Any, y1: Any, y2: Any, *, generator: Any = None) -> torch.Tensor: ...

    def reset_counter(self) -> None: ...


def _as_long(x: Any, name: str, owner: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
        raise ValueError(f"{owner}: {name} must be integer indices, got dtype {t.dtype}")
    return t.long()


class TabularReward:
    """r(x, y) = table[x, y] for a finite environment (``table`` shape ``[X, Y]``)."""

    def __init__(self, table: Any) -> None:
        t = torch.as_tensor(table, dtype=torch.float64)
        if t.dim() != 2:
            raise ValueError(f"TabularReward: table must have shape [X, Y], got {tuple(t.shape)}")
        self.table = t

    def __call__(self, prompts: Any, responses: Any) -> torch.Tensor:
        x = _as_long(prompts, "prompts", "TabularReward")
        y = _as_long(responses, "responses", "TabularReward")
        return self.table[x, y]


class LinearReward(TabularReward):
    """r(x, y) = φ(x, y)·θ over env features ``features[X, Y, d]`` (the linear class of the paper's theory)."""

    def __init__(self, features: Any, theta: Any) -> None:
        f = torch.as_tensor(features, dtype=torch.float64)
        th = torch.as_tensor(theta, dtype=torch.float64)
        if f.dim() != 3 or th.shape != f.shape[-1:]:
            raise ValueError(f"LinearReward: features must be [X, Y, d] and theta [d], got {tuple(f.shape)} and "
                             f"{tuple(th.shape)}")
        self.features, self.theta = f, th
        super().__init__(f @ th)


def noisy_table(target: Any, rho: float, generator: Any = None) -> np.ndarray:
    """r^w = std(r*)·(ρ z* + √(1 − ρ²) ξ), z* the standardised target, ξ i.i.d. N(0, 1) per (x, y): a source of
    correlation ρ with r*, outside any linear class (the simulator's misspecification model)."""
    rho = check(Interval(-1, 1), rho, "rho", owner="NoisySource")
    t = np.asarray(target.table if isinstance(target, TabularReward) else target, dtype=np.float64)
    g = check_generator(generator, kind="numpy")
    sd = float(t.std())
    z = (t - t.mean()) / (sd if sd > 0 else 1.0)
    xi = g.standard_normal(t.shape)
    return sd * (rho * z + np.sqrt(max(0.0, 1.0 - rho * rho)) * xi)


class NoisySource(TabularReward):
    """A tabular source correlated ρ with ``target`` (a table or a :class:`TabularReward`); see :func:`noisy_table`."""

    def __init__(self, target: Any, rho: float, generator: Any = None) -> None:
        super().__init__(noisy_table(target, rho, generator))
        self.rho = float(rho)


class StandardizedReward:
    """z-scores a source per prompt (scale acts like 1/β in π_r, not in rank-based best-of-n or win rates).

    On a tabular source the whole row is standardised; otherwise responses of equal prompts within one call
    are standardised together (best-of-n scores n candidates of one prompt per call)."""

    def __init__(self, reward: Any, per_prompt: bool = True) -> None:
        if not callable(reward):
            raise ValueError(f"StandardizedReward: reward must be callable, got {type(reward).__name__}")
        self.reward, self.per_prompt = reward, bool(per_prompt)
        table = getattr(reward, "table", None)
        self.table = None
        if isinstance(table, torch.Tensor):
            dims = -1 if self.per_prompt else (0, 1)
            mu, sd = table.mean(dim=dims, keepdim=True), table.std(dim=dims, keepdim=True)
            self.table = (table - mu) / torch.where(sd > 0, sd, torch.ones_like(sd))

    def __call__(self, prompts: Any, responses: Any) -> torch.Tensor:
        if self.table is not None:
            return self.table[_as_long(prompts, "prompts", "StandardizedReward"),
                              _as_long(responses, "responses", "StandardizedReward")]
        r = torch.as_tensor(self.reward(prompts, responses), dtype=torch.float64)
        keys = [str(p) for p in (prompts.tolist() if isinstance(prompts, torch.Tensor) else prompts)] \
            if self.per_prompt else ["all"] * len(r)
        out = torch.empty_like(r)
        for k in set(keys):
            idx = torch.tensor([i for i, kk in enumerate(keys) if kk == k])
            v = r[idx]
            sd = v.std() if len(v) > 1 else torch.tensor(0.0, dtype=r.dtype)
            out[idx] = (v - v.mean()) / (sd if sd > 0 else 1.0)
        return out


class SequenceLogProbReward:
    """A language model used as a source: log π(y|x) without a reference (the official code's T5 likelihood
    sources), or β·(log π(y|x) − log π₀(y|x)) with one (the paper's implicit-reward form)."""

    def __init__(self, model: Any, ref_model: Any = None, beta: float = 1.0) -> None:
        if not hasattr(model, "log_prob"):
            raise ValueError("SequenceLogProbReward: model must have log_prob(prompts, responses)")
        self.model, self.ref_model = model, ref_model
        self.beta = check(Interval(0, None, closed="neither"), beta, "beta", owner="SequenceLogProbReward")

    @torch.no_grad()
    def __call__(self, prompts: Any, responses: Any) -> torch.Tensor:
        lp = self.model.log_prob(prompts, responses)
        if self.ref_model is None:
            return lp
        return self.beta * (lp - self.ref_model.log_prob(prompts, responses))


_TIES = Options("random", "first", "second")


class BradleyTerryOracle:
    """Gold preference labels: P(y1 ≻ y2) = σ((r(y1) − r(y2))/temperature); ``deterministic`` gives
    1{r(y1) > r(y2)} with ties broken by ``tie`` (``"random"``, ``"first"``: y1 wins, ``"second"``).

    ``n_calls`` counts labels (pairs), not batches. ``scores`` exposes the gold reward (listwise wins)."""

    def __init__(self, reward: Any, temperature: float = 1.0, deterministic: bool = False, tie: str = "random",
                 generator: Any = None) -> None:
        if not callable(reward):
            raise ValueError(f"BradleyTerryOracle: reward must be callable, got {type(reward).__name__}")
        self.reward = reward
        self.temperature = check(Interval(0, None, closed="neither"), temperature, "temperature",
                                 owner="BradleyTerryOracle")
        self.deterministic = bool(deterministic)
        self.tie = check(_TIES, tie, "tie", owner="BradleyTerryOracle")
        self._generator = generator
        self.n_calls = 0

    def _gen(self, generator: Any) -> torch.Generator:
        if generator is not None:
            return check_generator(generator)
        if not isinstance(self._generator, torch.Generator):
            self._generator = check_generator(self._generator)
        return self._generator

    def scores(self, prompts: Any, responses: Any) -> torch.Tensor:
        """Gold rewards r*(x, y) (no label counted)."""
        return torch.as_tensor(self.reward(prompts, responses), dtype=torch.float64)

    def probability(self, prompts: Any, y1: Any, y2: Any) -> torch.Tensor:
        """P(y1 ≻ y2) under the model (no label counted)."""
        return torch.sigmoid((self.scores(prompts, y1) - self.scores(prompts, y2)) / self.temperature)

    def compare(self, prompts: Any, y1: Any, y2: Any, *, generator: Any = None) -> torch.Tensor:
        """Labels ``[B]``: 1.0 where y1 ≻ y2, else 0.0."""
        d = self.scores(prompts, y1) - self.scores(prompts, y2)
        if not torch.isfinite(d).all():
            raise ValueError("BradleyTerryOracle: the gold reward returned non-finite values")
        if self.deterministic:
            out = (d > 0).to(torch.float64)
            ties = d == 0
            if ties.any():
                if self.tie == "first":
                    out[ties] = 1.0
                elif self.tie == "random":
                    u = torch.rand(int(ties.sum()), generator=self._gen(generator), dtype=torch.float64)
                    out[ties] = (u < 0.5).to(torch.float64)
        else:
            u = torch.rand(d.shape, generator=self._gen(generator), dtype=torch.float64)
            out = (u < torch.sigmoid(d / self.temperature)).to(torch.float64)
        self.n_calls += int(d.numel())
        return out

    def reset_counter(self) -> None:
        self.n_calls = 0
