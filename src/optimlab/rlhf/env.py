"""``KLBanditEnv``: a KL-regularised contextual bandit with several source reward models of controllable quality.

The simulator of this library for arXiv:2502.19255 (TPO): prompts x (uniform), responses y, features
φ(x, y) ~ N(0, I_d), target r* = φ·θ* with ‖θ*‖ = ``theta_norm``; reference π_ref = softmax(a·r̃* + √(1 − a²)·g),
r̃* the standardised r*, g ~ N(0, 1), a = ``ref_alignment`` (−0.8: anti-aligned, so exploration matters).
Source w: r^w = std(r*)·(ρ_w z* + √(1 − ρ_w²) ξ_w), ξ_w i.i.d. per (x, y), outside the linear class (true
misspecification), quality set by ρ_w. ``tabular``: one-hot features (d = X·Y), r* entries N(0, theta_norm²).
``sequence``: responses are all strings of ``length`` tokens over ``vocab`` symbols (enumerated, so every value
is exact), r*(x, y) = Σ_l s[x, l, y_l] (a hidden per-token score table), features one-hot (position, token).
Everything is float64 numpy inside (fast exact values); torch views are given for the library's policies.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from optimlab._random import check_generator, mix64
from optimlab._validation import Interval, check
from optimlab.rlhf.objective import check_beta
from optimlab.rlhf.policies import FixedPolicy
from optimlab.rlhf.rewards import TabularReward, noisy_table

__all__ = ["KLBanditEnv", "np_kl_optimal", "np_suboptimality", "np_value"]


def _lse(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]


def np_kl_optimal(logp_ref: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """log π_r = log π_ref + r/β − logsumexp(·) (numpy twin of :func:`optimlab.rlhf.kl_optimal_logprobs`)."""
    z = logp_ref + reward / beta
    return z - _lse(z)[..., None]


def np_value(logp: np.ndarray, logp_ref: np.ndarray, reward: np.ndarray, beta: float) -> float:
    """Exact J_r(π) = mean_x [Σ_y π r − β KL(π‖π_ref)] (uniform prompts)."""
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        kl = np.where(p > 0, p * (logp - logp_ref), 0.0).sum(-1)
        er = np.where(p > 0, p * reward, 0.0).sum(-1)
    return float((er - beta * kl).mean())


def np_suboptimality(logp: np.ndarray, logp_star: np.ndarray, beta: float) -> float:
    """J* − J(π) = β mean_x KL(π‖π*) (the identity of arXiv:2502.19255 §2)."""
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        return float(beta * np.where(p > 0, p * (logp - logp_star), 0.0).sum(-1).mean())


def _standardise(a: np.ndarray) -> np.ndarray:
    sd = a.std()
    return (a - a.mean()) / (sd if sd > 0 else 1.0)


@dataclass(eq=False)
class KLBanditEnv:
    """A finite KL-bandit (see the module docstring); build it with :meth:`linear`, :meth:`tabular` or
    :meth:`sequence`. ``target`` [X, Y], ``features`` [X, Y, d], ``logp_ref`` [X, Y], ``source_tables``
    [W, X, Y]; derived: ``logp_star`` (π*), ``source_logps`` (π_{r^w}), ``source_gaps``, ``R``."""

    features: np.ndarray
    target: np.ndarray
    logp_ref: np.ndarray
    source_tables: np.ndarray
    beta: float
    seed: int
    kind: str
    source_rhos: tuple[float, ...]
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.beta = check_beta(self.beta, "KLBanditEnv")
        X, Y = self.target.shape
        if self.logp_ref.shape != (X, Y) or self.features.shape[:2] != (X, Y):
            raise ValueError("KLBanditEnv: features, target and logp_ref must share (X, Y)")
        self.n_prompts, self.n_responses, self.d = X, Y, self.features.shape[2]
        self.logp_star = np_kl_optimal(self.logp_ref, self.target, self.beta)
        self.optimal_value = float(self.beta * _lse(self.logp_ref + self.target / self.beta).mean())
        self.source_logps = np.stack([np_kl_optimal(self.logp_ref, t, self.beta) for t in self.source_tables]) \
            if len(self.source_tables) else np.zeros((0, X, Y))
        self.source_gaps = np.array([self.gap_np(lp) for lp in self.source_logps])
        self.R = float((self.target.max(1) - self.target.min(1)).max())

    # ----------------------------------------------------------------------------------------- builders
    @classmethod
    def linear(cls, X: int = 40, Y: int = 24, d: int = 8, beta: float = 0.2, theta_norm: float = 3.0,
               source_rhos: tuple[float, ...] = (0.9, 0.5, 0.0, -0.5), ref_alignment: float = -0.8,
               seed: int = 0) -> KLBanditEnv:
        """Gaussian features, r* = φ·θ* (the default environment of the claims)."""
        X, Y, d = (check(Interval(1, None, integer=True), v, n, owner="KLBanditEnv.linear")
                   for v, n in ((X, "X"), (Y, "Y"), (d, "d")))
        g = check_generator(seed, kind="numpy")
        phi = g.standard_normal((X, Y, d))
        theta = g.standard_normal(d)
        theta *= theta_norm / np.linalg.norm(theta)
        return cls._build(phi, phi @ theta, g, beta, source_rhos, ref_alignment, seed, "linear",
                          {"X": X, "Y": Y, "d": d, "theta_norm": theta_norm})

    @classmethod
    def tabular(cls, X: int = 5, Y: int = 6, beta: float = 0.2, theta_norm: float = 3.0,
                source_rhos: tuple[float, ...] = (0.9, 0.5, 0.0, -0.5), ref_alignment: float = -0.8,
                seed: int = 0) -> KLBanditEnv:
        """One-hot features (d = X·Y), r*(x, y) ~ N(0, theta_norm²) i.i.d."""
        g = check_generator(seed, kind="numpy")
        phi = np.eye(X * Y).reshape(X, Y, X * Y)
        target = theta_norm * g.standard_normal((X, Y))
        return cls._build(phi, target, g, beta, source_rhos, ref_alignment, seed, "tabular",
                          {"X": X, "Y": Y, "theta_norm": theta_norm})

    @classmethod
    def sequence(cls, length: int = 3, vocab: int = 6, X: int = 16, beta: float = 0.2, token_scale: float = 1.0,
                 source_rhos: tuple[float, ...] = (0.9, 0.3, -0.5), ref_alignment: float = -0.8,
                 seed: int = 0) -> KLBanditEnv:
        """All ``vocab**length`` strings (≤ 1,296) as responses; r* = Σ_l s[x, l, y_l]."""
        length = check(Interval(1, None, integer=True), length, "length", owner="KLBanditEnv.sequence")
        vocab = check(Interval(2, None, integer=True), vocab, "vocab", owner="KLBanditEnv.sequence")
        if vocab ** length > 1296:
            raise ValueError(f"KLBanditEnv.sequence: vocab**length must be <= 1296, got {vocab ** length}")
        g = check_generator(seed, kind="numpy")
        seqs = np.array(list(itertools.product(range(vocab), repeat=length)))  # [Y, L]
        s = token_scale * g.standard_normal((X, length, vocab))
        target = s[:, np.arange(length)[None, :], seqs].sum(-1)  # [X, Y]
        onehot = np.zeros((len(seqs), length * vocab))
        onehot[np.arange(len(seqs))[:, None], np.arange(length) * vocab + seqs] = 1.0
        phi = np.broadcast_to(onehot, (X, *onehot.shape)).copy()
        env = cls._build(phi, target, g, beta, source_rhos, ref_alignment, seed, "sequence",
                         {"X": X, "length": length, "vocab": vocab, "token_scale": token_scale})
        env.sequences = seqs
        return env

    @classmethod
    def _build(cls, phi, target, g, beta, rhos, a, seed, kind, config) -> KLBanditEnv:
        a = check(Interval(-1, 1), a, "ref_alignment", owner=f"KLBanditEnv.{kind}")
        rhos = tuple(float(check(Interval(-1, 1), r, "source_rhos", owner=f"KLBanditEnv.{kind}")) for r in rhos)
        noise = g.standard_normal(target.shape)
        ref_logits = a * _standardise(target) + np.sqrt(1 - a * a) * noise
        logp_ref = ref_logits - _lse(ref_logits)[..., None]
        tables = np.stack([noisy_table(target, r, g) for r in rhos]) if rhos else np.zeros((0, *target.shape))
        return cls(features=phi, target=target, logp_ref=logp_ref, source_tables=tables, beta=beta, seed=seed,
                   kind=kind, source_rhos=rhos, config={**config, "beta": beta, "ref_alignment": a,
                                                        "source_rhos": list(rhos), "seed": seed, "kind": kind})

    # ----------------------------------------------------------------------------------------- exact metrics
    def gap_np(self, logp: np.ndarray) -> float:
        """J* − J(π) for a numpy log-policy ``[X, Y]``."""
        return np_suboptimality(logp, self.logp_star, self.beta)

    def value_np(self, logp: np.ndarray) -> float:
        return np_value(logp, self.logp_ref, self.target, self.beta)

    def suboptimality(self, policy: Any) -> float:
        """J* − J(π) for a finite policy (its ``log_probs()``) or a log-prob array/tensor ``[X, Y]``."""
        if hasattr(policy, "log_probs"):
            with torch.no_grad():
                policy = policy.log_probs()
        return self.gap_np(np.asarray(torch.as_tensor(policy, dtype=torch.float64).detach()))

    def win_rate(self, logp_a: np.ndarray, logp_b: np.ndarray) -> float:
        """Exact BT win rate of π_a over π_b: mean_x Σ π_a(y)π_b(y')σ(r*(y) − r*(y'))."""
        pa, pb = np.exp(logp_a), np.exp(logp_b)
        sig = 1.0 / (1.0 + np.exp(-(self.target[:, :, None] - self.target[:, None, :])))
        return float(np.einsum("xy,xz,xyz->x", pa, pb, sig).mean())

    # ----------------------------------------------------------------------------------------- torch views
    @property
    def target_reward(self) -> TabularReward:
        return TabularReward(self.target)

    @property
    def sources(self) -> list[TabularReward]:
        return [TabularReward(t) for t in self.source_tables]

    def ref_policy(self) -> FixedPolicy:
        return FixedPolicy(self.logp_ref)

    def source_policy(self, w: int) -> FixedPolicy:
        return FixedPolicy(self.source_logps[w])

    def sample_prompts(self, n: int, generator: Any = None) -> torch.Tensor:
        """``n`` uniform prompt indices; without ``generator`` the env's own stream (seeded from its seed) advances."""
        if generator is None:
            if getattr(self, "_prompt_gen", None) is None:
                self._prompt_gen = check_generator(mix64(self.seed, 17) >> 1)
            generator = self._prompt_gen
        return torch.randint(self.n_prompts, (n,), generator=check_generator(generator))
