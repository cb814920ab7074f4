"""Gradient-based meta-learners behind one ``torch.func`` interface: MAML (Finn et al., arXiv:1703.03400; first and
second order), Meta-SGD (Li et al., arXiv:1707.09835) and mirror-descent meta-learning with a learned mirror map
(Zhang, Li, Giannakis, arXiv:2312.13486 and arXiv:2509.02418).

Bilevel objective: min_Φ E_t L_{Q_t}(θ_t^K(Φ)), θ_t^K = K inner steps on the support loss L_{S_t}. Shared inner loop
(one task; vmapped over tasks with ``torch.func.vmap``):
    s = init_state(θ₀); for k < K: θ = state_to_params(s); g = ∇_θ L_S(θ) (torch.func.grad, w.r.t. the PRIMAL
    weights); g = sg(g) if first_order or k < K − m; s = update(s, g, k)
with m = ``second_order_last`` (None: m = K). MAML: θ ← θ − αg. Meta-SGD: θ ← θ − exp(ℓ) ⊙ g. MirrorMeta: dual
z ← z − αg, θ = H_ω(z) with H_ω(z) = θ₀ + h_ω(z − θ₀) − h_ω(0) and z₀ = θ₀ (``center="init"``, this library's
default: θ₀ does not depend on ω) or θ = h_ω(z) from a learned dual init (``center=None``, the authors' code).
Note: ``torchopt.MetaSGD`` is a differentiable SGD optimiser (MAML's inner loop), not Li et al.'s Meta-SGD.
Checked against the papers: abstracts only; the mirror learner follows the official code's structure as
described in this library's notes (method sections UNVERIFIED).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from optimlab._numerics import all_finite, global_norm
from optimlab._validation import Instance, Interval, Options, check
from optimlab.meta.iaf import BlockIAFMap
from optimlab.meta.icnn import ICNNGradientMap
from optimlab.meta.maps import DiagonalAffineMap, ElementwiseMonotoneMap, MirrorMap, key
from optimlab.meta.tasks import TaskBatch

MAPS = {"affine": DiagonalAffineMap, "monotone": ElementwiseMonotoneMap, "iaf": BlockIAFMap, "icnn": ICNNGradientMap}
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


class EvalResult(NamedTuple):
    """Per requested step count: ``mean``, ``ci95`` (1.96·sd/√N, population sd), ``median`` over tasks;
    ``per_task`` [len(steps), B]; ``nonfinite_fraction`` of tasks whose metric is NaN or inf."""

    steps: tuple[int, ...]
    mean: Tensor
    ci95: Tensor
    median: Tensor
    per_task: Tensor
    nonfinite_fraction: Tensor


class GradientMetaLearner(nn.Module):
    """Base learner; subclasses define ``init_state(init)``, ``state_to_params(state)``, ``update(state, grads,
    k)``. ``model`` is used only through ``torch.func.functional_call``; its parameters are the initialisation
    θ₀ (meta-learned). ``loss_fn(pred, y) -> scalar`` (mean over examples). ``adapt``: names, or a predicate on
    names, of the tensors adapted in the inner loop (others are shared and meta-learned; ANIL = head only).
    ``task_parallel``: ``"vmap"`` or ``"loop"``; ``chunk_size`` caps the tasks vmapped at once."""

    owner = "GradientMetaLearner"

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], *, inner_steps: int = 5,
                 inner_lr: float = 0.01, first_order: bool = False, adapt=None, task_parallel: str = "vmap",
                 chunk_size: int | None = None, second_order_last: int | None = None,
                 randomness: str = "error") -> None:
        super().__init__()
        o = self.owner
        check(Instance(nn.Module), model, "model", owner=o)
        if not callable(loss_fn):
            raise ValueError(f"{o}: loss_fn must be callable (pred, y) -> scalar, got {loss_fn!r}")
        self.inner_steps = check(Interval(0, None, integer=True), inner_steps, "inner_steps", owner=o)
        self.inner_lr = check(Interval(0, None, closed="neither"), inner_lr, "inner_lr", owner=o)
        self.first_order = check(Instance(bool), first_order, "first_order", owner=o)
        self.task_parallel = check(Options("vmap", "loop"), task_parallel, "task_parallel", owner=o)
        self.chunk_size = None if chunk_size is None else check(Interval(1, None, integer=True), chunk_size,
                                                                "chunk_size", owner=o)
        self.second_order_last = None if second_order_last is None else check(
            Interval(0, self.inner_steps, integer=True), second_order_last, "second_order_last", owner=o)
        self.randomness = check(Options("error", "different", "same"), randomness, "randomness", owner=o)
        self.model, self.loss_fn = model, loss_fn
        names = [n for n, _ in model.named_parameters()]
        if adapt is None:
            chosen = names
        elif callable(adapt):
            chosen = [n for n in names if adapt(n)]
        else:
            adapt = [adapt] if isinstance(adapt, str) else list(adapt)
            missing = [n for n in adapt if n not in names]
            if missing:
                raise ValueError(f"{o}: adapt names {missing} are not parameters of the model; available: {names}")
            chosen = [n for n in names if n in set(adapt)]
        if not chosen:
            raise ValueError(f"{o}: adapt selects no parameter; available: {names}")
        self.adapted_names = chosen
        for name, mod in model.named_modules():
            if isinstance(mod, _BN) and mod.track_running_stats and task_parallel == "vmap":
                raise ValueError(f"{o}: BatchNorm {name!r} has track_running_stats=True, which breaks "
                                 "task_parallel='vmap'; use transductive batch norm "
                                 "(torch.func.replace_all_batch_norm_modules_(model)) or GroupNorm")
            if isinstance(mod, _DROPOUT) and mod.p > 0 and randomness == "error":
                raise ValueError(f"{o}: dropout {name!r} needs randomness='different' (or 'same') under vmap, "
                                 "got randomness='error'")
        self.skipped_steps = 0

    # ------------------------------------------------------------------ hooks
    def init_state(self, init: dict[str, Tensor]) -> Any:
        raise NotImplementedError

    def state_to_params(self, state: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    def update(self, state: Any, grads: dict[str, Tensor], k: int) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------------ plumbing
    def _split(self, detach: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        params = {n: (p.detach() if detach else p) for n, p in self.model.named_parameters()}
        shared = {n: p for n, p in params.items() if n not in self.adapted_names}
        shared.update(dict(self.model.named_buffers()))
        return shared, {n: params[n] for n in self.adapted_names}

    def predict(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """Model output at ``params`` (adapted tensors; missing ones, buffers included, are the learner's)."""
        shared, _ = self._split()
        return functional_call(self.model, {**shared, **params}, (x,))

    def _inner(self, shared, init, x_s, y_s, steps: int, record: Sequence[int] = ()):
        m = steps if self.second_order_last is None else min(self.second_order_last, steps)

        def support_loss(theta):
            return self.loss_fn(functional_call(self.model, {**shared, **theta}, (x_s,)), y_s)

        state, seen = self.init_state(init), []
        for k in range(steps + 1):
            theta = self.state_to_params(state)
            if k in record:
                seen.append(theta)
            if k == steps:
                return theta, seen
            g = grad(support_loss)(theta)
            if self.first_order or k < steps - m:
                g = {n: t.detach() for n, t in g.items()}
            state = self.update(state, g, k)
        raise AssertionError  # pragma: no cover

    def adapt(self, x_s: Tensor, y_s: Tensor, steps: int | None = None) -> dict[str, Tensor]:
        """θ^K for one task (no task dimension): the full primal parameter dict."""
        steps = self.inner_steps if steps is None else check(Interval(0, None, integer=True), steps, "steps",
                                                             owner=self.owner)
        shared, init = self._split()
        theta, _ = self._inner(shared, init, x_s, y_s, steps)
        return {**{n: p for n, p in self.model.named_parameters()}, **theta}

    def _map_tasks(self, fn, batch: TaskBatch):
        args = (batch.x_support, batch.y_support, batch.x_query, batch.y_query,
                {} if batch.info is None else batch.info)
        if self.task_parallel == "loop":
            outs = [fn(*(a[i] for a in args[:4]), {k: v[i] for k, v in args[4].items()})
                    for i in range(batch.n_tasks)]
            return torch.stack(outs)
        return vmap(fn, randomness=self.randomness, chunk_size=self.chunk_size)(*args)

    def meta_loss(self, batch: TaskBatch, steps: int | None = None) -> Tensor:
        """Mean query loss over the tasks of ``batch`` after ``steps`` (default K) inner steps."""
        batch = check(Instance(TaskBatch), batch, "batch", owner=self.owner).validate(self.owner)
        steps = self.inner_steps if steps is None else steps
        shared, init = self._split()

        def task_loss(x_s, y_s, x_q, y_q, info):
            theta, _ = self._inner(shared, init, x_s, y_s, steps)
            return self.loss_fn(functional_call(self.model, {**shared, **theta}, (x_q,)), y_q)

        return self._map_tasks(task_loss, batch).mean()

    def meta_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer, *, clip_grad_norm: float | None = None,
                  nonfinite: str = "raise") -> dict[str, float | bool]:
        """zero_grad, meta_loss.backward, optional global-norm clip, optimizer.step. A non-finite loss or gradient
        raises ``FloatingPointError`` before the step (``nonfinite="raise"``) or skips it (``"skip"``, counted in
        ``skipped_steps``); either way parameters and optimiser state are untouched and grads are cleared."""
        check(Options("raise", "skip"), nonfinite, "nonfinite", owner=self.owner)
        if clip_grad_norm is not None:
            check(Interval(0, None, closed="neither"), clip_grad_norm, "clip_grad_norm", owner=self.owner)
        optimizer.zero_grad(set_to_none=True)
        loss = self.meta_loss(batch)
        loss.backward()
        params = [p for p in self.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        if not (math.isfinite(float(loss.detach())) and all_finite(grads)):
            optimizer.zero_grad(set_to_none=True)
            if nonfinite == "raise":
                raise FloatingPointError(f"{self.owner}: non-finite meta-loss or meta-gradient "
                                         f"(loss={float(loss.detach())})")
            self.skipped_steps += 1
            return {"loss": float(loss.detach()), "grad_norm": math.nan, "skipped": True}
        norm = float(global_norm(grads)) if grads else 0.0
        if clip_grad_norm is not None and norm > clip_grad_norm:
            for g in grads:
                g.mul_(clip_grad_norm / norm)
        optimizer.step()
        return {"loss": float(loss.detach()), "grad_norm": norm, "skipped": False}

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, steps: Sequence[int] | None = None, metric=None) -> EvalResult:
        """Graph-free per-task metric after each step count in ``steps`` (default (0, 1, K)); ``metric(pred_query,
        y_query, info) -> scalar`` (default ``loss_fn``). Diverging tasks never raise: they count in
        ``nonfinite_fraction`` and sort as +inf in the median."""
        batch = check(Instance(TaskBatch), batch, "batch", owner=self.owner).validate(self.owner)
        steps = tuple(sorted(set((0, 1, self.inner_steps) if steps is None else steps)))
        for s in steps:
            check(Interval(0, None, integer=True), s, "steps", owner=self.owner)
        shared, init = self._split(detach=True)
        metric = metric or (lambda pred, y, info: self.loss_fn(pred, y))

        def curve(x_s, y_s, x_q, y_q, info):
            _, seen = self._inner(shared, init, x_s, y_s, max(steps), record=steps)
            vals = [metric(functional_call(self.model, {**shared, **t}, (x_q,)), y_q, info) for t in seen]
            return torch.stack([v.detach() for v in vals])

        per_task = self._map_tasks(curve, batch).detach().T  # [len(steps), B]
        finite = torch.isfinite(per_task)
        n = per_task.shape[1]
        sortable = torch.where(torch.isnan(per_task), torch.full_like(per_task, math.inf), per_task)
        mean = per_task.mean(1)
        sd = per_task.std(1, correction=0) if n > 1 else torch.zeros_like(mean)
        return EvalResult(steps, mean, 1.96 * sd / math.sqrt(n), sortable.median(1).values, per_task,
                          1 - finite.to(per_task.dtype).mean(1))

    def init_params(self) -> dict[str, Tensor]:
        """The primal initialisation θ₀ (adapted tensors)."""
        _, init = self._split()
        return self.state_to_params(self.init_state(init))

    def overhead(self) -> float:
        """Meta-parameter count ÷ base-model parameter count (the initialisation counts too)."""
        return sum(p.numel() for p in self.parameters()) / sum(p.numel() for p in self.model.parameters())


