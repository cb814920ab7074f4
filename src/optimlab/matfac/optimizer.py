"""ScaledGD (Tong, Ma, Chi, JMLR 2021, arXiv:2005.08898) as a ``torch.optim.Optimizer`` for any loss of XXᵀ or XYᵀ.

The maths is :func:`optimlab.matfac.scaledgd.precondition` (grad·(FᵀF)^†); this class applies it to the autograd
gradients of factor parameters, so ScaledGD serves losses that are not plain factorisation (masked completion,
sensing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from optimlab._validation import Constraint, Interval, Options, validate
from optimlab.matfac.problems import NONNEGATIVE
from optimlab.matfac.scaledgd import INVERSES, RTOL, precondition

__all__ = ["ScaledGD"]


class ScaledGD(torch.optim.Optimizer):
    """ScaledGD for factor parameters: ``ScaledGD(params, lr=0.5, *, symmetric, inverse="pinv", damping=0.0,
    rtol=None, nonfinite="raise")``.

    A group holds factors X (``symmetric=True``; each 2-D parameter is its own factor) or exactly one ordered pair
    [X, Y] (``symmetric=False``). ``step`` replaces the autograd gradients by the scaled ones, simultaneously (every
    update is computed from the old iterate before any is applied):
        X ← X − lr·∇_X (XᵀX)^†                              (symmetric)
        X ← X − lr·∇_X (YᵀY)^†,   Y ← Y − lr·∇_Y (XᵀX)^†     (pair)
    On ¼‖XXᵀ − A‖² / ½‖XYᵀ − A‖² this is :func:`~optimlab.matfac.scaled_gd_step` with η = ``lr``. With a ½‖XXᵀ − A‖²
    loss the gradient doubles: use lr = 0.25 for the η = ½ iteration (lr = 0.5 there is η = 1, which does not
    converge: the error alternates between two values).

    Args:
        params: factor tensors, or param groups (per-group values of the options below are validated too).
        lr: step size η > 0 (LR schedulers drive it).
        symmetric: ``True`` (one factor per parameter) or ``False`` (each group is a pair [X, Y]).
        inverse, damping, rtol: the Gram inverse, see :func:`~optimlab.matfac.gram_inverse` (``"pinv"`` is needed
            when r exceeds the rank of the target).
        nonfinite: ``"raise"`` a ``FloatingPointError`` on a non-finite closure loss or gradient, leaving the
            parameters untouched, or ``"skip"`` the step (counted in ``skipped_steps``).

    Half-precision factors (float16, bfloat16) are preconditioned in float32 and keep their dtype. The optimizer
    keeps no per-parameter state: ``state_dict()`` holds the groups and ``skipped_steps``, and a round trip resumes
    bit-identically.
    """

    _constraints: ClassVar[dict[str, Constraint]] = {
        "lr": Interval(0, math.inf, closed="neither"),
        "symmetric": Options(True, False, remedy="True: one factor per parameter; False: pairs [X, Y]"),
        "inverse": Options(*INVERSES),
        "damping": NONNEGATIVE,
        "rtol": RTOL,
        "nonfinite": Options("raise", "skip"),
    }
    _group_keys = ("lr", "symmetric", "inverse", "damping", "rtol")

    def __init__(self, params: Any, lr: float = 0.5, *, symmetric: bool, inverse: str = "pinv",
                 damping: float = 0.0, rtol: float | None = None, nonfinite: str = "raise") -> None:
        values = validate(self._constraints, dict(lr=lr, symmetric=symmetric, inverse=inverse, damping=damping,
                                                  rtol=rtol, nonfinite=nonfinite), owner="ScaledGD")
        self.nonfinite = values.pop("nonfinite")
        self.skipped_steps = 0
        super().__init__(params, values)

    # ---------------------------------------------------------------- validation
    def _check_group(self, group: dict[str, Any]) -> dict[str, Any]:
        """Validate one group's options and factor shapes; returns its normalised options."""
        values = validate(self._constraints, {k: group[k] for k in self._group_keys}, owner="ScaledGD")
        params = group["params"]
        for p in params:
            if p.dim() != 2:
                raise ValueError(f"ScaledGD: factors must be 2-D matrices, got a parameter of shape {tuple(p.shape)}")
        if not values["symmetric"]:
            if len(params) != 2:
                raise ValueError(f"ScaledGD: with symmetric=False every group must hold exactly 2 parameters "
                                 f"[X, Y]; a group has {len(params)}")
            if params[0].shape[1] != params[1].shape[1]:
                raise ValueError("ScaledGD: the pair [X, Y] must have the same number of columns r, got shapes "
                                 f"{tuple(params[0].shape)} and {tuple(params[1].shape)}")
        return values

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (defaults filled in), validating its options and its factor shapes first."""
        super().add_param_group(param_group)
        try:
            self.param_groups[-1].update(self._check_group(self.param_groups[-1]))
        except ValueError:
            self.param_groups.pop()
            raise

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """torch's ``{"state", "param_groups"}`` plus ``"skipped_steps"``."""
        return {**super().state_dict(), "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load groups (missing options from older checkpoints take this optimizer's defaults) after validating
        them; a bad value raises ``ValueError`` and leaves the optimizer unchanged."""
        state_dict = dict(state_dict)
        groups = [{**self.defaults, **g} for g in state_dict["param_groups"]]
        for saved, live in zip(groups, self.param_groups):
            validate(self._constraints, {k: saved[k] for k in self._group_keys}, owner="ScaledGD")
            if len(saved["params"]) != len(live["params"]):
                break  # torch raises its own error below
        state_dict["param_groups"] = groups
        super().load_state_dict(state_dict)
        self.skipped_steps = int(state_dict.get("skipped_steps", self.skipped_steps))

    # ---------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One simultaneous ScaledGD step on every group; ``closure`` (optional) recomputes the loss with grad
        enabled and is returned."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work: list[tuple[dict[str, Any], Tensor, Tensor, Tensor]] = []  # (group, factor, its gradient, partner)
        for g in self.param_groups:
            if g["symmetric"]:
                work += [(g, X, X.grad, X) for X in g["params"] if X.grad is not None]
            else:
                X, Y = g["params"]
                if X.grad is not None and Y.grad is not None:
                    work += [(g, X, X.grad, Y), (g, Y, Y.grad, X)]
        finite = loss is None or bool(torch.isfinite(torch.as_tensor(loss)).all())
        finite = finite and all(bool(torch.isfinite(grad).all()) for _, _, grad, _ in work)
        if not finite:
            if self.nonfinite == "raise":
                raise FloatingPointError("ScaledGD: non-finite loss or gradient; parameters left unchanged "
                                         "(pass nonfinite='skip' to skip such steps)")
            self.skipped_steps += 1
            return loss
        updates = []
        for g, p, grad, other in work:  # every delta from the old iterate first (simultaneous update)
            dtype = torch.promote_types(p.dtype, torch.float32)  # eigh has no float16/bfloat16 kernels
            delta = precondition(grad.to(dtype), other.detach().to(dtype), inverse=g["inverse"],
                                 damping=g["damping"], rtol=g["rtol"])
            updates.append((p, (-g["lr"] * delta).to(p.dtype)))
        for p, delta in updates:
            p.add_(delta)
        return loss
