"""The KL-regularised objective of RLHF over a finite response set, in log space.

Huang, Li, Dann, He, "Can RLHF be More Efficient with Imperfect Reward Models? A Policy Coverage Perspective"
(arXiv:2502.19255, ICML 2025), §2-3. Notation: prompts x (rows), responses y (columns), reference π_ref, β > 0.

* J_r(π) = E_x[E_{y~π} r(x, y) − β KL(π(·|x) ‖ π_ref(·|x))]                                     (:func:`kl_value`)
* log π_r = log π_ref + r/β − log Z_r(x),  log Z_r = logsumexp_y(log π_ref + r/β)          (:func:`kl_optimal_logprobs`)
* J_r(π_r) = β E_x log Z_r(x)                                                               (:func:`optimal_value`)
* for every π:  J_r(π_r) − J_r(π) = β E_x KL(π ‖ π_r)  (substitute r = β log(π_r/π_ref) + β log Z_r; no
  assumption)                                                                                (:func:`suboptimality`)
* coverage C(π*‖π) = E_x E_{π*}[π*/π] = 1 + E_x χ²(π*‖π), as E_x exp(logsumexp(2 log π* − log π))  (:func:`coverage`)
* Lemma 3.1 (as stated in the paper's v3 and re-derived here): for π = π_{r'} with r' ∈ [0, R], or any mixture
  of such policies, C − 1 ≤ κ(e^{2R/β})·(J* − J(π))/β with κ(x) = (x − 1)²/(x − 1 − log x).  Derivation: with
  B = 2R/β, π*/π ∈ [e^{−B}, e^{B}] (also for mixtures), so u = log(π*/π) ∈ [−B, B]; E_π e^u = 1 gives
  KL(π‖π*) = E_π[e^u − 1 − u] and χ² = E_π(e^u − 1)²; (e^u − 1)²/(e^u − 1 − u) increases in u, hence
  χ² ≤ κ(e^B)·KL = κ(e^B)(J* − J)/β.                                             (:func:`kappa`, :func:`coverage_bound`)

At β = 0 no such bound exists (a deterministic 2ε-sub-optimal policy has infinite coverage), which is why the
KL term matters. Everything is computed with logsumexp (never exp(r/β)); p = exp(logp) appears only in the
final weighted sums, where terms with logp = −inf contribute 0. Finite response sets use float64.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from optimlab._validation import Interval, check

__all__ = ["check_beta", "coverage", "coverage_bound", "kappa", "kl_divergence", "kl_optimal_logprobs", "kl_value",
           "log_partition", "optimal_value", "suboptimality"]

_BETA = Interval(0, None, closed="neither")


def check_beta(beta: Any, owner: str = "rlhf") -> float:
    """``beta`` as a float, or ``ValueError`` when it is not a finite number > 0."""
    return check(_BETA, beta, "beta", owner=owner)


def _pair(a: torch.Tensor, b: torch.Tensor, na: str, nb: str, owner: str) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"{owner}: {na} and {nb} must be tensors, got {type(a).__name__}, {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{owner}: shapes of {na} {tuple(a.shape)} and {nb} {tuple(b.shape)} differ")
    if a.dim() < 1:
        raise ValueError(f"{owner}: {na} must have a response dimension, got a scalar")


def _check_rows(logp_ref: torch.Tensor, owner: str) -> None:
    if torch.isnan(logp_ref).any():
        raise ValueError(f"{owner}: logp_ref contains NaN")
    dead = torch.isneginf(logp_ref).all(dim=-1)
    if dead.any():
        rows = dead.nonzero().flatten()[:5].tolist()
        raise ValueError(f"{owner}: logp_ref has a prompt whose row is all -inf (rows {rows}); every prompt "
                         f"needs at least one response with pi_ref > 0")


def _weights(prompt_weights: torch.Tensor | None, like: torch.Tensor, owner: str) -> torch.Tensor:
    rows = like.shape[:-1]
    if prompt_weights is None:
        n = max(1, math.prod(rows))
        return torch.full(rows, 1.0 / n, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(prompt_weights, dtype=like.dtype, device=like.device)
    if w.shape != rows or (w < 0).any() or not torch.isfinite(w).all() or float(w.sum()) <= 0:
        raise ValueError(f"{owner}: prompt_weights must be finite, >= 0, of shape {tuple(rows)} with a positive "
                         f"sum, got shape {tuple(w.shape)}")
    return w / w.sum()


def log_partition(logp_ref: torch.Tensor, reward: torch.Tensor, beta: float) -> torch.Tensor:
    """log Z_r(x) = logsumexp_y(log π_ref(y|x) + r(x, y)/β), shape ``[B]``."""
    beta = check_beta(beta, "log_partition")
    _pair(logp_ref, reward, "logp_ref", "reward", "log_partition")
    _check_rows(logp_ref, "log_partition")
    return torch.logsumexp(logp_ref + reward / beta, dim=-1)


def kl_optimal_logprobs(logp_ref: torch.Tensor, reward: torch.Tensor, beta: float) -> torch.Tensor:
    """log π_r = log π_ref + r/β − logsumexp(log π_ref + r/β) (rows logsumexp to 0; arXiv:2502.19255 §2)."""
    beta = check_beta(beta, "kl_optimal_logprobs")
    _pair(logp_ref, reward, "logp_ref", "reward", "kl_optimal_logprobs")
    _check_rows(logp_ref, "kl_optimal_logprobs")
    z = logp_ref + reward / beta
    return z - torch.logsumexp(z, dim=-1, keepdim=True)


def kl_divergence(logp_p: torch.Tensor, logp_q: torch.Tensor) -> torch.Tensor:
    """Exact KL(p‖q) per row, shape ``[B]``: Σ_y p (log p − log q) with 0·log 0 = 0 and +inf where p > 0 = q."""
    _pair(logp_p, logp_q, "logp_p", "logp_q", "kl_divergence")
    p = logp_p.exp()
    pos = p > 0
    diff = torch.where(pos, logp_p - torch.where(pos, logp_q, torch.zeros_like(logp_q)), torch.zeros_like(logp_p))
    terms = torch.where(pos, p * diff, torch.zeros_like(p))
    out = terms.sum(dim=-1)
    bad = (pos & torch.isneginf(logp_q)).any(dim=-1)
    return torch.where(bad, torch.full_like(out, math.inf), out)


def kl_value(logp: torch.Tensor, logp_ref: torch.Tensor, reward: torch.Tensor, beta: float,
             prompt_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Exact J_r(π) = E_x[Σ_y π r − β KL(π‖π_ref)] (scalar); terms with log π = −inf contribute 0."""
    beta = check_beta(beta, "kl_value")
    _pair(logp, logp_ref, "logp", "logp_ref", "kl_value")
    _pair(logp_ref, reward, "logp_ref", "reward", "kl_value")
    p = logp.exp()
    er = torch.where(p > 0, p * reward, torch.zeros_like(p)).sum(dim=-1)
    per = er - beta * kl_divergence(logp, logp_ref)
    return (_weights(prompt_weights, logp, "kl_value") * per).sum()