class MAML(GradientMetaLearner):
    """θ_{k+1} = θ_k − α g_k (arXiv:1703.03400). ``learn_inner_lr=True`` meta-learns log α (a scalar)."""

    owner = "MAML"

    def __init__(self, model, loss_fn, *, learn_inner_lr: bool = False, **kw) -> None:
        super().__init__(model, loss_fn, **kw)
        check(Instance(bool), learn_inner_lr, "learn_inner_lr", owner=self.owner)
        dtype = next(model.parameters()).dtype
        self.log_inner_lr = nn.Parameter(torch.tensor(math.log(self.inner_lr), dtype=dtype),
                                         requires_grad=learn_inner_lr)

    def init_state(self, init):
        return dict(init)

    def state_to_params(self, state):
        return state

    def update(self, state, grads, k):
        if self.log_inner_lr.requires_grad:
            lr = self.log_inner_lr.exp()
            return {n: state[n] - lr * grads[n] for n in state}
        return {n: torch.add(state[n], grads[n], alpha=-self.inner_lr) for n in state}


class MetaSGD(GradientMetaLearner):
    """θ_{k+1} = θ_k − exp(ℓ) ⊙ g_k, per-element log-rates ℓ initialised at log ``inner_lr`` (arXiv:1707.09835)."""

    owner = "MetaSGD"

    def __init__(self, model, loss_fn, **kw) -> None:
        super().__init__(model, loss_fn, **kw)
        params = dict(model.named_parameters())
        self.log_lr = nn.ParameterDict({key(n): nn.Parameter(torch.full_like(params[n].detach(),
                                                                             math.log(self.inner_lr)))
                                        for n in self.adapted_names})

    def init_state(self, init):
        return {"theta": dict(init), "rate": {n: self.log_lr[key(n)].exp() for n in init}}  # exp once per loop

    def state_to_params(self, state):
        return state["theta"]

    def update(self, state, grads, k):
        return {**state, "theta": {n: torch.addcmul(t, state["rate"][n], grads[n], value=-1)
                                   for n, t in state["theta"].items()}}


