"""Preconditioned SAM (preSAM): one template for SAM variants, with ASAM and Fisher-SAM as presets.

Zhang, Li & Giannakis, "Preconditioned Sharpness-Aware Minimization: Unifying Analysis and a Novel Learning
Algorithm", ICASSP 2025, arXiv:2501.06603. A symmetric positive-definite preconditioner enters the inner
maximisation either in the constraint (CP) or in the objective (OP)::

    CP:   max ⟨g, ε⟩  s.t. ‖C ε‖ ≤ ρ   ⇒  ε = ρ C⁻² g / ‖C⁻¹ g‖
    OP:   g is replaced by an estimate u (e.g. O g)  ⇒  ε = ρ u / ‖u‖
    both: ε = ρ C⁻² u / ‖C⁻¹ u‖;  diagonal c = diag(C⁻¹):  ε_i = ρ c_i² u_i / sqrt(Σ_j c_j² u_j²)

Presets: SAM (c = 1, u = g), ASAM (Kwon et al., arXiv:2102.11600: c = |w| + η on weight tensors), Fisher-SAM
(Kim et al., arXiv:2206.04920: c = (1 + η g²)^(-1/2)), VaSSO (u = EMA of gradients, :mod:`optimlab.sam.vasso`) and
the provisional infoSAM (u = o ⊙ g, :mod:`optimlab.sam.infosam`).

What was checked: the closed forms above are derived from the stated constrained problems and tested against
them (`presam.special_cases`). UNVERIFIED against the paper's text: that it writes the formulas in exactly this
C/O parametrisation, and that Fisher-SAM's Fisher estimate is the squared minibatch gradient (as here) rather than an
average of per-sample squares. No convergence rate is claimed for preSAM here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

from optimlab.sam.base import SharpnessAware

Hook = Callable[[Tensor, Tensor, dict, dict], Tensor]
CONSTRAINTS = (None, "asam", "fisher")
OBJECTIVES = (None, "ema", "snr")
SCOPES = ("weights", "all")


# ------------------------------------------------------------------------------------------- pure functions
def asam_scale(p: Tensor, eta: float) -> Tensor:
    """ASAM's c = diag(T_w) = |w| + η (arXiv:2102.11600, normalisation operator T_w)."""
    return p.detach().abs().add_(eta)


def fisher_scale(g: Tensor, eta: float) -> Tensor:
    """Fisher-SAM's c = diag(F)^(-1/2) with F = 1 + η g² (arXiv:2206.04920), so that ε = ρ F⁻¹g / sqrt(gᵀF⁻¹g)."""
    return g.square().mul_(eta).add_(1.0).rsqrt_()


def ema_direction(d_prev: Tensor | None, g: Tensor, theta: float) -> Tensor:
    """VaSSO's d_t = (1 − θ) d_{t−1} + θ g_t, with d_1 = g_1 (arXiv:2309.15639). θ = 1 gives d_t = g_t exactly."""
    if d_prev is None:
        return g.detach().clone()
    return d_prev.mul(1.0 - theta).add_(g, alpha=theta)


