"""``BlockTPO``: the theoretical form of TPO (Huang, Li, Dann, He, arXiv:2502.19255, Alg. 1-2 as summarised;
the block details are this library's reading, see below), on the KL-bandit simulator only.

T rounds are split into blocks of N = ``block_size``. In each block:
* the first n_on = max(1, ⌈α·N⌉) rounds run the no-regret online learner (``online="optimistic"``: y² from
  π_{r̂ + γ_o·bonus}); α = ``online_fraction``, ``"theory"`` = e^{−R/β} (Coro. 4.1); the floor of one online round
  is this library's choice;
* at the first transfer round one policy π̃_b is chosen by value-UCB (:func:`~optimlab.rlhf.selectors.value_ucb`)
  among the sources' π_{r^w} (optimistic) and the self-transfer policy π̂_b (pessimistic); π̂_b is the RPO fit
  (:func:`~optimlab.rlhf.losses.distill_rpo`, DPO + η·SFT) on the online rounds' data (``distill="rpo"``), or the
  plug-in π_{r̂} (``distill="mle"``); the other N − n_on rounds draw y² ~ π̃_b, y¹ ~ π_t.
With no source (W = 0) every round is online: the run is bit-identical to ``run_bandit(env, "optimistic")``
(Coro. 4.5: standard online RLHF). UNVERIFIED against the PDF: N, the widths, η, whether both responses of a
transfer round come from π̃_b (here only y²).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from optimlab._validation import Interval, Options, check
from optimlab.result import MAX_ITER
from optimlab.rlhf.env import KLBanditEnv
from optimlab.rlhf.losses import distill_rpo
from optimlab.rlhf.policies import FixedPolicy, LinearSoftmaxPolicy
from optimlab.rlhf.selectors import ValueUCBSelector
from optimlab.rlhf.simulate import HISTORY_KEYS, MLELearner, RunLog, Streams, one_thread, sample_rows

__all__ = ["BlockTPO"]


class BlockTPO:
    """Block-structured TPO on a :class:`KLBanditEnv` (see the module docstring); ``run(T, seed) -> RunLog``.

    ``sources``: indices of the env's sources to transfer from (default all; ``[]`` gives pure online RLHF).
    ``gamma``: value-UCB width (float or ``"theory"``); ``online_gamma``: the optimistic online sampler's."""

    def __init__(self, env: KLBanditEnv, sources: list[int] | None = None, R: float | None = None,
                 block_size: int = 20, online_fraction: float | str = "theory", online: str = "optimistic",
                 distill: str = "rpo", rpo_eta: float = 1.0, gamma: float | str = 3.0, online_gamma: float = 1.0,
                 distill_max_iter: int = 30) -> None:
        own = "BlockTPO"
        self.env = env
        W = len(env.source_tables)
        self.sources = list(range(W)) if sources is None else [int(w) for w in sources]
        if any(w < 0 or w >= W for w in self.sources):
            raise ValueError(f"{own}: sources must be indices in [0, {W}), got {sources!r}")
        self.R = env.R if R is None else check(Interval(0, None, closed="neither"), R, "R", owner=own)
        self.block_size = check(Interval(1, None, integer=True), block_size, "block_size", owner=own)
        if online_fraction != "theory":
            online_fraction = check(Interval(0, 1, closed="right"), online_fraction, "online_fraction", owner=own,
                                    ) if not isinstance(online_fraction, str) else online_fraction
        if isinstance(online_fraction, str) and online_fraction != "theory":
            raise ValueError(f"{own}: online_fraction must be 'theory' or in (0, 1], got {online_fraction!r}")
        self.online_fraction = online_fraction
        self.online = check(Options("optimistic"), online, "online", owner=own)
        self.distill = check(Options("rpo", "mle"), distill, "distill", owner=own)
        self.rpo_eta = check(Interval(0, None, closed="left"), rpo_eta, "rpo_eta", owner=own)
        self.online_gamma = check(Interval(0, None, closed="left"), online_gamma, "online_gamma", owner=own)
        self.distill_max_iter = distill_max_iter
        self.selector = ValueUCBSelector([torch.as_tensor(env.source_logps[w]) for w in self.sources],
                                         torch.as_tensor(env.features), env.beta, gamma=gamma)

    @property
    def alpha(self) -> float:
        return math.exp(-self.R / self.env.beta) if self.online_fraction == "theory" else float(self.online_fraction)

    @property
    def n_online(self) -> int:
        """n_on = max(1, ⌈α·N⌉) (all N rounds without sources)."""
        if not self.sources:
            return self.block_size
        return min(self.block_size, max(1, math.ceil(self.alpha * self.block_size)))

    def _self_candidate(self, lr: MLELearner, data: list[tuple[int, int, int]]) -> np.ndarray:
        env = self.env
        if self.distill == "mle" or not data:
            return lr.logp
        pol = LinearSoftmaxPolicy(torch.as_tensor(env.features), torch.as_tensor(env.logp_ref))
        x, yw, yl = (torch.tensor(c) for c in zip(*data))
        self.last_distill = distill_rpo(pol, (x, yw, yl), FixedPolicy(env.logp_ref), env.beta, eta=self.rpo_eta,
                                        max_iter=self.distill_max_iter)
        with torch.no_grad():
            return pol.log_probs().numpy()

    def run(self, T: int, seed: int, refit_every: int = 10, ridge: float = 1.0,
            log_at: tuple[int, ...] = (50, 200, 600)) -> RunLog:
        T = check(Interval(1, None, integer=True), T, "T", owner="BlockTPO.run")
        env, W = self.env, len(self.sources)
        with one_thread():
            t0 = time.perf_counter()
            st = Streams(seed, T, env.n_prompts)
            lr = MLELearner(env, ridge=ridge, refit_every=refit_every, T=T)
            h = {k: [] for k in (*HISTORY_KEYS, "self_gap")}
            online_data: list[tuple[int, int, int]] = []
            choice, s_logp, s_gap, self_gap = -1, None, math.nan, math.nan
            reg_played = reg_pair = 0.0
            choices: list[int] = []
            n_on = self.n_online
            for t in range(T):
                x, pos = int(st.prompts[t]), t % self.block_size
                online = pos < n_on
                if online:
                    o_logp, o_gap = lr.optimistic(self.online_gamma)
                    cur_logp, cur_gap, arm = o_logp, o_gap, -1
                else:
                    if pos == n_on:  # the block's one selection
                        self_logp = self._self_candidate(lr, online_data)
                        self_gap = env.gap_np(self_logp)
                        choice, _ = self.selector.select(torch.as_tensor(self_logp), torch.as_tensor(lr.theta),
                                                         torch.as_tensor(np.linalg.inv(lr.sigma)),
                                                         torch.as_tensor(env.logp_ref), lr.n)
                        choices.append(choice)
                        s_logp = self_logp if choice == W else env.source_logps[self.sources[choice]]
                        s_gap = self_gap if choice == W else float(env.source_gaps[self.sources[choice]])
                    cur_logp, cur_gap, arm = s_logp, s_gap, choice
                y1 = sample_rows(lr.logp[x], st.u_sample[t, 0])
                y2 = sample_rows(cur_logp[x], st.u_sample[t, 1])
                p12 = 1.0 / (1.0 + math.exp(-(env.target[x, y1] - env.target[x, y2])))
                label = 1.0 if st.u_label[t] < p12 else 0.0
                learner_gap = lr.gap
                reg_played += cur_gap
                reg_pair += 0.5 * (learner_gap + cur_gap)
                for k, v in (("learner_gap", learner_gap), ("sampler_gap", cur_gap), ("regret_played", reg_played),
                             ("regret_pair", reg_pair), ("arm", float(arm)), ("win", math.nan),
                             ("identical_pair", float(y1 == y2)), ("oracle_calls", float(t + 1)),
                             ("source_calls", 0.0), ("generations", float(2 * (t + 1))), ("self_gap", self_gap)):
                    h[k].append(v)
                if online:
                    online_data.append((x, y1, y2) if label == 1.0 else (x, y2, y1))
                lr.add(x, y1, y2, label)
            cert = {"final_gap": lr.gap, "final_self_gap": self_gap, "n_online": float(n_on),
                    "identical_fraction": float(np.mean(h["identical_pair"]))}
            cert.update({f"gap@{a}": h["learner_gap"][a - 1] for a in log_at if a <= T})
            cert.update({f"block_share_{w}": (choices.count(w) / len(choices)) if choices else 0.0
                         for w in range(W + 1)})
            config = {"method": "block_tpo", "T": T, "block_size": self.block_size, "n_online": n_on,
                      "online_fraction": self.online_fraction, "distill": self.distill, "rpo_eta": self.rpo_eta,
                      "gamma": self.selector.gamma, "online_gamma": self.online_gamma, "sources": self.sources,
                      "block_choices": choices, "oracle": "bradley_terry_sampled", "env": env.config}
            return RunLog(status=MAX_ITER, iterations=T, seconds=time.perf_counter() - t0, history=h,
                          certificate=cert, seed=seed, config=config, final_logp=lr.logp.copy())