class MirrorMeta(GradientMetaLearner):
    """Mirror-descent meta-learner: dual z ← z − αg (α = ``inner_lr`` fixed: the map carries the scale),
    θ = H_ω(z) (module docstring). ``mirror_map``: ``"monotone"`` (default), ``"affine"``, ``"iaf"``, ``"icnn"`` or a
    :class:`~optimlab.meta.maps.MirrorMap` built for the adapted tensors; ``map_kwargs`` go to the map."""

    owner = "MirrorMeta"

    def __init__(self, model, loss_fn, mirror_map: str | MirrorMap = "monotone", *, center: str | None = "init",
                 map_kwargs: dict | None = None, learn_inner_lr: bool = False, generator=None, **kw) -> None:
        super().__init__(model, loss_fn, **kw)
        if learn_inner_lr is not False:
            raise ValueError(f"{self.owner}: learn_inner_lr must be False: the inner rate and the map's scale are "
                             "not identifiable (the map learns the step)")
        if center not in ("init", None):
            raise ValueError(f"{self.owner}: center must be 'init' or None, got {center!r}")
        self.center = center
        params = dict(model.named_parameters())
        shapes = {n: params[n].shape for n in self.adapted_names}
        if isinstance(mirror_map, MirrorMap):
            if list(mirror_map.shapes) != self.adapted_names:
                raise ValueError(f"{self.owner}: mirror_map is built for {list(mirror_map.shapes)}, but the adapted "
                                 f"tensors are {self.adapted_names}")
            self.mirror_map = mirror_map
        elif mirror_map in MAPS:
            p = params[self.adapted_names[0]]
            self.mirror_map = MAPS[mirror_map].for_params(shapes, dtype=p.dtype, device=p.device, generator=generator,
                                                          **(map_kwargs or {}))
        else:
            raise ValueError(f"{self.owner}: mirror_map must be one of {sorted(MAPS)} or a MirrorMap, "
                             f"got {mirror_map!r}")

    def init_state(self, init):
        prepared = self.mirror_map.prepare()
        if self.center is None:  # the model's adapted tensors hold the learned dual init z₀
            return {"z": dict(init), "map": prepared}
        u0 = {n: torch.zeros_like(t) for n, t in init.items()}
        h0 = self.mirror_map.apply(prepared, u0)
        return {"z": u0, "base": {n: init[n] - h0[n] for n in init}, "map": prepared}  # θ₀ − h(0), once per loop

    def state_to_params(self, state):
        h = self.mirror_map.apply(state["map"], state["z"])
        if self.center is None:
            return h
        return {n: state["base"][n] + h[n] for n in h}

    def update(self, state, grads, k):
        return {**state, "z": {n: z - self.inner_lr * grads[n] for n, z in state["z"].items()}}


__all__ = ["MAML", "MAPS", "EvalResult", "GradientMetaLearner", "MetaSGD", "MirrorMeta"]
