"""Preference losses and the pessimistic self-transfer fit.

With h = [log π(y_w) − log π_ref(y_w)] − [log π(y_l) − log π_ref(y_l)]:
* DPO (Rafailov et al., arXiv:2305.18290):  ℓ = −log σ(β h)
* IPO (identity preference optimisation):   ℓ = (h − 1/(2τ))², τ = β by default
* XPO (Xie et al., arXiv:2405.21046):       ℓ = DPO + α·log π(ỹ), ỹ ~ π_ref (minimising lowers the likelihood
  of reference samples: optimism; the sign follows TRL's implementation and is UNVERIFIED against Alg. 1)
* RPO (Liu et al., arXiv:2405.16436):       ℓ = DPO + η·(−log π(y_w)) (an SFT term anchoring π to the data)
:func:`distill_rpo` fits the pessimistic self-transfer policy of TPO's theoretical form (arXiv:2502.19255,
Alg. 1-2 as summarised) by L-BFGS on the RPO loss; η = 1 is this library's choice (the paper's UNVERIFIED).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from optimlab._validation import Interval, Options, check
from optimlab.result import CONVERGED, MAX_ITER, IterativeResult

__all__ = ["LOSSES", "distill_rpo", "dpo_loss", "ipo_loss", "preference_loss", "rpo_loss", "select_pairs",
           "xpo_loss"]

LOSSES = ("dpo", "ipo", "xpo", "rpo")
_POS = Interval(0, None, closed="neither")
_NONNEG = Interval(0, None, closed="left")


def _margin(logp_w, logp_l, ref_w, ref_l) -> torch.Tensor:
    return (logp_w - ref_w) - (logp_l - ref_l)


def dpo_loss(logp_w: torch.Tensor, logp_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
             beta: float = 0.1) -> torch.Tensor:
    """Mean of −log σ(β h) (``F.logsigmoid``)."""
    beta = check(_POS, beta, "beta", owner="dpo_loss")
    return -F.logsigmoid(beta * _margin(logp_w, logp_l, ref_w, ref_l)).mean()


def ipo_loss(logp_w, logp_l, ref_w, ref_l, beta: float = 0.1, *, tau: float | None = None) -> torch.Tensor:
    """Mean of (h − 1/(2τ))², τ = ``beta`` when not given."""
    tau = check(_POS, beta if tau is None else tau, "tau", owner="ipo_loss")
    return ((_margin(logp_w, logp_l, ref_w, ref_l) - 1.0 / (2.0 * tau)) ** 2).mean()


def xpo_loss(logp_w, logp_l, ref_w, ref_l, beta: float = 0.1, *, alpha: float = 1e-5,
             logp_explore: torch.Tensor | None = None) -> torch.Tensor:
    """DPO + α·mean log π(ỹ) with ỹ ~ π_ref (``logp_explore``; required when α > 0)."""
    alpha = check(_NONNEG, alpha, "alpha", owner="xpo_loss")
    loss = dpo_loss(logp_w, logp_l, ref_w, ref_l, beta)
    if alpha > 0:
        if logp_explore is None:
            raise ValueError("xpo_loss: logp_explore (log pi of reference samples) is required when alpha > 0")
        loss = loss + alpha * logp_explore.mean()
    return loss


def rpo_loss(logp_w, logp_l, ref_w, ref_l, beta: float = 0.1, *, eta: float = 1.0) -> torch.Tensor:
    """DPO + η·mean(−log π(y_w))."""
    eta = check(_NONNEG, eta, "rpo_eta", owner="rpo_loss")
    return dpo_loss(logp_w, logp_l, ref_w, ref_l, beta) - eta * logp_w.mean()


def preference_loss(name: str, logp_w, logp_l, ref_w, ref_l, beta: float, *, tau: float | None = None,
                    alpha: float = 1e-5, logp_explore: torch.Tensor | None = None, eta: float = 1.0) -> torch.Tensor:
    """Dispatch by ``name`` ∈ :data:`LOSSES`."""
    name = check(Options(*LOSSES), name, "loss", owner="preference_loss")
    if name == "dpo":
        return dpo_loss(logp_w, logp_l, ref_w, ref_l, beta)
    if name == "ipo":
        return ipo_loss(logp_w, logp_l, ref_w, ref_l, beta, tau=tau)
    if name == "xpo":
        return xpo_loss(logp_w, logp_l, ref_w, ref_l, beta, alpha=alpha, logp_explore=logp_explore)
    return rpo_loss(logp_w, logp_l, ref_w, ref_l, beta, eta=eta)


def select_pairs(scores: torch.Tensor, rule: str = "max_min") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(winner index, loser index, keep mask) per row of gold ``scores[B, K]`` under ``max_min`` (gold-best vs
    gold-worst; rows whose scores all tie are dropped, as in the authors' annotation code)."""
    check(Options("max_min"), rule, "pair_rule", owner="select_pairs")
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"select_pairs: scores must have shape [B, K >= 2], got {tuple(scores.shape)}")
    w = scores.argmax(dim=1)
    lo = scores.argmin(dim=1)
    keep = scores.max(dim=1).values > scores.min(dim=1).values
    return w, lo, keep


def distill_rpo(policy: Any, pairs: tuple[Any, Any, Any], ref_policy: Any, beta: float, eta: float = 1.0,
                max_iter: int = 100, tol: float = 1e-8) -> IterativeResult:
    """Fit ``policy`` in place by full-batch L-BFGS on the RPO loss over ``pairs = (prompts, y_w, y_l)``.

    ``status``: ``"converged"`` when the gradient norm ≤ ``tol``, else ``"max_iter"``; ``history["loss"]``;
    ``certificate["grad_norm"]``."""
    beta = check(_POS, beta, "beta", owner="distill_rpo")
    eta = check(_NONNEG, eta, "rpo_eta", owner="distill_rpo")
    max_iter = check(Interval(1, None, integer=True), max_iter, "max_iter", owner="distill_rpo")
    prompts, yw, yl = pairs
    params = [p for p in policy.parameters() if p.requires_grad]
    with torch.no_grad():
        ref_w, ref_l = ref_policy.log_prob(prompts, yw), ref_policy.log_prob(prompts, yl)
    t0 = time.perf_counter()
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=20, tolerance_grad=tol, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")
    history: dict[str, list[float]] = {"loss": []}

    def closure():
        opt.zero_grad()
        loss = rpo_loss(policy.log_prob(prompts, yw), policy.log_prob(prompts, yl), ref_w, ref_l, beta, eta=eta)
        loss.backward()
        return loss

    status, gnorm, it = MAX_ITER, float("inf"), 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is the iteration count after the loop)
        loss = opt.step(closure)
        history["loss"].append(float(loss.detach()))
        opt.zero_grad()
        closure()
        gnorm = float(torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in params)))
        if gnorm <= tol:
            status = CONVERGED
            break
    return IterativeResult(status=status, iterations=it, seconds=time.perf_counter() - t0, history=history,
                           certificate={"grad_norm": gnorm})
