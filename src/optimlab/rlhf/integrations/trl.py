"""Helpers for plugging TPO's source selection into TRL's online DPO (``trl`` is never imported here).

* :func:`as_reward_func` turns a gold scorer into TRL's reward-function form ``(prompts, completions, **kw) ->
  list[float]`` (only the gold scorer belongs in ``reward_funcs``: a source there would become the labeller).
* :class:`TransferCompletions` swaps one of the two completions per prompt for a best-of-n candidate scored by
  the selected source, and credits the selector once the gold preference is known. A trainer subclass calls it
  from its generation override. The name and signature of the generation hook of trl 1.16's experimental online
  DPO trainer were not checked here (UNVERIFIED); this class depends only on plain callables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optimlab.rlhf.policies import best_of_n
from optimlab.rlhf.selectors import SourceSelector

__all__ = ["TransferCompletions", "as_reward_func"]


def as_reward_func(scorer: Callable[[Any, Any], Any]) -> Callable[..., list[float]]:
    """``scorer(prompts, completions) -> Tensor|list`` as TRL's ``(prompts, completions, **kw) -> list[float]``."""

    def reward_func(prompts: Any, completions: Any, **kwargs: Any) -> list[float]:
        out = scorer(prompts, completions)
        return [float(v) for v in (out.tolist() if hasattr(out, "tolist") else out)]

    reward_func.__name__ = getattr(scorer, "__name__", "gold_reward")
    return reward_func


class TransferCompletions:
    """``swap(policy, prompts, completions, generator=None) -> (completions, arms)``: for each prompt, the arm
    chosen by ``selector``; on a source arm the second completion is replaced by the best of ``n_pool`` policy
    samples under that source. ``credit(arms, second_won)`` updates the selector with the gold outcome."""

    def __init__(self, selector: SourceSelector, sources: list[Any], n_pool: int = 16) -> None:
        if selector.n_sources != len(sources):
            raise ValueError(f"TransferCompletions: selector has {selector.n_sources} sources, got {len(sources)}")
        self.selector, self.sources, self.n_pool = selector, list(sources), int(n_pool)

    def swap(self, policy: Any, prompts: list[Any], completions: list[list[Any]],
             generator: Any = None) -> tuple[list[list[Any]], list[int]]:
        arms, out = [], []
        for p, pair in zip(prompts, completions):
            a = self.selector.select()
            arms.append(a)
            if a != self.selector.null_arm:
                pair = [pair[0], best_of_n(policy, self.sources[a], [p], n=self.n_pool, generator=generator)[0]]
            out.append(list(pair))
        return out, arms

    def credit(self, arms: list[int], second_won: list[float]) -> None:
        for a, w in zip(arms, second_won):
            self.selector.update(a, float(w))
