"""``TransferPreferenceLearner``: online preference optimisation with transfer from imperfect reward models
(the empirical TPO of Huang, Li, Dann, He, arXiv:2502.19255, Alg. 3 as summarised, and the authors' released
code), for any policy with ``log_prob``/``sample`` (finite policies, :class:`~optimlab.rlhf.hf.HFCausalLMPolicy`).

Per prompt: a selector arm (a source, or the null arm = the current policy); K = ``k_online`` responses, of which
``n_transfer`` come from the arm's sampler and the rest from π_t; gold labels from ``oracle``; a win for the arm
when the gold oracle prefers a transfer response (pairwise) or the gold-best of K is one (listwise, ``max_min``);
then one optimizer step on a DPO/IPO/XPO/RPO loss (:mod:`optimlab.rlhf.losses`) over (chosen, rejected).
Transfer samplers: ``"best_of_n"`` (the top ``n_transfer`` of ``n_pool`` samples from π_t scored by the source;
approximates π_{r^w} around π_t, not π_ref) or ``"exact"`` (samples π_{r^w} over a finite response set).
``second_sampler``: ``"transfer"`` (TPO), ``"self"`` (online DPO without transfer), ``"ref"`` (the control that
draws the second response from π_ref), ``"uniform"`` (finite), ``"fixed:<w>"``, ``"mixture:<w1,w2,...>"``.
The oracle must not be a source (a source as labeller removes the gold signal).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from optimlab._random import check_generator
from optimlab._validation import Interval, Options, check
from optimlab.rlhf.losses import LOSSES, preference_loss, select_pairs
from optimlab.rlhf.objective import check_beta, kl_optimal_logprobs
from optimlab.rlhf.policies import best_of_n
from optimlab.rlhf.selectors import SourceSelector

__all__ = ["TransferPreferenceLearner"]

_OWN = "TransferPreferenceLearner"


def _take(responses: Any, idx: list[int] | torch.Tensor) -> Any:
    if isinstance(responses, torch.Tensor):
        return responses[torch.as_tensor(idx, dtype=torch.long)]
    return [responses[int(i)] for i in idx]


def _column(rows: list[Any], like: Any) -> Any:
    return torch.stack(rows) if isinstance(like, torch.Tensor) else list(rows)


class TransferPreferenceLearner:
    """See the module docstring. ``collect(prompts) -> batch``; ``step(batch) -> stats``; ``new_iteration()``."""

    def __init__(self, policy: Any, ref_policy: Any, sources: list[Any], oracle: Any, optimizer: Any,
                 beta: float = 0.1, k_online: int = 2, n_pool: int = 16, n_transfer: int = 1,
                 pair_rule: str = "max_min", loss: str = "dpo", selector: SourceSelector | None = None,
                 transfer_sampler: str = "best_of_n", second_sampler: str = "transfer", ref_update: str = "fixed",
                 loss_kwargs: dict[str, Any] | None = None, generator: Any = None) -> None:
        self.policy, self.ref_policy, self.sources, self.oracle = policy, ref_policy, list(sources), oracle
        self.optimizer = optimizer
        self.beta = check_beta(beta, _OWN)
        self.k_online = check(Interval(2, None, integer=True), k_online, "k_online", owner=_OWN)
        self.n_transfer = check(Interval(1, None, integer=True), n_transfer, "n_transfer", owner=_OWN)
        if self.n_transfer >= self.k_online:
            raise ValueError(f"{_OWN}: n_transfer must be < k_online, got n_transfer={n_transfer}, "
                             f"k_online={k_online}")
        self.n_pool = check(Interval(1, None, integer=True), n_pool, "n_pool", owner=_OWN)
        if self.n_pool < self.n_transfer:
            raise ValueError(f"{_OWN}: n_pool must be >= n_transfer, got n_pool={n_pool}, n_transfer={n_transfer}")
        self.pair_rule = check(Options("max_min"), pair_rule, "pair_rule", owner=_OWN)
        self.loss = check(Options(*LOSSES), loss, "loss", owner=_OWN)
        self.transfer_sampler = check(Options("best_of_n", "exact"), transfer_sampler, "transfer_sampler",
                                      owner=_OWN)
        self.ref_update = check(Options("fixed", "per_iteration"), ref_update, "ref_update", owner=_OWN)
        self.loss_kwargs = dict(loss_kwargs or {})
        if self.k_online > 2 and not callable(getattr(oracle, "scores", None)):
            raise ValueError(f"{_OWN}: pair_rule='max_min' with k_online > 2 needs an oracle with scores(prompts, "
                             f"responses); {type(oracle).__name__} has none")
        for i, s in enumerate(self.sources):
            if s is oracle or getattr(oracle, "reward", None) is s:
                raise ValueError(f"{_OWN}: oracle must be distinct from every source (sources[{i}] is the oracle's "
                                 f"reward): a source as labeller removes the gold signal")
        self.mode, self.fixed_w, self.mix = self._parse_sampler(second_sampler)
        self.second_sampler = second_sampler
        self.selector = selector
        if self.mode == "transfer":
            if self.selector is None:
                chance = 0.5 if self.k_online == 2 else self.n_transfer / self.k_online
                self.selector = SourceSelector(len(self.sources), chance=chance)
            elif self.selector.n_sources != len(self.sources):
                raise ValueError(f"{_OWN}: selector has {self.selector.n_sources} sources, got {len(self.sources)}")
        self.generator = check_generator(generator)
        self.counts = {"oracle_calls": 0, "source_calls": 0, "generations": 0, "dropped_ties": 0}

    def _parse_sampler(self, name: str) -> tuple[str, int | None, list[float] | None]:
        if not isinstance(name, str):
            raise ValueError(f"{_OWN}: second_sampler must be a string, got {name!r}")
        if name.startswith("fixed:"):
            w = name.split(":", 1)[1]
            if not w.isdigit() or int(w) >= len(self.sources):
                raise ValueError(f"{_OWN}: second_sampler 'fixed:<w>' needs 0 <= w < {len(self.sources)}, got {name!r}")
            return "fixed", int(w), None
        if name.startswith("mixture:"):
            try:
                ws = [float(v) for v in name.split(":", 1)[1].split(",")]
            except ValueError:
                ws = []
            if len(ws) != len(self.sources) or any(not math.isfinite(v) for v in ws):
                raise ValueError(f"{_OWN}: second_sampler 'mixture:<w1,...>' needs {len(self.sources)} weights, "
                                 f"got {name!r}")
            return "mixture", None, ws
        check(Options("transfer", "self", "ref", "uniform"), name, "second_sampler", owner=_OWN)
        return name, None, None

    # ------------------------------------------------------------------------------------------- sampling
    def _score(self, w: int | None, prompts: Any, responses: Any) -> torch.Tensor:
        if w is None:  # mixture
            out = sum(c * torch.as_tensor(s(prompts, responses), dtype=torch.float64)
                      for c, s in zip(self.mix, self.sources))
            name = "the mixture of sources"
        else:
            out = torch.as_tensor(self.sources[w](prompts, responses), dtype=torch.float64)
            name = f"sources[{w}]"
        if not torch.isfinite(out).all():
            raise ValueError(f"{_OWN}: {name} returned NaN or inf rewards; the round was not applied")
        return out

    def _transfer(self, w: int | None, prompts: Any) -> Any:
        """n_transfer responses per prompt from source ``w`` (None: the mixture): ``[B]`` or ``[B, n]``."""
        B = len(prompts)
        n_calls = len(self.sources) if w is None else 1
        if self.transfer_sampler == "best_of_n":
            self.counts["source_calls"] += B * self.n_pool * n_calls
            self.counts["generations"] += B * self.n_pool
            return best_of_n(self.policy, lambda p, y: self._score(w, p, y), prompts, n=self.n_pool,
                             k=self.n_transfer, generator=self.generator)
        if not hasattr(self.ref_policy, "log_probs"):
            raise ValueError(f"{_OWN}: transfer_sampler='exact' needs finite policies with log_probs()")
        Y = self.ref_policy.n_responses
        rows = torch.as_tensor(prompts).repeat_interleave(Y)
        ys = torch.arange(Y).repeat(B)
        reward = self._score(w, rows, ys).reshape(B, Y)
        self.counts["source_calls"] += B * Y * n_calls
        with torch.no_grad():
            lp = kl_optimal_logprobs(self.ref_policy.log_probs(prompts).double(), reward, self.beta)
        out = torch.multinomial(lp.exp(), self.n_transfer, replacement=True, generator=self.generator)
        self.counts["generations"] += B * self.n_transfer
        return out[:, 0] if self.n_transfer == 1 else out

    def _second(self, arm: int, prompts: Any) -> Any:
        n = self.n_transfer
        if self.mode in ("self", "ref", "uniform") or (self.mode == "transfer" and arm == self.selector.null_arm):
            if self.mode == "uniform":
                Y = self.policy.n_responses
                out = torch.randint(Y, (len(prompts), n), generator=self.generator)
                return out[:, 0] if n == 1 else out
            pol = self.ref_policy if self.mode == "ref" else self.policy
            self.counts["generations"] += len(prompts) * n
            return pol.sample(prompts, n, generator=self.generator)
        return self._transfer(None if self.mode == "mixture" else (self.fixed_w if self.mode == "fixed" else arm),
                              prompts)

    def collect(self, prompts: Any) -> dict[str, Any]:
        """Choose an arm per prompt, sample K responses, gold-label, credit the selector; returns the batch
        ``{"prompts", "chosen", "rejected", "arms", "wins", "n_dropped"}`` (prompts with tied gold scores dropped)."""
        B = len(prompts)
        arms = self.selector.select_batch(B) if self.mode == "transfer" else [-1] * B
        groups: dict[int, list[int]] = {}
        for i, a in enumerate(arms):
            groups.setdefault(a, []).append(i)
        n_own = self.k_online - self.n_transfer
        online = self.policy.sample(prompts, n_own, generator=self.generator)
        self.counts["generations"] += B * n_own
        second: list[Any] = [None] * B
        for a, idx in groups.items():
            got = self._second(a, _take(prompts, idx))
            for j, i in enumerate(idx):
                second[i] = got[j]
        cands = [[*(online[i] if n_own > 1 else [online[i]]), *(second[i] if self.n_transfer > 1 else [second[i]])]
                 for i in range(B)]
        wins = [math.nan] * B
        if self.k_online == 2:
            y1, y2 = _column([c[0] for c in cands], online), _column([c[1] for c in cands], online)
            label = self.oracle.compare(prompts, y1, y2, generator=self.generator)
            self.counts["oracle_calls"] += B
            keep = list(range(B))
            chosen = [y1[i] if label[i] > 0.5 else y2[i] for i in range(B)]
            rejected = [y2[i] if label[i] > 0.5 else y1[i] for i in range(B)]
            wins = [1.0 - float(label[i]) for i in range(B)]
        else:
            flat_p = [p for p in (prompts.tolist() if isinstance(prompts, torch.Tensor) else prompts)
                      for _ in range(self.k_online)]
            flat_y = [y for c in cands for y in c]
            fp = torch.tensor(flat_p) if isinstance(prompts, torch.Tensor) else flat_p
            fy = torch.stack(flat_y) if isinstance(online, torch.Tensor) else flat_y
            scores = self.oracle.scores(fp, fy).reshape(B, self.k_online)
            self.counts["oracle_calls"] += B * self.k_online
            wi, li, ok = select_pairs(scores, self.pair_rule)
            keep = [i for i in range(B) if bool(ok[i])]
            chosen = [cands[i][int(wi[i])] for i in keep]
            rejected = [cands[i][int(li[i])] for i in keep]
            wins = [float(int(wi[i]) >= n_own) if bool(ok[i]) else math.nan for i in range(B)]
            self.counts["dropped_ties"] += B - len(keep)
        if self.mode == "transfer":
            for a, w in zip(arms, wins):
                if a == self.selector.null_arm:
                    self.selector.update(a)
                elif not math.isnan(w):
                    self.selector.update(a, w)
        return {"prompts": _take(prompts, keep), "chosen": _column(chosen, online) if chosen else chosen,
                "rejected": _column(rejected, online) if rejected else rejected, "arms": arms, "wins": wins,
                "n_dropped": B - len(keep)}

    def step(self, batch: dict[str, Any]) -> dict[str, Any]:
        """One optimizer step on the preference loss over the batch's (chosen, rejected) pairs."""
        stats = {"arms": batch["arms"], "n_pairs": len(batch["chosen"]), "loss": math.nan}
        if not len(batch["chosen"]):
            return stats
        p, yw, yl = batch["prompts"], batch["chosen"], batch["rejected"]
        with torch.no_grad():
            ref_w, ref_l = self.ref_policy.log_prob(p, yw), self.ref_policy.log_prob(p, yl)
        kw = dict(self.loss_kwargs)
        if self.loss == "xpo" and kw.get("alpha", 1e-5) > 0:
            kw["logp_explore"] = self.policy.log_prob(p, self.ref_policy.sample(p, 1, generator=self.generator))
        self.optimizer.zero_grad()
        loss = preference_loss(self.loss, self.policy.log_prob(p, yw), self.policy.log_prob(p, yl), ref_w, ref_l,
                               self.beta, **kw)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{_OWN}: non-finite loss {float(loss)}")
        loss.backward()
        self.optimizer.step()
        stats["loss"] = float(loss.detach())
        return stats

    def new_iteration(self) -> None:
        """Start an iteration: reset the selector's statistics (when it resets per iteration) and, with
        ``ref_update="per_iteration"``, re-anchor π_ref to a frozen copy of the current policy."""
        if self.selector is not None:
            self.selector.new_iteration()
        if self.ref_update == "per_iteration":
            ref = copy.deepcopy(self.policy)
            for q in ref.parameters():
                q.requires_grad_(False)
            self.ref_policy = ref
