"""Preconditioned SAM (preSAM): one template for SAM variants, with ASAM and Fisher-SAM as presets.

Zhang, Li & Giannakis, "Preconditioned Sharpness-Aware Minimization: Unifying Analysis and a Novel Learning
Algorithm", ICASSP 2025, arXiv:2501.06603. A symmetric positive-definite preconditioner enters the inner
maximisation either in the constraint (CP) or in the objective (OP)::

    CP:   max ⟨g, ε⟩  s.t. ‖C ε‖ ≤ ρ   ⇒  ε = ρ C⁻² g / ‖C⁻¹ g‖
    OP:   g is replaced by an estimate u (e.g. O g)  ⇒  ε = ρ u / ‖u‖
    both: ε = ρ C⁻² u / ‖C⁻¹ u‖;  diagonal c = diag(C⁻¹):  ε_i = ρ c_i² u_i / sqrt(Σ_j c_j² u_j²)

Presets: SAM (c = 1, u = g), ASAM (Kwon et al., arXiv:2102.11600: c = |w| + η on weight tensors), Fisher-SAM
(Kim et al., arXiv:2206.04920: c = (1 + η g²)^(-1/2)), VaSSO (u = EMA of gradients, :mod:`optimlab.sam.vasso`) and
the two arms of the provisional infoSAM (u = o ⊙ g or u = g ⊘ (b + δ), :mod:`optimlab.sam.infosam`). The
per-tensor maths lives in :mod:`optimlab.sam.preconditioners` (list-level foreach kernels).

What was checked: the closed forms above are derived from the stated constrained problems and tested against
them (`presam.special_cases`). UNVERIFIED against the paper's text: that it writes the formulas in exactly this
C/O parametrisation, and that Fisher-SAM's Fisher estimate is the squared minibatch gradient (as here) rather than an
average of per-sample squares. No convergence rate is claimed for preSAM here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimlab._validation import AnyOf, Constraint, Instance, Interval, Options, validate
from optimlab.sam.base import Ascent, SharpnessAware
from optimlab.sam.preconditioners import (
    asam_scale,
    asam_scales,
    ema_direction,
    ema_directions,
    fisher_scale,
    fisher_scales,
    flat_ok,
    invvar_weight,
    invvar_weights,
    snr_flat,
    snr_weight,
    snr_weights,
)

#: A user's preconditioner: ``hook(p, g, group, state) -> tensor of p's shape`` (see :class:`PreSAM`).
Hook = Callable[[Tensor, Tensor, dict, dict], Tensor]
CONSTRAINTS = (None, "asam", "fisher")
OBJECTIVES = (None, "ema", "snr", "invvar")
SCOPES = ("weights", "all")

_TABLE: dict[str, Constraint] = {
    "constraint": AnyOf(Options(*CONSTRAINTS), Instance(callable)),
    "objective": AnyOf(Options(*OBJECTIVES), Instance(callable)),
    "eta": Interval(0, math.inf, closed="left"),
    "theta": Interval(0, 1, closed="right"),
    "beta": Interval(0, 1, closed="left"),
    "alpha": Interval(0, 1, closed="left"),
    "delta": Interval(0, math.inf, closed="neither"),
    "scope": Options(*SCOPES),
}
#: Constraints that replace the table's for one objective: the inverse-variance weight g/(b + δ) needs a floor
#: (b = 0 where g = m = 0, e.g. on a dead ReLU unit, and 0/0 is NaN).
BY_OBJECTIVE: dict[str, dict[str, Constraint]] = {
    "invvar": {"delta": Interval(1e-12, math.inf, closed="left",
                                 remedy="the inverse-variance objective g/(b + delta) needs the floor "
                                        "delta >= 1e-12")},
}
#: δ's default per objective.
DELTA_DEFAULT = {"snr": 1e-12, "invvar": 1e-8}


class PreSAM(SharpnessAware):
    """The preSAM template: ε = ρ c² ⊙ u / ‖c ⊙ u‖ with a constraint scale c and an objective vector u.

    Args:
        constraint: ``None`` (c = 1), ``"asam"`` (c = |w| + η on the tensors chosen by ``scope``), ``"fisher"``
            (c = (1 + η g²)^(-1/2)), or a callable ``constraint(p, g, group, state) -> c`` (positive, shape of p).
        objective: ``None`` (u = g), ``"ema"`` (VaSSO, weight ``theta``), ``"snr"`` (provisional infoSAM,
            ``beta``, ``delta``), ``"invvar"`` (provisional infoSAM, the draft's inverse variance: ``alpha``,
            ``delta``), or a callable ``objective(p, g, group, state) -> u`` (shape of p).
        eta: η ≥ 0 of ASAM (default 0.01) or Fisher-SAM (default 1.0).
        theta: θ ∈ (0, 1], weight on the newest gradient in the EMA objective.
        beta: β ∈ [0, 1) and delta: δ > 0 (default 1e-12), the SNR objective's EMA factor and floor.
        alpha: α ∈ [0, 1), the inverse-variance objective's EMA factor; there δ ≥ 1e-12 (default 1e-8).
        scope: ASAM's set of scaled tensors: ``"weights"`` (names containing "weight" when ``model`` is given,
            else tensors with ``ndim >= 2``) or ``"all"``.

    Callable hooks are called once per parameter with a parameter ``p``, its first-pass gradient ``g``, its param
    ``group`` and a *copy* of its state dict: a hook keeps state across steps by assigning new values to keys of
    that dict (``state["m"] = ...``), never by modifying tensors in place; the copy is merged into the optimizer's
    state only when the step is taken (both passes finite), so a skipped or raising step leaves state untouched.
    Since a hook may map a non-finite gradient to finite values, the first pass then also checks g itself.
    With no constraint and no objective this is SAM, bit for bit. All arguments are validated, also those that the
    chosen constraint and objective do not use.
    """

    _constraints: ClassVar[dict[str, Constraint]] = {**SharpnessAware._constraints, **_TABLE}
    #: per objective, constraints that replace ``_constraints``' (used by :meth:`_check` once ``objective`` is set)
    _by_objective: ClassVar[dict[str, dict[str, Constraint]]] = BY_OBJECTIVE

    def _check(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validate against ``_constraints``, with the chosen objective's entries of ``_by_objective``."""
        objective = self.__dict__.get("objective")
        extra = self._by_objective.get(objective, {}) if isinstance(objective, str) else {}
        return validate({**self._constraints, **extra}, values, owner=type(self).__name__)

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
        alpha: float = 0.9,
        delta: float | None = None,
        scope: str = "weights",
        **common: Any,
    ) -> None:
        self._check({"objective": objective})
        self.objective = objective  # δ's allowed set depends on it
        given = {"constraint": constraint, "theta": theta, "beta": beta, "alpha": alpha, "scope": scope,
                 **({} if eta is None else {"eta": eta}), **({} if delta is None else {"delta": delta})}
        self._check(given)
        if delta is None:
            delta = DELTA_DEFAULT.get(objective, 1e-12) if isinstance(objective, str) else 1e-12
        if eta is None:
            eta = 1.0 if constraint == "fisher" else 0.01
        hyper: dict[str, Any] = {}
        if isinstance(constraint, str):
            hyper["eta"] = eta
        if objective == "ema":
            hyper["theta"] = theta
        if objective == "snr":
            hyper.update(beta=beta, delta=delta)
        if objective == "invvar":
            hyper.update(alpha=alpha, delta=delta)
        self._setup(params, base, rho, constraint, objective, scope, hyper, common)

    def _setup(self, params: Any, base: Optimizer, rho: float, constraint: str | Hook | None,
               objective: str | Hook | None, scope: str, hyper: dict[str, Any], common: dict[str, Any]) -> None:
        """The constructor shared with the presets (each passes only the hyperparameters it declares)."""
        self.constraint, self.objective, self.scope = constraint, objective, scope
        super().__init__(params, base=base, rho=rho, **hyper, **common)
        names = dict(self.model.named_parameters()) if self.model is not None else {}
        self._weight_ids = {id(p) for n, p in names.items() if "weight" in n.rsplit(".", 1)[-1]}
        self._use_names = bool(names)
        self._flat_cache: dict[Any, tuple[Any, ...]] = {}

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        return self.objective is not None

    @property
    def _norm_sees_grads(self) -> bool:  # type: ignore[override]
        # every built-in u and c carries a NaN or inf of g into ‖c ⊙ u‖ (θ > 0; inf·0 and inf − inf are NaN)
        return not (callable(self.objective) or callable(self.constraint))

    @property
    def _scratch_directions(self) -> bool:  # type: ignore[override]
        return self.objective in ("snr", "invvar")  # u = o ⊙ g or g ⊘ (b + δ): a new tensor of this step

    def _in_scope(self, p: Tensor) -> bool:
        if self.scope == "all":
            return True
        return id(p) in self._weight_ids if self._use_names else p.ndim >= 2

    def ascent(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]],
               group: dict[str, Any]) -> Ascent:
        """u from the objective, c from the constraint, and the objective's new state; see :class:`PreSAM`."""
        n = len(params)
        new: list[dict[str, Any]] | None = None
        copies: list[dict[str, Any]] | None = None
        if callable(self.objective) or callable(self.constraint):
            copies = [dict(s) for s in states]
        # objective: u
        if self.objective is None:
            us = grads
        elif self.objective == "ema":  # two multi-tensor kernels; a flat path was measured slower here
            us = ema_directions([s.get("d") for s in states], grads, group["theta"])
            new = [{"d": d} for d in us]
        elif self.objective == "snr":
            us, new = self._snr(params, grads, states, group)
        elif self.objective == "invvar":  # the first step of a tensor (no m yet): m = g, b = 1
            us, ms, bs = invvar_weights([s.get("m") for s in states], grads, group["alpha"], group["delta"])
            new = [{"m": m, "b": b} for m, b in zip(ms, bs)]
        else:
            us = [self.objective(p, g, group, st) for p, g, st in zip(params, grads, copies)]  # type: ignore[arg-type]
        # constraint: c
        cs: list[Tensor | None] | None
        if self.constraint is None:
            cs = None
        elif self.constraint == "asam":
            chosen = [i for i, p in enumerate(params) if self._in_scope(p)]
            cs = [None] * n
            for i, c in zip(chosen, asam_scales([params[i] for i in chosen], group["eta"])):
                cs[i] = c
        elif self.constraint == "fisher":
            cs = fisher_scales(grads, group["eta"])  # type: ignore[assignment]
        else:
            cs = [self.constraint(p, g, group, st) for p, g, st in zip(params, grads, copies)]  # type: ignore[arg-type]
        if copies is not None:  # what the hooks wrote, merged before the objective's own new state
            if callable(new):
                own = new

                def new() -> None:
                    for st, c in zip(states, copies):
                        st.update(c)
                    own()
            else:
                new = copies if new is None else [{**c, **v} for c, v in zip(copies, new)]
        return us, cs, new

    # Long lists of one dtype keep InfoSAM's state (m, s) in flat buffers whose views are the
    # per-parameter state entries; the maths runs on the flat tensors (one kernel per operation instead of one per
    # tensor, the same bits) and a step commits by copying the new values into the buffers. ``_flat_cache``
    # (keyed by the objective and the parameters) remembers the buffers and views, and is used only while the state
    # still holds exactly those views (not after a checkpoint is loaded or the state is replaced); otherwise the
    # state is flattened afresh and the commit installs new views.
    def _flat_prev(self, kind: str, params: list[Tensor], states: list[dict[str, Any]],
                   names: tuple[str, ...]) -> tuple[Any, Any, tuple[Tensor, ...] | None]:
        """(cache key, cache entry or None, the previous state as flat tensors or None at the first step)."""
        key = (kind, tuple(map(id, params)))
        values = [[s.get(n) for s in states] for n in names]
        if all(v is None for v in values[0]):
            return key, None, None
        cached = self._flat_cache.get(key)
        if cached is not None and not all(all(a is b for a, b in zip(v, c)) for v, c in zip(values, cached[1])):
            cached = None
        prev = cached[0] if cached is not None else tuple(torch._C._nn.flatten_dense_tensors(v) for v in values)
        return key, cached, prev

    def _flat_commit(self, key: Any, cached: Any, states: list[dict[str, Any]], grads: list[Tensor],
                     names: tuple[str, ...], flats: tuple[Tensor, ...], extra: dict[str, Any]):
        def commit() -> None:
            if cached is not None:  # the state's views already point into the buffers: overwrite them
                for buffer, new in zip(cached[0], flats):
                    buffer.copy_(new)
                if extra:
                    for st in states:
                        st.update(extra)
                return
            views = [list(torch._C._nn.unflatten_dense_tensors(f, grads)) for f in flats]
            for i, st in enumerate(states):
                st.update({n: v[i] for n, v in zip(names, views)}, **extra)
            self._flat_cache[key] = (tuple(flats), views)

        return commit

    def _flat_usable(self, states: list[dict[str, Any]], grads: list[Tensor], name: str) -> bool:
        present = [name in s for s in states]
        return (all(present) or not any(present)) and flat_ok(grads)

    def _snr(self, params: list[Tensor], grads: list[Tensor], states: list[dict[str, Any]],
             group: dict[str, Any]) -> tuple[list[Tensor], Any]:
        """InfoSAM's u = o ⊙ g and its new state (a list of dicts, or a callable that commits it)."""
        steps = [s.get("step", 0) + 1 for s in states]
        t = steps[0]
        if steps.count(t) != len(steps) or not (self._flat_usable(states, grads, "m") and
                                                self._flat_usable(states, grads, "s")):
            ms, ss = [s.get("m") for s in states], [s.get("s") for s in states]
            us, m, s = snr_weights(ms, ss, grads, steps, group["beta"], group["delta"])
            return us, [{"m": mi, "s": si, "step": ti} for mi, si, ti in zip(m, s, steps)]
        key, cached, prev = self._flat_prev("snr", params, states, ("m", "s"))
        us, m, s = snr_flat(*(prev or (None, None)), grads, t, group["beta"], group["delta"])
        return us, self._flat_commit(key, cached, states, grads, ("m", "s"), (m, s), {"step": t})


