"""The KL-bandit simulator: ``run_bandit`` runs one method on a :class:`~optimlab.rlhf.env.KLBanditEnv`.

Learner (``learner="mle"``): ridge Bradley–Terry MLE over the env's features by Newton (λ = ``ridge``),
refit every ``refit_every`` labels, π_t = π_{r̂_t} exactly (arXiv:2502.19255 §3, the reward-MLE step). Each
round t: a prompt x; y¹ ~ π_t(·|x); y² from the method's second sampler; a gold Bradley–Terry label.

Methods (``method``): ``"tpo"`` (win-rate UCB over sources + null arm, the empirical TPO; a source arm draws y²
from π_{r^w} exactly), ``"no_transfer"`` (y² ~ π_t), ``"optimistic"`` (y² ~ π_{r̂ + γ·bonus}, bonus =
‖φ − φ̄_x‖_{Σ⁻¹}), ``"ref"`` (y² ~ π_ref: the control that credits a second sampler, not transfer),
``"uniform"``, ``"fixed:<w>"``, ``"fixed_best"`` / ``"oracle_best"`` / ``"fixed_worst"`` (source with the smallest
/ largest true gap of π_{r^w}), ``"mixture"`` (π of the uniform-weight mean of the sources: TRL's rule),
``"block_tpo"`` (the theoretical block form, :class:`~optimlab.rlhf.block.BlockTPO`).

Common random numbers: for a given ``seed`` every method sees the same prompt stream and the same uniforms for
sampling and labelling, so differences between methods are paired. Logged per round: ``learner_gap`` (J* − J(π_t)),
``sampler_gap`` (of y²'s policy), ``regret_played`` (Σ gap of the policy that drew y²: π_t on the null arm or
without transfer), ``regret_pair`` (Σ ½(learner + sampler gap)), ``arm``, ``win``, ``identical_pair``,
``oracle_calls``, ``source_calls`` (reward evaluations), ``generations`` (responses drawn).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from optimlab._random import check_generator, mix64
from optimlab._validation import Interval, Options, check
from optimlab.result import DIVERGED, MAX_ITER, IterativeResult
from optimlab.rlhf.env import KLBanditEnv, np_kl_optimal
from optimlab.rlhf.selectors import SourceSelector

__all__ = ["MLELearner", "RunLog", "Streams", "one_thread", "run_bandit", "sample_rows"]

HISTORY_KEYS = ("learner_gap", "sampler_gap", "regret_played", "regret_pair", "arm", "win", "identical_pair",
                "oracle_calls", "source_calls", "generations")


@dataclass(frozen=True, kw_only=True)
class RunLog(IterativeResult):
    """One simulator run: the :class:`IterativeResult` fields plus ``seed``, ``config`` and ``final_logp``
    (π_T as a numpy ``[X, Y]`` array). ``converged`` is False (a fixed horizon)."""

    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    final_logp: Any = None

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "iterations": self.iterations, "seconds": self.seconds,
                           "seed": self.seed, "config": self.config, "history": self.history,
                           "certificate": self.certificate}, default=float)

    def plot(self, ax: Any = None, key: str = "regret_pair", label: str | None = None) -> Any:
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(np.arange(1, self.iterations + 1), self.history[key], label=label or self.config.get("method"))
        ax.set_xlabel("labels")
        ax.set_ylabel(key)
        return ax


@contextlib.contextmanager
def one_thread():
    """torch and BLAS/OpenMP pools at one thread for the block, restored after (small d×d solves on shared cores
    are many times slower with thread pools; ``threadpoolctl`` is used when installed)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(old)


class Streams:
    """The paired random streams of one seed: prompts, sampling uniforms, label uniforms, selector."""

    def __init__(self, seed: int, T: int, n_prompts: int) -> None:
        g = [check_generator(mix64(seed, k) >> 1, kind="numpy") for k in (1, 2, 3, 4)]
        self.prompts = g[0].integers(n_prompts, size=T)
        self.u_sample = g[1].random((T, 2))
        self.u_label = g[2].random(T)
        self.selector = g[3]


def sample_rows(logp: np.ndarray, u: float) -> int:
    """Inverse-CDF draw from one row of log-probabilities."""
    c = np.cumsum(np.exp(logp))
    return int(min(np.searchsorted(c, u * c[-1], side="right"), len(c) - 1))


