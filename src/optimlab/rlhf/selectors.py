"""Source selection for transfer from imperfect reward models (arXiv:2502.19255).

* :class:`SourceSelector` (``rule="winrate_ucb"``, the empirical TPO): arms 0..W−1 are the sources, arm W
  ("null") is the current online policy. Score_a = mean_a + c/√(n_a + 1e−6); a source play yields a win
  ∈ {0, 1} (the gold oracle prefers the transfer response; listwise: the gold-best of K is a transfer
  response), the null arm is credited ``null_score`` per play (default chance + 0.05: 0.55 pairwise; the
  authors' released annotation code credits 0.55 with K = 8 and draws arms uniformly until its first update,
  every 50 prompts: ``init="uniform_until_update"``; checked by reading that code). Why win rate works as a proxy: a low win rate against a fixed comparator forces a
  large coverage coefficient (the paper's Lemma 5.1, as summarised; UNVERIFIED against the PDF here). Win
  rates are relative to the moving learner, so statistics reset at :meth:`new_iteration` or use a window.
* :func:`value_ucb` (the theoretical form, once per block): Û(π) = E_x[E_π r̂ − β KL(π‖π_ref)] +
  s_π·γ·E_x E_π‖φ(x, y) − φ̄_x‖_{Σ⁻¹}, s = +1 for a source's π_{r^w} (optimistic), −1 for the self-transfer
  candidate (pessimistic); Σ = λI + Σ_D (φ¹ − φ²)(φ¹ − φ²)ᵀ, φ̄_x = E_{π_ref} φ. The width is on the reward
  term only (the KL term is exact). γ and λ are this library's choices (the paper's widths are UNVERIFIED).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import torch

from optimlab._random import check_generator
from optimlab._validation import Interval, Options, check

__all__ = ["SourceSelector", "ValueUCBSelector", "value_ucb"]

_RULES = Options("winrate_ucb")
_INITS = Options("round_robin", "uniform_until_update")


class SourceSelector:
    """Win-rate UCB over ``n_sources`` sources plus a null arm (index ``n_sources``).

    ``select()`` returns an arm; ``update(arm, win)`` records a label (``win`` ignored on the null arm, which
    is credited ``null_score``). ``init="round_robin"`` plays unplayed arms first (lowest index);
    ``"uniform_until_update"`` draws a uniform arm until the first recomputation of the arg-max, which happens
    every ``update_every`` labels (ties: lowest index). ``window=m`` keeps the last m plays per arm."""

    def __init__(self, n_sources: int, rule: str = "winrate_ucb", bonus_coef: float = 1.0,
                 null_score: float | None = None, chance: float = 0.5, update_every: int = 1,
                 window: int | None = None, reset_each_iteration: bool = True, init: str = "round_robin",
                 generator: Any = None) -> None:
        own = "SourceSelector"
        self.n_sources = check(Interval(0, None, integer=True), n_sources, "n_sources", owner=own)
        self.rule = check(_RULES, rule, "rule", owner=own)
        self.bonus_coef = check(Interval(0, None, closed="left"), bonus_coef, "bonus_coef", owner=own)
        self.chance = check(Interval(0, 1), chance, "chance", owner=own)
        default_null = min(1.0, self.chance + 0.05)
        self.null_score = default_null if null_score is None else check(Interval(0, 1), null_score, "null_score",
                                                                         owner=own)
        self.update_every = check(Interval(1, None, integer=True), update_every, "update_every", owner=own)
        self.window = None if window is None else check(Interval(1, None, integer=True), window, "window", owner=own)
        self.reset_each_iteration = bool(reset_each_iteration)
        self.init = check(_INITS, init, "init", owner=own)
        self.generator = check_generator(generator, kind="numpy")
        self.reset()

    @property
    def null_arm(self) -> int:
        return self.n_sources

    @property
    def n_arms(self) -> int:
        return self.n_sources + 1

    def reset(self) -> None:
        """Clear every statistic (a new iteration with ``reset_each_iteration``)."""
        self.sums = np.zeros(self.n_arms)
        self.counts = np.zeros(self.n_arms, dtype=np.int64)
        self.plays = [deque() for _ in range(self.n_arms)] if self.window is not None else None
        self.current: int | None = None
        self.since_update = 0
        self.updated_once = False

    def new_iteration(self) -> None:
        if self.reset_each_iteration:
            self.reset()

    def means(self) -> np.ndarray:
        return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), 0.0)

    def scores(self) -> np.ndarray:
        """mean_a + c/√(n_a + 1e−6) per arm."""
        return self.means() + self.bonus_coef / np.sqrt(self.counts + 1e-6)

    def _argmax(self) -> int:
        """First maximum of :meth:`scores` (ties: lowest index); plain Python, the arrays hold W + 1 entries."""
        c, best, arg = self.bonus_coef, -math.inf, 0
        for a, (s, n) in enumerate(zip(self.sums.tolist(), self.counts.tolist())):
            v = (s / n if n > 0 else 0.0) + c / math.sqrt(n + 1e-6)
            if v > best:
                best, arg = v, a
        return arg

    def select(self) -> int:
        if self.init == "round_robin":
            for a, n in enumerate(self.counts.tolist()):
                if n == 0:
                    return a
        elif not self.updated_once:
            return int(self.generator.integers(self.n_arms))
        if self.current is None or self.update_every == 1:
            self.current = self._argmax()
        return self.current

    def select_batch(self, n: int) -> list[int]:
        """Arms for ``n`` prompts labelled together: unplayed arms first, one prompt each (round robin counts the
        arms already given in this batch), then the current arg-max for the rest; uniform draws while
        ``init="uniform_until_update"`` has not updated yet. Equal to ``n`` calls of :meth:`select` when n = 1."""
        n = check(Interval(1, None, integer=True), n, "n", owner="SourceSelector")
        if self.init == "uniform_until_update" and not self.updated_once:
            return [int(a) for a in self.generator.integers(self.n_arms, size=n)]
        arms: list[int] = []
        pending = self.counts.copy()
        for _ in range(n):
            unplayed = np.flatnonzero(pending == 0) if self.init == "round_robin" else np.array([], dtype=int)
            if unplayed.size:
                a = int(unplayed[0])
            else:
                if self.current is None or self.update_every == 1:
                    self.current = self._argmax()
                a = self.current
            pending[a] += 1
            arms.append(a)
        return arms

    def update(self, arm: int, win: float = 0.0) -> None:
        if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)) or not 0 <= arm <= self.n_sources:
            raise ValueError(f"SourceSelector: arm must be an integer in [0, {self.n_sources}], got {arm!r}")
        arm = int(arm)
        value = self.null_score if arm == self.n_sources else float(win)
        if not (0.0 <= value <= 1.0):
            raise ValueError(f"SourceSelector: win must be in [0, 1], got {win!r}")
        self.sums[arm] += value
        self.counts[arm] += 1
        if self.plays is not None:
            self.plays[arm].append(value)
            if len(self.plays[arm]) > self.window:
                self.sums[arm] -= self.plays[arm].popleft()
                self.counts[arm] -= 1
        self.since_update += 1
        if self.since_update >= self.update_every:
            self.since_update = 0
            self.updated_once = True
            self.current = self._argmax()

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.tolist(), "counts": self.counts.tolist(),
                "plays": None if self.plays is None else [list(p) for p in self.plays],
                "current": self.current, "since_update": self.since_update, "updated_once": self.updated_once,
                "generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["counts"]) != self.n_arms:
            raise ValueError(f"SourceSelector: state has {len(state['counts'])} arms, this selector {self.n_arms}")
        self.sums = np.asarray(state["sums"], dtype=np.float64)
        self.counts = np.asarray(state["counts"], dtype=np.int64)
        self.plays = None if state["plays"] is None else [deque(p) for p in state["plays"]]
        self.current, self.since_update = state["current"], int(state["since_update"])
        self.updated_once = bool(state["updated_once"])
        self.generator.bit_generator.state = state["generator"]


def value_ucb(candidates: list[torch.Tensor], is_self: list[bool], features: torch.Tensor, theta_hat: torch.Tensor,
              sigma_inv: torch.Tensor, logp_ref: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """Û(π) per candidate log-policy ``[X, Y]``: plug-in value under r̂ = φ·θ̂ plus (source) or minus (self)
    γ·E_x E_π ‖φ − φ̄_x‖_{Σ⁻¹} (width on the reward term only). Returns a float64 tensor ``[n_candidates]``."""
    from optimlab.rlhf.objective import check_beta, kl_value

    beta = check_beta(beta, "value_ucb")
    gamma = check(Interval(0, None, closed="left"), gamma, "gamma", owner="value_ucb")
    if len(candidates) != len(is_self):
        raise ValueError("value_ucb: candidates and is_self must have the same length")
    r_hat = features @ theta_hat
    p_ref = logp_ref.exp()
    centred = features - (p_ref.unsqueeze(-1) * features).sum(dim=1, keepdim=True)
    norms = torch.einsum("xyd,de,xye->xy", centred, sigma_inv, centred).clamp_min(0).sqrt()
    out = []
    for logp, own in zip(candidates, is_self):
        p = logp.exp()
        width = float((p * norms).sum(dim=-1).mean())
        plug = float(kl_value(logp, logp_ref, r_hat, beta))
        out.append(plug + (-1.0 if own else 1.0) * gamma * width)
    return torch.tensor(out, dtype=torch.float64)


class ValueUCBSelector:
    """Value-UCB choice among sources' KL-optimal policies and a self-transfer candidate (one per block)."""

    def __init__(self, source_logps: list[torch.Tensor], features: torch.Tensor, beta: float,
                 gamma: float | str = 3.0, ridge: float = 1.0, bonus_on: str = "reward") -> None:
        self.source_logps, self.features = list(source_logps), features
        self.beta = beta
        if not (gamma == "theory" or (isinstance(gamma, (int, float)) and not isinstance(gamma, bool)
                and gamma >= 0 and math.isfinite(gamma))):
            raise ValueError(f"ValueUCBSelector: gamma must be a float >= 0 or 'theory', got {gamma!r}")
        self.gamma = gamma
        self.ridge = check(Interval(0, None, closed="neither"), ridge, "ridge", owner="ValueUCBSelector")
        self.bonus_on = check(Options("reward"), bonus_on, "bonus_on", owner="ValueUCBSelector")

    def width_coef(self, n_labels: int) -> float:
        if self.gamma == "theory":
            d = self.features.shape[-1]
            return math.sqrt(d * math.log(1 + n_labels / self.ridge))
        return float(self.gamma)

    def select(self, self_logp: torch.Tensor, theta_hat: torch.Tensor, sigma_inv: torch.Tensor,
               logp_ref: torch.Tensor, n_labels: int) -> tuple[int, torch.Tensor]:
        """(index, scores): index W means the self-transfer candidate."""
        cands = [*self.source_logps, self_logp]
        flags = [False] * len(self.source_logps) + [True]
        s = value_ucb(cands, flags, self.features, theta_hat, sigma_inv, logp_ref, self.beta,
                      self.width_coef(n_labels))
        return int(torch.argmax(s)), s
