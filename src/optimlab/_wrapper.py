"""``WrappedOptimizer``: the plumbing of an optimizer that wraps a constructed base optimizer.

Sharpness-aware methods (SAM, VaSSO, preSAM), BAR, RefLoRA and NoRA+ change the gradient (or where it is taken)
and leave the update rule to a base optimizer that the user constructed (``SGD``, ``AdamW``, ...)::

    opt = VaSSO(params, base=torch.optim.SGD(params, lr=0.1, momentum=0.9), rho=0.05, theta=0.9)

This class owns what every such wrapper must get right once:

* ``opt.param_groups is opt.base.param_groups`` at all times (also after ``load_state_dict``), so LR
  schedulers built on the wrapper drive the base;
* the wrapper's per-group hyperparameters are declared once in ``_constraints`` (``optimlab._validation``) and
  validated in ``__init__``, in ``add_param_group`` (which forwards to the base and fills in the wrapper's
  defaults) and after ``load_state_dict`` (which also fills defaults missing from older checkpoints);
* ``state_dict() == {"base": base.state_dict(), "wrapper": {"state", "param_groups", "skipped_steps", ...}}``;
* the ``nonfinite="raise" | "skip"`` policy with a ``skipped_steps`` counter;
* rejection of bases that need their own closure (LBFGS) and of nested wrappers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch.optim import Optimizer

from optimlab._validation import Constraint, Options, validate

__all__ = ["WrappedOptimizer"]

_CLOSURE_BASES = (torch.optim.LBFGS,)


class WrappedOptimizer(Optimizer):
    """Base class of optimizers that wrap a constructed base optimizer (see the module docstring).

    Subclasses declare ``_constraints`` (extending the parent's with ``{**Parent._constraints, ...}``), call
    ``super().__init__(params, base=base, defaults={...}, nonfinite=...)`` with their per-group hyperparameters,
    and may override :meth:`_wrapper_state` / :meth:`_load_wrapper_state` for wrapper-level state.

    Args:
        params: ``None`` (take the base's parameters) or exactly the base's tensors (tensors or param groups).
        base: a constructed ``torch.optim.Optimizer``; not LBFGS (it needs its own closure), not a wrapper.
        defaults: the wrapper's per-group hyperparameters (validated against ``_constraints``).
        nonfinite: ``"raise"`` a ``FloatingPointError`` or ``"skip"`` the step (counted in ``skipped_steps``).
    """

    _constraints: ClassVar[dict[str, Constraint]] = {"nonfinite": Options("raise", "skip")}

    def __init__(self, params: Any = None, *, base: Optimizer, defaults: dict[str, Any] | None = None,
                 nonfinite: str = "raise") -> None:
        owner = type(self).__name__
        if not isinstance(base, Optimizer):
            raise ValueError(f"{owner}: base must be a constructed torch.optim.Optimizer, got {type(base).__name__}")
        if isinstance(base, WrappedOptimizer):
            raise ValueError(f"{owner}: base must not be another wrapped optimizer ({type(base).__name__}); "
                             "nesting wrappers is not supported")
        if isinstance(base, _CLOSURE_BASES):
            raise ValueError(f"{owner}: base must not be {type(base).__name__}: it needs its own closure, which "
                             "a wrapper cannot give")
        base_params = [p for g in base.param_groups for p in g["params"]]
        if params is not None:
            given = [p for g in _as_list(params) for p in (g["params"] if isinstance(g, dict) else [g])]
            if len(given) != len(base_params) or {id(p) for p in given} != {id(p) for p in base_params}:
                raise ValueError(f"{owner}: params must be exactly the base optimizer's parameters, or None to "
                                 f"take them (got {len(given)} tensors, the base has {len(base_params)})")
        defaults = self._check(dict(defaults or {}))
        self.nonfinite = self._check({"nonfinite": nonfinite})["nonfinite"]
        self._initializing = True
        super().__init__(base_params, defaults)  # temporary groups, replaced by the base's below
        self._initializing = False
        self.base = base
        self._own_keys = tuple(k for k in defaults if k not in base.defaults)
        self.param_groups = base.param_groups
        for group in self.param_groups:
            self._fill_group(group)
        self.defaults.update({k: v for k, v in base.defaults.items() if k not in self.defaults})
        self.skipped_steps = 0

    # ---------------------------------------------------------------- validation and groups
    def _check(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validate ``values`` against ``_constraints``; returns the normalised values."""
        return validate(self._constraints, values, owner=type(self).__name__)

    def _fill_group(self, group: dict[str, Any]) -> None:
        """Fill the wrapper's missing keys of ``group`` from its defaults, then validate the wrapper's keys."""
        for key in self._own_keys:
            group.setdefault(key, self.defaults[key])
        group.update(self._check({k: group[k] for k in self._own_keys}))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the base (which fills its own defaults) and fill in this wrapper's defaults."""
        if getattr(self, "_initializing", False):
            return super().add_param_group(param_group)
        param_group = dict(param_group)
        own = {k: param_group.pop(k) for k in list(param_group) if k in self._own_keys}
        own = self._check(own)  # before the base is touched: a bad value leaves both unchanged
        self.base.add_param_group(param_group)
        self.base.param_groups[-1].update(own)
        self._fill_group(self.base.param_groups[-1])

    # ---------------------------------------------------------------- non-finite policy
    def _nonfinite(self, message: str) -> None:
        """Apply the ``nonfinite`` policy: raise ``FloatingPointError(message)`` or count a skipped step."""
        if self.nonfinite == "raise":
            raise FloatingPointError(message)
        self.skipped_steps += 1

    # ---------------------------------------------------------------- checkpoints
    def _wrapper_state(self) -> dict[str, Any]:
        """Extra wrapper-level entries for ``state_dict()["wrapper"]`` (subclasses extend)."""
        return {}

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        """Read back what :meth:`_wrapper_state` wrote (missing keys: keep the current values)."""

    def state_dict(self) -> dict[str, Any]:
        """``{"base": base.state_dict(), "wrapper": {"state", "param_groups", "skipped_steps", ...}}``."""
        own = super().state_dict()
        own["param_groups"] = [{k: v for k, v in g.items() if k in self._own_keys or k == "params"}
                               for g in own["param_groups"]]
        return {"base": self.base.state_dict(),
                "wrapper": {**own, "skipped_steps": self.skipped_steps, **self._wrapper_state()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load both parts; the groups stay shared with the base, re-validated, and older checkpoints gain defaults."""
        owner = type(self).__name__
        if not isinstance(state_dict, dict) or "base" not in state_dict or "wrapper" not in state_dict:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{owner}: state_dict must have the keys 'base' and 'wrapper' (from "
                             f"WrappedOptimizer.state_dict()), got {keys}")
        wrapper = copy.copy(state_dict["wrapper"])
        saved_groups = wrapper["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{owner}: the checkpoint has {len(saved_groups)} param groups, this optimizer "
                             f"{len(self.param_groups)}")
        for saved in saved_groups:  # validate before anything is loaded: a bad checkpoint changes nothing
            self._check({k: saved[k] for k in self._own_keys if k in saved})
        # torch's loader wants every key of the live groups; the base's keys come from the base's own state.
        merged = [{**{k: v for k, v in live.items() if k != "params"}, **saved}
                  for live, saved in zip(self.param_groups, saved_groups)]
        super().load_state_dict({"state": wrapper["state"], "param_groups": merged})
        own_groups = self.param_groups
        self.base.load_state_dict(state_dict["base"])  # replaces base.param_groups with a new list
        for mine, theirs in zip(own_groups, self.base.param_groups):
            theirs.update({k: mine[k] for k in self._own_keys if k in mine})
            self._fill_group(theirs)
        self.param_groups = self.base.param_groups
        self.skipped_steps = int(wrapper.get("skipped_steps", 0))
        self._load_wrapper_state(wrapper)

    def __repr__(self) -> str:
        own = ", ".join(f"{k}={self.defaults[k]!r}" for k in self._own_keys)
        return f"{type(self).__name__}({own}{', ' if own else ''}base={type(self.base).__name__})"


def _as_list(params: Any) -> list[Any]:
    if isinstance(params, torch.Tensor):
        return [params]
    if isinstance(params, Iterable):
        return list(params)
    raise ValueError(f"params must be an iterable of tensors or param groups, or None, got {type(params).__name__}")