class MLELearner:
    """Ridge BT-MLE over linear features, refit by Newton every ``refit_every`` labels; π_t = π_{r̂}."""

    def __init__(self, env: KLBanditEnv, ridge: float = 1.0, refit_every: int = 10, T: int = 1000) -> None:
        self.env, self.ridge, self.refit_every = env, ridge, refit_every
        self.theta = np.zeros(env.d)
        self.dphi = np.zeros((T, env.d))
        self.signs = np.zeros(T)
        self.n = 0
        self.sigma = ridge * np.eye(env.d)
        self._set_policy()

    def _set_policy(self) -> None:
        self.logp = np_kl_optimal(self.env.logp_ref, self.env.features @ self.theta, self.env.beta)
        self.gap = self.env.gap_np(self.logp)
        self._opt: dict[float, tuple[np.ndarray, float]] = {}

    def add(self, x: int, y1: int, y2: int, label: float) -> None:
        if self.n == len(self.signs):
            self.dphi = np.concatenate([self.dphi, np.zeros_like(self.dphi)])
            self.signs = np.concatenate([self.signs, np.zeros_like(self.signs)])
        d = self.env.features[x, y1] - self.env.features[x, y2]
        self.dphi[self.n], self.signs[self.n] = d, 2.0 * label - 1.0
        self.sigma += np.outer(d, d)
        self.n += 1
        if self.n % self.refit_every == 0:
            self.refit()

    def refit(self, iters: int = 50) -> None:
        """Damped Newton (backtracking) on L(θ) = Σ log(1 + exp(−s·Δφθ)) + λ/2‖θ‖² (warm start)."""
        D, s, th = self.dphi[:self.n], self.signs[:self.n], self.theta.copy()
        eye = self.ridge * np.eye(self.env.d)

        def loss(v: np.ndarray) -> float:
            return float(np.logaddexp(0.0, -s * (D @ v)).sum() + 0.5 * self.ridge * v @ v)

        cur = loss(th)
        for _ in range(iters):
            z = s * (D @ th)
            p = 0.5 * (1.0 - np.tanh(0.5 * z))  # σ(−s z), overflow-free
            grad = -D.T @ (s * p) + self.ridge * th
            if np.abs(grad).max() < 1e-9:
                break
            H = (D * (p * (1 - p))[:, None]).T @ D + eye
            step = np.linalg.solve(H, grad)
            t = 1.0
            while t > 1e-8:
                new = loss(th - t * step)
                if new <= cur - 1e-4 * t * float(grad @ step):
                    break
                t *= 0.5
            th, cur = th - t * step, new
        self.theta = th
        self._set_policy()

    def bonus(self) -> np.ndarray:
        """‖φ(x, y) − φ̄_x‖_{Σ⁻¹} with φ̄_x = E_{π_ref} φ."""
        f = self.env.features
        c = f - (np.exp(self.env.logp_ref)[..., None] * f).sum(1, keepdims=True)
        sinv = np.linalg.inv(self.sigma)
        return np.sqrt(np.maximum(np.einsum("xyd,de,xye->xy", c, sinv, c), 0.0))

    def optimistic(self, gamma: float) -> tuple[np.ndarray, float]:
        """(log π_{r̂ + γ·bonus}, its gap), cached until the next refit."""
        if gamma not in self._opt:
            lp = np_kl_optimal(self.env.logp_ref, self.env.features @ self.theta + gamma * self.bonus(),
                               self.env.beta)
            self._opt[gamma] = (lp, self.env.gap_np(lp))
        return self._opt[gamma]


_SIMPLE = ("tpo", "no_transfer", "optimistic", "ref", "uniform", "fixed_best", "oracle_best", "fixed_worst",
           "mixture", "block_tpo")


def _parse(method: str, W: int) -> tuple[str, int | None]:
    if isinstance(method, str) and method.startswith("fixed:"):
        w = method.split(":", 1)[1]
        if not w.isdigit() or int(w) >= W:
            raise ValueError(f"run_bandit: method 'fixed:<w>' needs 0 <= w < {W}, got {method!r}")
        return "fixed", int(w)
    check(Options(*_SIMPLE), method, "method", owner="run_bandit")
    if method in ("tpo", "fixed_best", "oracle_best", "fixed_worst", "mixture") and W == 0 and method != "tpo":
        raise ValueError(f"run_bandit: method {method!r} needs at least one source")
    return method, None


