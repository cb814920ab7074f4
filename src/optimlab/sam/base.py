"""Two-pass skeleton shared by every sharpness-aware optimizer (SAM and its preconditioned variants).

One step on a minibatch B (Foret et al., arXiv:2010.01412; the unified template of Zhang, Li & Giannakis,
arXiv:2501.06603)::

    g   = ∇L_B(w)                                    # pass 1, at w
    u_p = objective(g_p)      c_p = constraint(p)    # identity for SAM
    N   = sqrt(Σ_p ‖c_p ⊙ u_p‖²)                     # ONE global norm over every perturbed tensor
    ε_p = ρ_group · c_p² ⊙ u_p / (N + eps)
    g̃   = ∇L_B(w + ε)                                # pass 2, same batch
    w   ← BaseStep(w, g̃)                             # weights restored to w first

The perturbation is a pure function (:func:`perturbation`); :class:`SharpnessAware` is the thin optimizer around it.
Subclasses override :meth:`SharpnessAware._ascent` (the vector u) and :meth:`SharpnessAware._constraint` (c).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

_BN_TYPES = (torch.nn.modules.batchnorm._BatchNorm,)
_CHOICES = {
    "bn": ("snapshot", "momentum0", "none"),
    "restore": ("copy", "subtract"),
    "ascent_sync": ("global", "local"),
    "nonfinite": ("raise", "skip"),
}
_NO_CLOSURE = "SAM needs a closure that recomputes the loss; or call first_step()/second_step()"


# --------------------------------------------------------------------------------------------- pure functions
def global_norm(tensors: Sequence[Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """‖(t_1, …, t_n)‖₂ accumulated in ``dtype`` (float32, or float64 when any input is float64).

    Returns a 0-dim tensor on the first tensor's device (0 for an empty list).
    """
    if not tensors:
        return torch.zeros((), dtype=dtype or torch.float32)
    if dtype is None:
        dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    device = tensors[0].device
    norms = [t.detach().to(dtype).norm(2).to(device) for t in tensors]
    return torch.stack(norms).norm(2)


def perturbation(
    u: Sequence[Tensor],
    rho: float | Sequence[float],
    *,
    c: Sequence[Tensor | None] | None = None,
    eps: float = 1e-12,
) -> list[Tensor]:
    """ε_p = ρ_p · c_p² ⊙ u_p / (sqrt(Σ_q ‖c_q ⊙ u_q‖²) + eps).

    With ``c=None`` and u = g this is SAM's first-order solution of max_{‖ε‖≤ρ} L(w + ε), ε = ρ g/‖g‖
    (Foret et al., arXiv:2010.01412, eq. 2). With a diagonal constraint preconditioner c = diag(C⁻¹) it solves
    max ⟨u, ε⟩ s.t. ‖C ε‖ ≤ ρ (arXiv:2501.06603). ``rho`` is one radius or one per tensor; the norm is always
    global. If the norm is 0 the perturbation is exactly 0 (no NaN).
    """
    u = list(u)
    rhos = [float(rho)] * len(u) if isinstance(rho, (int, float)) else [float(r) for r in rho]
    if len(rhos) != len(u):
        raise ValueError(f"rho must be a float or one value per tensor ({len(u)}), got {len(rhos)}")
    return _perturbation(u, rhos, list(c) if c is not None else [None] * len(u), eps)[0]


def _perturbation(
    u: list[Tensor], rhos: list[float], cs: list[Tensor | None], eps: float
) -> tuple[list[Tensor], Tensor]:
    """(ε list, global norm N); see :func:`perturbation`."""
    scaled = [x if c is None else c * x for x, c in zip(u, cs)]  # c ⊙ u
    norm = global_norm(scaled)
    out = []
    for x, c, r in zip(scaled, cs, rhos):
        e = x if c is None else c * x  # c² ⊙ u
        scale = (r / (norm + eps)).to(e.device)
        # Scale in the norm's precision (fp32 at least): ρ/‖u‖ can exceed fp16's range when ‖u‖ is tiny.
        out.append(e.mul(scale) if e.dtype == scale.dtype else e.to(scale.dtype).mul(scale).to(e.dtype))
    return out, norm


# --------------------------------------------------------------------------------------------- validation
def _check_rho(value: Any, name: str = "rho") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number >= 0, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_choice(value: Any, name: str) -> str:
    if value not in _CHOICES[name]:
        raise ValueError(f"{name} must be one of {_CHOICES[name]}, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------- optimizer
class SharpnessAware(Optimizer):
    """Base class of the two-pass sharpness-aware optimizers; wraps a constructed base optimizer.

    ``opt.param_groups is opt.base.param_groups`` always holds, so LR schedulers built on the wrapper drive
    the base. Weight decay, momentum and learning rate live in the base. Per-group ``rho`` overrides the default;
    a group with ``rho=0`` is neither perturbed nor counted in the norm.

    Args:
        params: ``None`` (take the base's parameters) or exactly the base's tensors.
        base: a constructed ``torch.optim.Optimizer`` (not LBFGS, not another sharpness-aware optimizer).
        rho: radius ρ ≥ 0.
        eps: ε = ρu/(‖u‖ + eps); norms accumulate in float32 (float64 if any parameter is float64).
        model: needed for BatchNorm handling and ``ascent_sync="local"``.
        bn: ``"snapshot"`` restores BatchNorm running statistics and ``num_batches_tracked`` after pass 2, so
            only pass 1 updates them; ``"momentum0"`` sets BN momentum to 0 during pass 2; ``"none"``.
        restore: ``"copy"`` (bit-exact: w is saved and copied back) or ``"subtract"`` (w −= ε).
        include_wd_in_ascent: add the group's coupled ``weight_decay``·w to g before building ε.
        ascent_sync: ``"local"`` runs pass 1 of :meth:`step` under ``model.no_sync()`` (DDP): per-worker ε.
        replay_rng: in :meth:`step`, pass 2 replays pass 1's RNG state (same dropout mask).
        nonfinite: ``"raise"`` ``FloatingPointError`` (weights restored) or ``"skip"`` the whole step.
    """

    stateful = False  # subclasses that keep per-parameter state across steps (VaSSO, InfoSAM) set True

    def __init__(
        self,
        params: Any = None,
        *,
        base: Optimizer,
        rho: float = 0.05,
        eps: float = 1e-12,
        model: torch.nn.Module | None = None,
        bn: str = "snapshot",
        restore: str = "copy",
        include_wd_in_ascent: bool = False,
        ascent_sync: str = "global",
        replay_rng: bool = False,
        nonfinite: str = "raise",
        **extra_defaults: Any,
    ) -> None:
        if not isinstance(base, Optimizer):
            raise ValueError(f"base must be a constructed torch.optim.Optimizer, got {type(base).__name__}")
        if isinstance(base, SharpnessAware):
            raise ValueError("base must not be another sharpness-aware optimizer (nesting is not supported)")
        if isinstance(base, torch.optim.LBFGS):
            raise ValueError("base must not be LBFGS: it needs its own closure, which the two-pass step cannot give")
        base_params = [p for g in base.param_groups for p in g["params"]]
        if params is not None:
            given = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
            if len(given) != len(base_params) or {id(p) for p in given} != {id(p) for p in base_params}:
                raise ValueError("params must be exactly the base optimizer's parameters (or None to take them)")
        if model is not None and not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
        _check_choice(bn, "bn")
        _check_choice(restore, "restore")
        _check_choice(ascent_sync, "ascent_sync")
        _check_choice(nonfinite, "nonfinite")
        if ascent_sync == "local" and model is None:
            raise ValueError("ascent_sync='local' needs model= (pass 1 runs under model.no_sync())")
        if not isinstance(include_wd_in_ascent, bool):
            raise ValueError(f"include_wd_in_ascent must be a bool, got {include_wd_in_ascent!r}")
        if bn == "momentum0" and model is not None:
            for m in model.modules():
                if isinstance(m, _BN_TYPES) and m.track_running_stats and m.momentum is None:
                    raise ValueError("bn='momentum0' cannot protect cumulative BatchNorm (momentum=None); "
                                     "use bn='snapshot'")

        defaults = dict(rho=_check_rho(rho), **extra_defaults)
        self._initializing = True
        super().__init__(base_params, defaults)  # temporary groups, replaced by the base's below
        self._initializing = False
        self.base = base
        self.param_groups = base.param_groups
        for group in self.param_groups:
            self._fill_group(group)
        self.defaults.update({k: v for k, v in base.defaults.items() if k not in self.defaults})
        self.eps = _check_positive(eps, "eps")
        self.model = model
        self.bn = bn
        self.restore_mode = restore
        self.include_wd_in_ascent = include_wd_in_ascent
        self.ascent_sync = ascent_sync
        self.replay_rng = bool(replay_rng)
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        self._pending: dict[str, Any] | None = None  # transient restore data; never in state_dict
        self._staged: dict[Tensor, dict[str, Any]] = {}

    # ---------------------------------------------------------------- groups
    def _validate_group(self, group: dict[str, Any]) -> None:
        group["rho"] = _check_rho(group["rho"])

    def _fill_group(self, group: dict[str, Any]) -> None:
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._validate_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the base (with its defaults) and fill in this optimizer's defaults (``rho``, ...)."""
        if getattr(self, "_initializing", False):
            return super().add_param_group(param_group)
        own = {k: param_group.pop(k) for k in list(param_group) if k in self.defaults and k not in self.base.defaults}
        self.base.add_param_group(param_group)
        self.base.param_groups[-1].update(own)
        self._fill_group(self.base.param_groups[-1])

    # ---------------------------------------------------------------- hooks for variants
    def _ascent(self, p: Tensor, g: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        """The vector u that replaces g in the ascent (objective preconditioning); SAM: u = g.

        Stateful variants must not write ``state`` here: they call :meth:`_stage` with the new values, which are
        committed only once the step is known to be finite (a skipped or raising step leaves state untouched).
        """
        return g

    def _stage(self, p: Tensor, **values: Any) -> None:
        """Record new persistent state for ``p``; committed after the first pass's finiteness check."""
        self._staged.setdefault(p, {}).update(values)

    def _constraint(self, p: Tensor, g: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor | None:
        """c = diag(C⁻¹) of the constraint ‖Cε‖ ≤ ρ, or ``None`` for the identity (SAM)."""
        return None

    # ---------------------------------------------------------------- the two passes
    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Perturb the weights to w + ε from the gradients now in ``.grad`` (pass 1); save restore data."""
        if self._pending is not None:
            raise RuntimeError("first_step() called twice without second_step() or restore()")
        params, us, cs, rhos = [], [], [], []
        self._staged: dict[Tensor, dict[str, Any]] = {}
        for group in self.param_groups:
            if group["rho"] == 0:
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if self.include_wd_in_ascent and group.get("weight_decay", 0):
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                params.append(p)
                us.append(self._ascent(p, g, group, state))
                cs.append(self._constraint(p, g, group, state))
                rhos.append(group["rho"])
        pending: dict[str, Any] = {"params": params, "bn": self._save_bn(), "skip": False}
        eps_list, norm = _perturbation(us, rhos, cs, self.eps)
        if not bool(torch.isfinite(norm)):  # the one host sync of a step
            self._restore_bn(pending["bn"])
            if self.nonfinite == "raise":
                raise FloatingPointError("non-finite gradient in the first pass; weights left unchanged")
            self.skipped_steps += 1
            pending.update(params=[], skip=True, bn=None)
        else:
            for p, values in self._staged.items():
                self.state[p].update(values)
            if self.restore_mode == "copy":
                pending["saved"] = [p.detach().clone() for p in params]
            else:
                pending["eps"] = eps_list
            if params:
                torch._foreach_add_(params, eps_list)
            self._bn_momentum0(pending)
        self._staged = {}
        self._pending = pending
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Undo the perturbation (weights and BatchNorm buffers) without a base step."""
        if self._pending is None:
            raise RuntimeError("restore() called without first_step()")
        pending, self._pending = self._pending, None
        if self.restore_mode == "copy":
            for p, saved in zip(pending["params"], pending.get("saved", [])):
                p.copy_(saved)
        else:
            for p, e in zip(pending["params"], pending.get("eps", [])):
                p.sub_(e)
        self._restore_bn(pending["bn"])
        return None

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Restore w and take the base step with the gradient now in ``.grad`` (pass 2, taken at w + ε)."""
        if self._pending is None:
            raise RuntimeError("second_step() called without first_step()")
        skip = self._pending["skip"]
        self.restore()
        if not skip:
            grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
            if grads and not bool(torch.isfinite(global_norm(grads))):
                if self.nonfinite == "raise":
                    raise FloatingPointError("non-finite gradient in the second pass; weights restored to w")
                self.skipped_steps += 1
                skip = True
        if not skip:
            self.base.step()
            # The explicit first/second_step API never calls self.step(); tell LR schedulers wrapping this
            # optimizer that a step happened (torch's LRScheduler checks this flag to warn about call order).
            self._opt_called = True
        if zero_grad or skip:
            self.zero_grad()

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One full step: pass 1 at w, ascent, pass 2 at w + ε on the same batch, restore, base step.

        ``closure`` must zero nothing itself, run forward and backward, and return the loss (a tensor).
        Returns the first-pass loss.
        """
        if closure is None:
            raise ValueError(_NO_CLOSURE)
        closure = torch.enable_grad()(closure)
        self.zero_grad()
        sync = self.model.no_sync() if self.ascent_sync == "local" and hasattr(self.model, "no_sync") else nullcontext()
        rng = self._fork_rng() if self.replay_rng else nullcontext()
        with rng, sync:
            loss = closure()
        if not isinstance(loss, Tensor):
            raise ValueError(f"the closure must return the loss as a tensor, got {type(loss).__name__}")
        self.first_step(zero_grad=True)
        if self._pending is not None and self._pending["skip"]:
            self.second_step()
            return loss.detach()
        try:
            closure()
        except BaseException:
            self.restore()
            raise
        self.second_step()
        return loss.detach()

    def step_chunked(self, closure: Callable[[int], Tensor], n_chunks: int) -> Tensor:
        """m-sharpness step (Foret et al. §4): one ε per chunk of the batch, descent gradients averaged.

        ``closure(k)`` runs forward and backward on chunk k (mean loss over the chunk) and returns the loss. For
        each chunk: pass 1, ε_k from the chunk's gradient, pass 2 at w + ε_k, gradient added to an fp32 buffer,
        weights restored. Then ``p.grad = G / n_chunks`` and one base step. ``n_chunks=1`` equals :meth:`step`.
        Returns the mean first-pass loss. Stateful variants raise ``NotImplementedError``: an EMA over chunks
        has no defined meaning.
        """
        if self.stateful:
            raise NotImplementedError(f"step_chunked is undefined for {type(self).__name__}: its per-step "
                                      "state (an EMA of gradients) has no per-chunk meaning")
        if closure is None:
            raise ValueError(_NO_CLOSURE)
        if isinstance(n_chunks, bool) or not isinstance(n_chunks, int) or n_chunks < 1:
            raise ValueError(f"n_chunks must be an integer >= 1, got {n_chunks!r}")
        closure = torch.enable_grad()(closure)
        params = [p for g in self.param_groups for p in g["params"]]
        acc: dict[Tensor, Tensor] = {}
        losses = []
        for k in range(n_chunks):
            self.zero_grad()
            loss = closure(k)
            if not isinstance(loss, Tensor):
                raise ValueError(f"the closure must return the loss as a tensor, got {type(loss).__name__}")
            losses.append(loss.detach())
            self.first_step(zero_grad=True)
            if self._pending["skip"]:
                self.restore()
                self.zero_grad()
                return torch.stack(losses).mean()
            try:
                closure(k)
            finally:
                self.restore()
            with torch.no_grad():
                for p in params:
                    if p.grad is not None:
                        g32 = p.grad.to(torch.promote_types(p.grad.dtype, torch.float32))
                        if p in acc:
                            acc[p].add_(g32)
                        else:
                            acc[p] = g32.clone()
        self.zero_grad()
        with torch.no_grad():
            for p, g in acc.items():
                p.grad = (g / n_chunks).to(p.dtype)
            grads = list(acc.values())
            if grads and not bool(torch.isfinite(global_norm(grads))):
                self.zero_grad()
                if self.nonfinite == "raise":
                    raise FloatingPointError("non-finite gradient in a second pass; weights restored to w")
                self.skipped_steps += 1
                return torch.stack(losses).mean()
            self.base.step()
            self._opt_called = True  # LR schedulers wrapping this optimizer: a step happened (see second_step)
        self.zero_grad()
        return torch.stack(losses).mean()

    def _fork_rng(self):
        devices = [p.device for g in self.param_groups for p in g["params"] if p.device.type == "cuda"]
        return torch.random.fork_rng(devices=sorted({d.index or 0 for d in devices}))

    # ---------------------------------------------------------------- BatchNorm
    def _bn_modules(self) -> list[torch.nn.Module]:
        if self.model is None or self.bn == "none":
            return []
        return [m for m in self.model.modules() if isinstance(m, _BN_TYPES) and m.track_running_stats]

    def _save_bn(self) -> list[tuple] | None:
        mods = self._bn_modules()
        if self.bn == "snapshot":
            return [(m, {k: b.detach().clone() for k, b in m.named_buffers(recurse=False) if b is not None})
                    for m in mods]
        if self.bn == "momentum0":
            return [(m, m.momentum) for m in mods]
        return None

    def _bn_momentum0(self, pending: dict[str, Any]) -> None:
        if self.bn == "momentum0":
            for m, _ in pending["bn"] or []:
                m.momentum = 0.0

    def _restore_bn(self, saved: list[tuple] | None) -> None:
        for m, data in saved or []:
            if self.bn == "snapshot":
                for k, b in m.named_buffers(recurse=False):
                    if k in data:
                        b.copy_(data[k])
            else:
                m.momentum = data

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``{"base": base.state_dict(), "sam": <persistent per-parameter state and groups>, "skipped_steps"}``.

        Transient restore data (the saved copy of w) is never included.
        """
        return {"base": self.base.state_dict(), "sam": super().state_dict(), "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or "base" not in state_dict or "sam" not in state_dict:
            raise ValueError("state_dict must come from a sharpness-aware optimizer (keys 'base' and 'sam')")
        super().load_state_dict(state_dict["sam"])
        own_groups = self.param_groups
        self.base.load_state_dict(state_dict["base"])  # replaces base.param_groups with a new list
        for mine, theirs in zip(own_groups, self.base.param_groups):
            for key in self.defaults:
                if key not in self.base.defaults and key in mine:
                    theirs[key] = mine[key]
        self.param_groups = self.base.param_groups
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
        self._pending = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rho={self.defaults['rho']}, base={type(self.base).__name__})"
