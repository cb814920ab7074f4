"""ρ that follows the learning-rate schedule, as in GSAM (Zhuang et al., ICLR 2022, arXiv:2203.08065)."""

from __future__ import annotations

import math
from typing import Any

from optimlab._validation import Interval, check
from optimlab.sam.base import SharpnessAware


class RhoScheduler:
    """ρ_t = ρ_min + (ρ_max − ρ_min) · (lr_t − lr_min) / (lr_max − lr_min), per parameter group.

    Call :meth:`step` after the LR scheduler's ``step()``. ``rho_max`` defaults to each group's current ρ and
    ``lr_max`` to each group's current lr (read at construction); the ratio is clipped to [0, 1]. The state
    (the per-group anchors) is saved by :meth:`state_dict`.
    """

    def __init__(self, opt: SharpnessAware, *, rho_min: float = 0.0, rho_max: float | None = None,
                 lr_min: float = 0.0, lr_max: float | None = None) -> None:
        if not isinstance(opt, SharpnessAware):
            raise ValueError(f"opt must be a sharpness-aware optimizer, got {type(opt).__name__}")
        nonneg = Interval(0, math.inf, closed="left")
        self.opt = opt
        self.rho_min = check(nonneg, rho_min, "rho_min", owner="RhoScheduler")
        self.lr_min = check(nonneg, lr_min, "lr_min", owner="RhoScheduler")
        self.rho_max = [float(g["rho"] if rho_max is None else rho_max) for g in opt.param_groups]
        self.lr_max = [float(g["lr"] if lr_max is None else lr_max) for g in opt.param_groups]
        for rmax, lmax in zip(self.rho_max, self.lr_max):
            if rmax < self.rho_min:
                raise ValueError(f"rho_max must be >= rho_min ({self.rho_min}), got {rmax}")
            if lmax <= self.lr_min:
                raise ValueError(f"lr_max must be > lr_min ({self.lr_min}), got {lmax}")

    def step(self) -> list[float]:
        """Set each group's ρ from its current lr; returns the new radii."""
        out = []
        for group, rmax, lmax in zip(self.opt.param_groups, self.rho_max, self.lr_max):
            frac = min(1.0, max(0.0, (group["lr"] - self.lr_min) / (lmax - self.lr_min)))
            group["rho"] = self.rho_min + (rmax - self.rho_min) * frac
            out.append(group["rho"])
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rho_min": self.rho_min, "lr_min": self.lr_min, "rho_max": list(self.rho_max),
                "lr_max": list(self.lr_max)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rho_min, self.lr_min = float(state["rho_min"]), float(state["lr_min"])
        self.rho_max, self.lr_max = list(state["rho_max"]), list(state["lr_max"])