def run_bandit(env: KLBanditEnv, method: str, T: int, seed: int, learner: str = "mle", refit_every: int = 10,
               log_at: tuple[int, ...] = (50, 200, 600), *, null_score: float = 0.55, bonus_coef: float = 1.0,
               gamma: float = 1.0, ridge: float = 1.0, block: dict[str, Any] | None = None) -> RunLog:
    """Run ``method`` for ``T`` labels with paired streams from ``seed``; returns a :class:`RunLog`.

    ``null_score``/``bonus_coef`` configure TPO's selector, ``gamma`` the optimistic sampler, ``block`` the
    keyword arguments of :class:`~optimlab.rlhf.block.BlockTPO`. Sets torch to one thread and restores it."""
    T = check(Interval(1, None, integer=True), T, "T", owner="run_bandit")
    check(Interval(0, None, integer=True), seed, "seed", owner="run_bandit")
    check(Options("mle"), learner, "learner", owner="run_bandit")
    refit_every = check(Interval(1, None, integer=True), refit_every, "refit_every", owner="run_bandit")
    W = len(env.source_tables)
    kind, fixed_w = _parse(method, W)
    if kind == "block_tpo":
        from optimlab.rlhf.block import BlockTPO

        return BlockTPO(env, **(block or {})).run(T, seed, refit_every=refit_every, ridge=ridge, log_at=log_at)
    with one_thread():
        t0 = time.perf_counter()
        st = Streams(seed, T, env.n_prompts)
        lr = MLELearner(env, ridge=ridge, refit_every=refit_every, T=T)
        sel = SourceSelector(W, null_score=null_score, bonus_coef=bonus_coef, generator=st.selector) \
            if kind == "tpo" else None
        fixed = {}
        if kind in ("fixed", "fixed_best", "oracle_best", "fixed_worst"):
            w = fixed_w if kind == "fixed" else int(np.argmin(env.source_gaps) if kind != "fixed_worst"
                                                     else np.argmax(env.source_gaps))
            fixed = {"logp": env.source_logps[w], "gap": float(env.source_gaps[w]), "arm": w}
        elif kind == "ref":
            fixed = {"logp": env.logp_ref, "gap": env.gap_np(env.logp_ref), "arm": -1}
        elif kind == "uniform":
            u = np.full(env.target.shape, -math.log(env.n_responses))
            fixed = {"logp": u, "gap": env.gap_np(u), "arm": -1}
        elif kind == "mixture":
            lp = np_kl_optimal(env.logp_ref, env.source_tables.mean(0), env.beta)
            fixed = {"logp": lp, "gap": env.gap_np(lp), "arm": -1}
        h = {k: [] for k in HISTORY_KEYS}
        reg_played = reg_pair = 0.0
        src_calls = 0
        status = MAX_ITER
        for t in range(T):
            x = int(st.prompts[t])
            arm, extra_calls = -1, 0
            if sel is not None:
                arm = sel.select()
                if arm < W:
                    s_logp, s_gap, extra_calls = env.source_logps[arm], float(env.source_gaps[arm]), env.n_responses
                else:
                    s_logp, s_gap = lr.logp, lr.gap
            elif kind == "no_transfer":
                s_logp, s_gap = lr.logp, lr.gap
            elif kind == "optimistic":
                s_logp, s_gap = lr.optimistic(gamma)
            else:
                s_logp, s_gap, arm = fixed["logp"], fixed["gap"], fixed["arm"]
                extra_calls = env.n_responses * (W if kind == "mixture" else 1) if kind not in ("ref", "uniform") \
                    else 0
            y1 = sample_rows(lr.logp[x], st.u_sample[t, 0])
            y2 = sample_rows(s_logp[x], st.u_sample[t, 1])
            p12 = 1.0 / (1.0 + math.exp(-(env.target[x, y1] - env.target[x, y2])))
            label = 1.0 if st.u_label[t] < p12 else 0.0
            win = math.nan
            if sel is not None:
                win = 1.0 - label if arm < W else math.nan
                sel.update(arm, 0.0 if arm == W else win)
            learner_gap = lr.gap
            src_calls += extra_calls
            reg_played += s_gap
            reg_pair += 0.5 * (learner_gap + s_gap)
            for k, v in (("learner_gap", learner_gap), ("sampler_gap", s_gap), ("regret_played", reg_played),
                         ("regret_pair", reg_pair), ("arm", float(arm)), ("win", win),
                         ("identical_pair", float(y1 == y2)), ("oracle_calls", float(t + 1)),
                         ("source_calls", float(src_calls)), ("generations", float(2 * (t + 1)))):
                h[k].append(v)
            if not math.isfinite(learner_gap + s_gap):
                status = DIVERGED
                break
            lr.add(x, y1, y2, label)
        cert = {"final_gap": lr.gap, "identical_fraction": float(np.mean(h["identical_pair"]))}
        cert.update({f"gap@{a}": h["learner_gap"][a - 1] for a in log_at if a <= len(h["learner_gap"])})
        config = {"method": method, "T": T, "learner": learner, "refit_every": refit_every, "null_score": null_score,
                  "bonus_coef": bonus_coef, "gamma": gamma, "ridge": ridge, "oracle": "bradley_terry_sampled",
                  "env": env.config}
        return RunLog(status=status, iterations=len(h["arm"]), seconds=time.perf_counter() - t0, history=h,
                      certificate=cert, seed=seed, config=config, final_logp=lr.logp.copy())