class ASAM(PreSAM):
    """Adaptive SAM (Kwon et al., ICML 2021, arXiv:2102.11600): ε = ρ T² g / ‖T g‖, T = diag(|w| + η).

    Invariant to layer rescalings that leave the network function unchanged. Defaults from the official code:
    ρ = 0.5 (CIFAR-10; 1.0 for CIFAR-100), η = 0.01, scaled tensors = weights (see :class:`PreSAM` ``scope``).
    """

    _constraints: ClassVar[dict[str, Constraint]] = {**SharpnessAware._constraints, "eta": _TABLE["eta"],
                                                     "scope": _TABLE["scope"]}

    def __init__(self, params: Any = None, *, base: Optimizer, rho: float = 0.5, eta: float = 0.01,
                 scope: str = "weights", **common: Any) -> None:
        self._check({"scope": scope})
        self._setup(params, base, rho, "asam", None, scope, {"eta": eta}, common)


class FisherSAM(PreSAM):
    """Fisher-SAM (Kim et al., ICML 2022, arXiv:2206.04920): ε = ρ F⁻¹g / sqrt(gᵀF⁻¹g), F = diag(1 + η g²).

    The Fisher diagonal is estimated by the squared minibatch gradient (UNVERIFIED against the paper: it may
    average per-sample squares). Defaults: ρ (the paper's γ) = 0.1, η = 1.0; η = 0 gives SAM exactly.
    """

    _constraints: ClassVar[dict[str, Constraint]] = {**SharpnessAware._constraints, "eta": _TABLE["eta"]}

    def __init__(self, params: Any = None, *, base: Optimizer, rho: float = 0.1, eta: float = 1.0,
                 **common: Any) -> None:
        self._setup(params, base, rho, "fisher", None, "weights", {"eta": eta}, common)


__all__ = ["ASAM", "CONSTRAINTS", "OBJECTIVES", "SCOPES", "FisherSAM", "Hook", "PreSAM", "asam_scale",
           "ema_direction", "fisher_scale", "invvar_weight", "snr_weight"]
