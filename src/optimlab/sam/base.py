"""Two-pass skeleton shared by every sharpness-aware optimizer (SAM and its preconditioned variants).

One step on a minibatch B (Foret et al., arXiv:2010.01412; the unified template of Zhang, Li & Giannakis,
arXiv:2501.06603)::

    g   = ∇L_B(w)                                    # pass 1, at w
    u_p, c_p = ascent(g)                             # u = g, c = 1 for SAM
    N   = sqrt(Σ_p ‖c_p ⊙ u_p‖²)                     # ONE global norm over every perturbed tensor
    ε_p = ρ_group · c_p² ⊙ u_p / (N + eps)
    g̃   = ∇L_B(w + ε)                                # pass 2, same batch
    w   ← BaseStep(w, g̃)                             # weights restored to w first

The perturbation is a pure function (:func:`optimlab.sam.functional.perturbation`); :class:`SharpnessAware` is the
thin optimizer around it. A variant overrides one list-level method, :meth:`SharpnessAware.ascent`, which returns
its new per-parameter state instead of writing it (optax style). That state is committed only when the step is
taken: by ``second_step`` once both passes are known to be finite (or by ``restore()`` for callers that take the
base step themselves), so a skipped or raising step leaves every state untouched. Each pass costs one host sync
(its finiteness check); the maths runs in multi-tensor kernels (``torch._foreach_*``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optimlab._numerics import global_norm, group_by_device_and_dtype
from optimlab._validation import AnyOf, Constraint, Instance, Interval, Options
from optimlab._wrapper import WrappedOptimizer
from optimlab.sam.batchnorm import BN_MODES, batchnorm_guard, batchnorm_modules, check_batchnorm
from optimlab.sam.functional import directions, grads_finite, nonfinite_flag, scale

__all__ = ["Ascent", "SharpnessAware"]

#: What :meth:`SharpnessAware.ascent` returns for one param group: (us, cs, new_states).
Ascent = tuple[list[Tensor], list[Tensor | None] | None, list[dict[str, Any]] | Callable[[], None] | None]
NO_CLOSURE = "SAM needs a closure that recomputes the loss; or call first_step()/second_step()"


class SharpnessAware(WrappedOptimizer):
    """Base class of the two-pass sharpness-aware optimizers; wraps a constructed base optimizer.

    ``opt.param_groups is opt.base.param_groups`` always holds, so LR schedulers built on the wrapper drive
    the base. Weight decay, momentum and learning rate live in the base. Per-group ``rho`` overrides the default;
    a group with ``rho=0`` is neither perturbed nor counted in the norm. ``state_dict()`` is
    ``{"base": base.state_dict(), "wrapper": {"state", "param_groups", "skipped_steps"}}``; the transient restore
    data (the saved copy of w) is never in it.

    Args:
        params: ``None`` (take the base's parameters) or exactly the base's tensors.
        base: a constructed ``torch.optim.Optimizer`` (not LBFGS, not another wrapper).
        rho: radius ρ ≥ 0 (per-group override allowed).
        eps: ε = ρu/(‖u‖ + eps), eps > 0; norms accumulate in float32 (float64 if any parameter is float64).
        model: needed for BatchNorm handling, ASAM's name-based scope and ``ascent_sync="local"``.
        bn: ``"snapshot"`` restores BatchNorm running statistics and ``num_batches_tracked`` after pass 2, so
            only pass 1 updates them; ``"momentum0"`` sets BN momentum to 0 during pass 2; ``"none"``.
        restore: ``"copy"`` (bit-exact: w is saved and copied back) or ``"subtract"`` (w −= ε, no copy).
        include_wd_in_ascent: add the group's coupled ``weight_decay``·w to g before building ε.
        ascent_sync: ``"local"`` runs pass 1 of :meth:`step` under ``model.no_sync()`` (DDP): per-worker ε.
        replay_rng: in :meth:`step`, pass 2 replays pass 1's RNG state (same dropout mask).
        nonfinite: ``"raise"`` ``FloatingPointError`` (weights restored) or ``"skip"`` the whole step.
        group_defaults: a variant's per-group hyperparameters (``theta=0.9``), each declared in ``_constraints``.

    Subclasses implement :meth:`ascent` and declare their hyperparameters in ``_constraints``
    (``{**SharpnessAware._constraints, "theta": Interval(0, 1, closed="right")}``).
    """

    _constraints: ClassVar[dict[str, Constraint]] = {
        **WrappedOptimizer._constraints,
        "rho": Interval(0, math.inf, closed="left"),
        "eps": Interval(0, math.inf, closed="neither"),
        "model": AnyOf(Options(None), Instance(nn.Module)),
        "bn": Options(*BN_MODES),
        "restore": Options("copy", "subtract"),
        "include_wd_in_ascent": Options(False, True),
        "ascent_sync": Options("global", "local"),
        "replay_rng": Options(False, True),
    }
    stateful = False  # variants that keep per-parameter state across steps (VaSSO, InfoSAM) set True
    # Set by variants whose every u propagates a non-finite gradient into the norm (so g needs no separate check),
    # and by variants whose every u is a temporary of the step that ε may overwrite.
    _norm_sees_grads = False
    _scratch_directions = False

    def __init__(
        self,
        params: Any = None,
        *,
        base: Optimizer,
        rho: float = 0.05,
        eps: float = 1e-12,
        model: nn.Module | None = None,
        bn: str = "snapshot",
        restore: str = "copy",
        include_wd_in_ascent: bool = False,
        ascent_sync: str = "global",
        replay_rng: bool = False,
        nonfinite: str = "raise",
        **group_defaults: Any,
    ) -> None:
        owner = type(self).__name__
        unknown = sorted(k for k in group_defaults if k not in self._constraints)
        if unknown:  # per-group hyperparameters of a variant must be declared in its _constraints
            raise TypeError(f"{owner}.__init__() got an unexpected keyword argument {unknown[0]!r}")
        opts = self._check({"eps": eps, "model": model, "bn": bn, "restore": restore, "ascent_sync": ascent_sync,
                            "include_wd_in_ascent": include_wd_in_ascent, "replay_rng": replay_rng})
        if ascent_sync == "local" and model is None:
            raise ValueError(f"{owner}: ascent_sync='local' needs model= (pass 1 runs under model.no_sync()), "
                             "got model=None")
        bn_modules = batchnorm_modules(model) if bn != "none" else []
        check_batchnorm(bn_modules, bn, owner=owner)
        super().__init__(params, base=base, defaults={"rho": rho, **group_defaults}, nonfinite=nonfinite)
        self.eps = opts["eps"]
        self.model = model
        self.bn = bn
        self.restore_mode = restore
        self.include_wd_in_ascent = include_wd_in_ascent
        self.ascent_sync = ascent_sync
        self.replay_rng = replay_rng
        self._bn_modules = bn_modules
        self._pending: dict[str, Any] | None = None  # transient restore data; never in state_dict

    # ---------------------------------------------------------------- the extension point
    def ascent(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]],
               group: dict[str, Any]) -> Ascent:
        """The ascent of one param group: ``(us, cs, new_states)``; SAM returns ``(grads, None, None)``.

        Args:
            params: the group's parameters that have a first-pass gradient (rho > 0).
            grads: their gradients g (plus ``weight_decay``·w with ``include_wd_in_ascent``); do not modify.
            states: their current per-parameter state dicts (``self.state[p]``); read them, never write them.
            group: the param group (hyperparameters such as ``rho``, ``theta``).

        Returns:
            us: the vectors u that replace g in the ascent (objective preconditioning), one per parameter;
            cs: ``None`` (c = 1), or one constraint scale c = diag(C⁻¹) per parameter (a positive tensor of the
                parameter's shape, or ``None`` for 1);
            new_states: ``None`` (no state), or one dict per parameter, merged into its state only when the step
                is taken (both passes finite): a skipped or raising step leaves the state untouched. A variant
                that keeps its state in its own buffers may instead return a zero-argument callable that writes
                the new state, called at the same moment.
        """
        return grads, None, None

    # ---------------------------------------------------------------- the two passes
    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Perturb the weights to w + ε from the gradients now in ``.grad`` (pass 1); save restore data."""
        if self._pending is not None:
            raise RuntimeError("first_step() called twice without second_step() or restore()")
        params: list[Tensor] = []
        us: list[Tensor] = []
        cs: list[Tensor | None] = []
        rhos: list[float] = []
        grads_seen: list[Tensor] = []
        updates: list[tuple[list[dict[str, Any]], Any]] = []
        constrained = False
        plain = type(self).ascent is SharpnessAware.ascent
        for group in self.param_groups:
            if group["rho"] == 0:
                continue
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            gs = [p.grad for p in ps]
            if self.include_wd_in_ascent and group.get("weight_decay", 0):
                gs = torch._foreach_add(gs, ps, alpha=group["weight_decay"])
            if plain:  # SAM: u = g, c = 1, no state (skips building the state list)
                u, c, new, states = gs, None, None, []
            else:
                states = [self.state[p] for p in ps]
                u, c, new = self.ascent(ps, gs, states, group)
            params += ps
            grads_seen += gs
            us += u
            rhos += [group["rho"]] * len(ps)
            if c is None:
                cs += [None] * len(ps)
            else:
                cs += c
                constrained = True
            if new is not None:
                updates.append((states, new))
        scaled, twice = directions(us, cs if constrained else None)
        groups = group_by_device_and_dtype(twice)
        norm = global_norm(scaled, groups=groups)
        guard = None
        if self._bn_modules and self.bn != "none":
            guard = ExitStack()
            guard.enter_context(batchnorm_guard(self._bn_modules, self.bn))
        finite = torch.isfinite(norm)
        if not plain and not self._norm_sees_grads and grads_seen:
            # a variant's u (or c) might map a non-finite gradient to finite values: check g as well
            finite = finite & (nonfinite_flag(grads_seen) == 0)
        if not bool(finite):  # the one host sync of the first pass
            if guard is not None:
                guard.close()
            self._nonfinite("non-finite gradient in the first pass; weights and state left unchanged")
            self._pending = {"params": [], "skip": True, "bn": None}
        else:
            # ε may overwrite a direction that is a temporary of this step: a product c ⊙ (c ⊙ u), or the
            # gradient itself when the gradients are discarded below (never a state tensor or a kept gradient).
            scratch = self._scratch_directions
            inplace = [scratch or t is not u or (zero_grad and u is g) for t, u, g in zip(twice, us, grads_seen)]
            eps_list = scale(twice, rhos, norm, self.eps, groups=groups, inplace=inplace)
            pending: dict[str, Any] = {"params": params, "skip": False, "bn": guard, "updates": updates}
            if self.restore_mode == "copy":
                pending["saved"] = torch._foreach_clone(params) if params else []
            else:
                pending["eps"] = eps_list
            if params:
                torch._foreach_add_(params, eps_list)
            self._pending = pending
        if zero_grad:
            self._clear_grads()

    def _clear_grads(self) -> None:
        """``zero_grad()`` (gradients set to ``None``) without its per-call profiling overhead."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def restore(self, *, commit: bool = True) -> None:
        """Undo the perturbation (weights and BatchNorm buffers) without a base step.

        For callers that take the base step themselves (:func:`~optimlab.sam.amp_step`, the Trainer mixin):
        ``commit=True`` keeps the variant's new state from ``first_step`` (VaSSO's d, InfoSAM's m, s);
        ``commit=False`` discards it, for an abandoned step (the state is then as before ``first_step``).
        """
        if self._pending is None:
            raise RuntimeError("restore() called without first_step()")
        pending, self._pending = self._pending, None
        if pending["params"]:
            if self.restore_mode == "copy":
                torch._foreach_copy_(pending["params"], pending["saved"])
            else:
                torch._foreach_sub_(pending["params"], pending["eps"])
        if pending["bn"] is not None:
            pending["bn"].close()
        if commit:
            for states, new in pending.get("updates", ()):
                if callable(new):
                    new()
                    continue
                for state, values in zip(states, new):
                    if values:
                        state.update(values)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Restore w and take the base step with the gradient now in ``.grad`` (pass 2, taken at w + ε).

        The variant's new state is committed only with the base step: a non-finite second pass (raised or
        skipped) leaves weights, base state and variant state as before ``first_step``.
        """
        if self._pending is None:
            raise RuntimeError("second_step() called without first_step()")
        skip = self._pending["skip"]
        finite = skip or self._second_pass_finite()
        self.restore(commit=not skip and finite)
        if not skip and not finite:
            self._nonfinite("non-finite gradient in the second pass; weights restored to w")
            skip = True
        if not skip:
            self.base.step()
            # The explicit first/second_step API never calls self.step(); tell LR schedulers wrapping this
            # optimizer that a step happened (torch's LRScheduler checks this flag to warn about call order).
            self._opt_called = True
        if zero_grad or skip:
            self._clear_grads()

    def _second_pass_finite(self) -> bool:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return grads_finite(grads)

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One full step: pass 1 at w, ascent, pass 2 at w + ε on the same batch, restore, base step.

        ``closure`` must zero nothing itself, run forward and backward, and return the loss (a tensor).
        Returns the first-pass loss.
        """
        if closure is None:
            raise ValueError(NO_CLOSURE)
        closure = torch.enable_grad()(closure)
        self._clear_grads()
        local = self.ascent_sync == "local" and hasattr(self.model, "no_sync")
        sync = self.model.no_sync() if local else nullcontext()  # type: ignore[union-attr]
        rng = self._fork_rng() if self.replay_rng else nullcontext()
        with rng, sync:
            loss = closure()
        if not isinstance(loss, Tensor):
            raise ValueError(f"the closure must return the loss as a tensor, got {type(loss).__name__}")
        self.first_step(zero_grad=True)
        if self._pending["skip"]:  # type: ignore[index]
            self.second_step()
            return loss.detach()
        try:
            closure()
        except BaseException:
            self.restore(commit=False)
            raise
        self.second_step()
        return loss.detach()

    def step_chunked(self, closure: Callable[[int], Tensor], n_chunks: int) -> Tensor:
        """m-sharpness step: one ε per chunk of the batch; see :func:`optimlab.sam.chunked.step_chunked`."""
        from optimlab.sam.chunked import step_chunked

        return step_chunked(self, closure, n_chunks)

    def _fork_rng(self):
        devices = [p.device for g in self.param_groups for p in g["params"] if p.device.type == "cuda"]
        return torch.random.fork_rng(devices=sorted({d.index or 0 for d in devices}))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load ``{"base": ..., "wrapper": ...}`` (see :class:`optimlab._wrapper.WrappedOptimizer`); drops any
        perturbation in flight (call :meth:`restore` first to keep its weights)."""
        super().load_state_dict(state_dict)
        self._pending = None