def snr_weight(
    m_prev: Tensor | None, s_prev: Tensor | None, g: Tensor, t: int, beta: float, delta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Provisional infoSAM weight (specs/sam.md §3.5); returns (o, m_t, s_t).

    m_t = β m + (1−β) g;  s_t = β s + (1−β)(g − m_t)²;  m̂ = m_t/(1−βᵗ);  ŝ = s_t/(1−βᵗ);
    o = m̂² / (m̂² + ŝ + δ) ∈ [0, 1].
    """
    m = g.mul(1.0 - beta) if m_prev is None else m_prev.mul(beta).add_(g, alpha=1.0 - beta)
    dev = (g - m).square_()
    s = dev.mul_(1.0 - beta) if s_prev is None else s_prev.mul(beta).add_(dev, alpha=1.0 - beta)
    bias = 1.0 - beta**t
    # o = m̂²/(m̂² + ŝ + δ) with m̂ = m/b, ŝ = s/b, multiplied through by b²: m²/(m² + b·s + b²·δ) (fewer temporaries)
    m2 = m.square()
    o = m2.div_(s.mul(bias).add_(m2).add_(bias * bias * delta))
    return o, m, s


# ------------------------------------------------------------------------------------------- validation
def _check_unit(value: Any, name: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be a number in {rng}, got {value!r}")
    return float(value)


def _check_nonneg(value: Any, name: str) -> float:
    return _check_unit(value, name, 0.0, math.inf, False, True)


# ------------------------------------------------------------------------------------------- optimizer
class PreSAM(SharpnessAware):
    """The preSAM template: ε = ρ c² ⊙ u / ‖c ⊙ u‖ with a constraint scale c and an objective vector u.

    Args:
        constraint: ``None`` (c = 1), ``"asam"`` (c = |w| + η on the tensors chosen by ``scope``), ``"fisher"``
            (c = (1 + η g²)^(-1/2)), or a callable ``(p, g, group, state) -> c`` (positive, shape of p).
        objective: ``None`` (u = g), ``"ema"`` (VaSSO, weight ``theta``), ``"snr"`` (provisional infoSAM,
            ``beta``, ``delta``), or a callable ``(p, g, group, state) -> u``.
        eta: η of ASAM (default 0.01) or Fisher-SAM (default 1.0); must be ≥ 0.
        theta: θ ∈ (0, 1], weight on the newest gradient in the EMA objective.
        beta: β ∈ [0, 1) and delta: δ > 0, the SNR objective's EMA factor and floor.
        scope: ASAM's set of scaled tensors: ``"weights"`` (names containing "weight" when ``model`` is given,
            else tensors with ``ndim >= 2``) or ``"all"``.
    With no constraint and no objective this is SAM, bit for bit.
    """

    def __init__(
        self,
        params: Any = None,
        *,
        base: Optimizer,
        rho: float = 0.05,
        constraint: str | Hook | None = None,
        objective: str | Hook | None = None,
        eta: float | None = None,
        theta: float = 0.9,
        beta: float = 0.9,
        delta: float = 1e-12,
        scope: str = "weights",
        **common: Any,
    ) -> None:
        if not (callable(constraint) or constraint in CONSTRAINTS):
            raise ValueError(f"constraint must be one of {CONSTRAINTS} or a callable, got {constraint!r}")
        if not (callable(objective) or objective in OBJECTIVES):
            raise ValueError(f"objective must be one of {OBJECTIVES} or a callable, got {objective!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if eta is None:
            eta = 1.0 if constraint == "fisher" else 0.01
        extra: dict[str, Any] = {}
        if constraint in ("asam", "fisher"):
            extra["eta"] = _check_nonneg(eta, "eta")
        if objective == "ema":
            extra["theta"] = _check_unit(theta, "theta", 0.0, 1.0, True, False)
        if objective == "snr":
            extra["beta"] = _check_unit(beta, "beta", 0.0, 1.0, False, True)
            extra["delta"] = _check_unit(delta, "delta", 0.0, math.inf, True, True)
        self.constraint = constraint
        self.objective = objective
        self.scope = scope
        super().__init__(params, base=base, rho=rho, **extra, **common)
        names = dict(self.model.named_parameters()) if self.model is not None else {}
        self._weight_ids = {id(p) for n, p in names.items() if "weight" in n.rsplit(".", 1)[-1]}
        self._use_names = bool(names)

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        return self.objective is not None

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        if "eta" in group:
            group["eta"] = _check_nonneg(group["eta"], "eta")
        if "theta" in group:
            group["theta"] = _check_unit(group["theta"], "theta", 0.0, 1.0, True, False)
        if "beta" in group:
            group["beta"] = _check_unit(group["beta"], "beta", 0.0, 1.0, False, True)

    def _in_scope(self, p: Tensor) -> bool:
        if self.scope == "all":
            return True
        return id(p) in self._weight_ids if self._use_names else p.ndim >= 2

    def _constraint(self, p: Tensor, g: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor | None:
        if self.constraint is None:
            return None
        if self.constraint == "asam":
            return asam_scale(p, group["eta"]) if self._in_scope(p) else None
        if self.constraint == "fisher":
            return fisher_scale(g, group["eta"])
        return self.constraint(p, g, group, state)

    def _ascent(self, p: Tensor, g: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        if self.objective is None:
            return g
        if self.objective == "ema":
            d = ema_direction(state.get("d"), g, group["theta"])
            self._stage(p, d=d)
            return d
        if self.objective == "snr":
            t = state.get("step", 0) + 1
            o, m, s = snr_weight(state.get("m"), state.get("s"), g, t, group["beta"], group["delta"])
            self._stage(p, m=m, s=s, step=t)
            return o.mul_(g)
        return self.objective(p, g, group, state)


class ASAM(PreSAM):
    """Adaptive SAM (Kwon et al., ICML 2021, arXiv:2102.11600): ε = ρ T² g / ‖T g‖, T = diag(|w| + η).

    Invariant to layer rescalings that leave the network function unchanged. Defaults from the official code:
    ρ = 0.5 (CIFAR-10; 1.0 for CIFAR-100), η = 0.01, scaled tensors = weights (see :class:`PreSAM` ``scope``).
    """

    def __init__(self, params: Any = None, *, base: Optimizer, rho: float = 0.5, eta: float = 0.01,
                 scope: str = "weights", **common: Any) -> None:
        super().__init__(params, base=base, rho=rho, constraint="asam", eta=eta, scope=scope, **common)


class FisherSAM(PreSAM):
    """Fisher-SAM (Kim et al., ICML 2022, arXiv:2206.04920): ε = ρ F⁻¹g / sqrt(gᵀF⁻¹g), F = diag(1 + η g²).

    The Fisher diagonal is estimated by the squared minibatch gradient (UNVERIFIED against the paper: it may
    average per-sample squares). Defaults: ρ (the paper's γ) = 0.1, η = 1.0; η = 0 gives SAM exactly.
    """

    def __init__(self, params: Any = None, *, base: Optimizer, rho: float = 0.1, eta: float = 1.0,
                 **common: Any) -> None:
        super().__init__(params, base=base, rho=rho, constraint="fisher", eta=eta, **common)


__all__ = ["ASAM", "FisherSAM", "PreSAM", "asam_scale", "ema_direction", "fisher_scale", "snr_weight"]
