"""The meta-training loop shared by every learner of :mod:`optimlab.meta.learners`."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from optimlab._validation import Interval, Options, check
from optimlab.result import DIVERGED, MAX_ITER, IterativeResult


def meta_train(learner, sampler, optimizer: torch.optim.Optimizer, *, steps: int, batch_size: int, scheduler=None,
               clip_grad_norm: float | None = None, nonfinite: str = "raise", log_every: int = 10,
               split: str = "train", callback: Callable[[int, dict], None] | None = None) -> IterativeResult:
    """``steps`` meta-steps on batches ``sampler.sample(batch_size, split)``: ``learner.meta_step`` then
    ``scheduler.step()``. Returns an :class:`~optimlab.result.IterativeResult`: status ``"max_iter"`` (a fixed
    budget, never ``converged``) or ``"diverged"`` when ``nonfinite="raise"`` stopped it; ``history`` holds
    ``meta_loss``, ``grad_norm``, ``skipped`` every ``log_every`` steps (and at the last); ``certificate``
    ``{"skipped_steps": n}``. ``callback(step, info)`` runs after every meta-step."""
    check(Interval(0, None, integer=True), steps, "steps", owner="meta_train")
    check(Interval(1, None, integer=True), batch_size, "batch_size", owner="meta_train")
    check(Interval(1, None, integer=True), log_every, "log_every", owner="meta_train")
    check(Options("raise", "skip"), nonfinite, "nonfinite", owner="meta_train")
    history: dict[str, list[float]] = {"step": [], "meta_loss": [], "grad_norm": [], "skipped": []}
    start, skipped, status, done = time.perf_counter(), 0, MAX_ITER, 0
    for it in range(steps):
        batch = sampler.sample(batch_size, split)
        try:
            info = learner.meta_step(batch, optimizer, clip_grad_norm=clip_grad_norm, nonfinite=nonfinite)
        except FloatingPointError:
            status = DIVERGED
            break
        skipped += bool(info["skipped"])
        if scheduler is not None:
            scheduler.step()
        done = it + 1
        if it % log_every == 0 or it == steps - 1:
            history["step"].append(float(it))
            history["meta_loss"].append(info["loss"])
            history["grad_norm"].append(info["grad_norm"])
            history["skipped"].append(float(skipped))
        if callback is not None:
            callback(it, info)
    return IterativeResult(status=status, iterations=done, seconds=time.perf_counter() - start, history=history,
                           certificate={"skipped_steps": float(skipped)})


__all__ = ["meta_train"]