def optimal_value(logp_ref: torch.Tensor, reward: torch.Tensor, beta: float,
                  prompt_weights: torch.Tensor | None = None) -> torch.Tensor:
    """J* = J_r(π_r) = β E_x log Z_r(x) (scalar)."""
    beta = check_beta(beta, "optimal_value")
    lz = log_partition(logp_ref, reward, beta)
    return beta * (_weights(prompt_weights, logp_ref, "optimal_value") * lz).sum()


def suboptimality(logp: torch.Tensor, logp_ref: torch.Tensor, reward: torch.Tensor, beta: float,
                  prompt_weights: torch.Tensor | None = None) -> torch.Tensor:
    """J* − J(π) through the identity β E_x KL(π‖π_r) (exact, ≥ 0; arXiv:2502.19255 §2)."""
    beta = check_beta(beta, "suboptimality")
    _pair(logp, logp_ref, "logp", "logp_ref", "suboptimality")
    star = kl_optimal_logprobs(logp_ref, reward, beta)
    return beta * (_weights(prompt_weights, logp, "suboptimality") * kl_divergence(logp, star)).sum()


def coverage(logp_star: torch.Tensor, logp: torch.Tensor,
             prompt_weights: torch.Tensor | None = None) -> torch.Tensor:
    """C(π*‖π) = E_x Σ_y π*²/π = E_x exp(logsumexp_y(2 log π* − log π)) (scalar, +inf if supp π* ⊄ supp π).

    Computed in log space so that π putting 1e−300 mass on a π* response still gives a finite (huge) value
    where float64 allows it (arXiv:2502.19255, Def. 2.2)."""
    _pair(logp_star, logp, "logp_star", "logp", "coverage")
    star_pos = ~torch.isneginf(logp_star)
    safe = torch.where(star_pos, logp, torch.zeros_like(logp))
    terms = torch.where(star_pos, 2 * logp_star - safe, torch.full_like(logp, -math.inf))
    terms = torch.where(star_pos & torch.isneginf(logp), torch.full_like(logp, math.inf), terms)
    per = torch.logsumexp(terms, dim=-1).exp()
    return (_weights(prompt_weights, logp, "coverage") * per).sum()


def _h(b: float) -> float:
    """e^b − 1 − b, accurate for small b (series below 0.5)."""
    if b < 0.5:
        term, total, k = b * b / 2.0, 0.0, 2
        while abs(term) > 1e-18 * abs(total) or total == 0.0:
            total += term
            k += 1
            term *= b / k
            if term == 0.0:
                break
        return total
    return math.expm1(b) - b


def kappa(B: float) -> float:
    """κ(e^B) = (e^B − 1)²/(e^B − 1 − B) for B ≥ 0, in log space (limit 2 at B = 0; +inf on overflow)."""
    b = check(Interval(0, None, closed="left"), B, "B", owner="kappa")
    if b == 0.0:
        return 2.0
    if b < 30.0:
        return math.expm1(b) ** 2 / _h(b)
    # log κ = 2 log(e^b − 1) − log(e^b − 1 − b) = 2(b + log1p(−e^{−b})) − (b + log1p(−(1 + b)e^{−b}))
    log_k = b + 2 * math.log1p(-math.exp(-b)) - math.log1p(-(1 + b) * math.exp(-b))
    return math.exp(log_k) if log_k < 709.0 else math.inf


def coverage_bound(gap: float, R: float, beta: float) -> float:
    """1 + κ(e^{2R/β})·gap/β, the bound of Lemma 3.1 on C(π*‖π) for π in the convex hull of {π_{r'}: r' ∈ [0, R]}
    (+inf on overflow; grows without limit as β ↓ 0 at fixed gap > 0)."""
    gap = check(Interval(0, None, closed="left"), gap, "gap", owner="coverage_bound")
    R = check(Interval(0, None, closed="neither"), R, "R", owner="coverage_bound")
    beta = check_beta(beta, "coverage_bound")
    B = 2.0 * R / beta
    k = kappa(B) if B < 1e300 else math.inf
    if gap == 0.0:
        return 1.0
    val = k * (gap / beta)
    return 1.0 + val if math.isfinite(val) else math.inf
