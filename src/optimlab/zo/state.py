"""Running Hessian-trace estimate and checkpoints of the ZO optimizers (a mixin of
:class:`optimlab.zo.base.ZOOptimizer`).

Trace probe (Zhang et al., arXiv:2506.05454, §2 expansion; symmetric form used here): τ = (f₊ + f₋ − 2f₀)/eps² =
wᵀ∇²f w + O(eps²), E τ = tr∇²f for every direction kind with E[wwᵀ] = I.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from torch import Tensor

__all__ = ["ZOStateMixin"]


class ZOStateMixin:
    """Trace accumulators (``_trace``), ``trace_estimate``/``trace_estimate_stderr`` and ``state_dict`` /
    ``load_state_dict`` with the ZO counters; expects ``_step``, ``seed``, ``trace_beta``, ``skipped_steps``,
    ``_owner``, ``_check_group`` and ``_trainables`` from the optimizer."""

    # ---------------------------------------------------------------- trace estimate
    def _update_trace(self, sample: float) -> None:
        tr, b = self._trace, self.trace_beta
        tr["ema"] = b * tr["ema"] + (1 - b) * sample
        tr["n"] += 1
        delta = sample - tr["mean"]
        tr["mean"] += delta / tr["n"]
        tr["m2"] += delta * (sample - tr["mean"])

    @property
    def trace_estimate(self) -> float | None:
        """Running estimate of tr∇²f: bias-corrected EMA (``trace_beta``) of the probes (f₊ + f₋ − 2f₀)/eps²
        (E = tr∇²f + O(eps²) for every direction kind); None before the first probe."""
        tr = self._trace
        if tr["n"] == 0:
            return None
        return tr["ema"] / (1 - self.trace_beta ** tr["n"]) if self.trace_beta > 0 else tr["ema"]

    @property
    def trace_estimate_stderr(self) -> float | None:
        """Standard error of :attr:`trace_estimate`: the probes' sample s.d. (Welford) over √min(n, n_eff),
        n_eff = (1 + β)/(1 − β) the EMA's effective sample count; None before two probes."""
        tr = self._trace
        if tr["n"] < 2:
            return None
        n_eff = (1 + self.trace_beta) / (1 - self.trace_beta)
        return math.sqrt(tr["m2"] / (tr["n"] - 1) / min(tr["n"], n_eff))

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """torch's ``{"state", "param_groups"}`` plus ``"zo"`` (step counter, seed, device type, trace
        accumulators) and ``"skipped_steps"``."""
        dev = self._trainables()[0][1].device.type
        return {**super().state_dict(), "zo": {"step": self._step, "seed": self.seed, "device_type": dev,
                                                "trace": dict(self._trace)},
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a checkpoint after validating its groups (a bad value raises ``ValueError`` and loads nothing).
        State tensors keep their saved dtype (fp32 masters of 16-bit weights); loading on another device type warns
        (CPU and CUDA draw different direction streams)."""
        groups = [{**self.defaults, **g} for g in state_dict["param_groups"]]
        for g in groups:
            self._check_group(g)
        zo = state_dict.get("zo", {})
        sd = {**state_dict, "param_groups": groups}
        super().load_state_dict(sd)
        by_index = {i: p for g_saved, g in zip(groups, self.param_groups) for i, p in zip(g_saved["params"],
                                                                                           g["params"])}
        for i, st in state_dict.get("state", {}).items():
            p = by_index.get(i)
            if p is None:
                continue
            for k, v in st.items():
                if isinstance(v, Tensor):
                    self.state[p][k] = v.detach().to(device=p.device).clone()
        if zo:
            self._step, self.seed = int(zo["step"]), int(zo["seed"])
            self._trace = dict(zo["trace"])
            here = self._trainables()[0][1].device.type
            if zo.get("device_type", here) != here:
                warnings.warn(f"{self._owner}: checkpoint saved on {zo['device_type']} and loaded on {here}: the "
                              "direction stream differs between device types", UserWarning, stacklevel=2)
        self.skipped_steps = int(state_dict.get("skipped_steps", self.skipped_steps))
