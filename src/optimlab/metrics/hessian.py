"""Hessian of a model's loss: HVPs, exact Hessians, Hutchinson trace, top eigenvalues (Lanczos / power).

Methods as in PyHessian (Yao, Gholami, Keutzer, Mahoney; arXiv:1912.07145): everything is built on Hessian-vector
products by double backpropagation, H v = ∇(∇L · v). Over a data set the HVP is Σ_b (|b|/N) H_b v, the exact
full-data Hessian whatever the batching. Measurements put the model in ``eval()`` and restore its mode, weights and
buffers bit-exactly afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from optimlab.metrics._model import as_batches, measuring, trainable

MAX_EXACT = 5000


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of tr(H): mean of vᵀHv over ``n_samples`` Rademacher probes, with its standard error."""

    value: float
    stderr: float
    n_samples: int


@dataclass(frozen=True)
class EigResult:
    """Top eigenvalues (descending) and unit eigenvectors (flattened, float64).

    ``which`` is ``"largest_algebraic"`` (Lanczos) or ``"largest_magnitude"`` (power iteration, whose value may be
    negative).
    """

    values: list[float]
    vectors: list[Tensor]
    n_hvp: int
    converged: bool
    which: str


def hvp(loss_fn: Callable[[], Tensor], params: Sequence[Tensor], vec: Sequence[Tensor]) -> list[Tensor]:
    """H v for the scalar ``loss_fn()`` at ``params`` by double backprop: H v = ∇_w (∇_w L · v)."""
    params = list(params)
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        out = torch.autograd.grad(grads, params, grad_outputs=list(vec), allow_unused=True)
    return [torch.zeros_like(p) if o is None else o.detach() for p, o in zip(params, out)]


def exact_hessian(loss_fn: Callable[[], Tensor], params: Sequence[Tensor]) -> Tensor:
    """Dense Hessian (d × d, d = total number of parameters), one HVP per column. Refuses d > 5000."""
    params = list(params)
    d = sum(p.numel() for p in params)
    if d > MAX_EXACT:
        raise ValueError(f"exact_hessian refuses {d} parameters (max {MAX_EXACT}); use hvp-based estimates")
    cols = []
    for i in range(d):
        e = torch.zeros(d, dtype=params[0].dtype, device=params[0].device)
        e[i] = 1
        cols.append(_flat(hvp(loss_fn, params, _unflat(e, params))))
    return torch.stack(cols, dim=1)


def dataset_hvp(model: nn.Module, loss_fn: Callable, batches, params: Sequence[Tensor],
                vec: Sequence[Tensor]) -> list[Tensor]:
    """Σ_b (|b|/N) H_b v over the batches of a data set: the full-data HVP, independent of the batching."""
    batches = as_batches(batches)
    n = sum(int(x.shape[0]) for x, _ in batches)
    total = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        part = hvp(lambda x=x, y=y: loss_fn(model(x), y), params, vec)
        for t, h in zip(total, part):
            t.add_(h, alpha=x.shape[0] / n)
    return total


def _flat(ts: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def _unflat(v: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, i = [], 0
    for p in like:
        out.append(v[i : i + p.numel()].view_as(p).to(p.dtype))
        i += p.numel()
    return out


def _check(name: str, value, lo: float, integer: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < lo
    if bad or (integer and not isinstance(value, int)):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} >= {lo}, got {value!r}")


# --------------------------------------------------------------------------------------- matrix-free estimators
def hutchinson_from_hvp(matvec: Callable[[Tensor], Tensor], dim: int, *, max_samples: int = 100,
                        min_samples: int = 10, tol: float = 1e-3, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float64, device=None) -> TraceEstimate:
    """tr(H) ≈ (1/k) Σ v_kᵀ H v_k, v_k Rademacher (Hutchinson 1989), for any flat matvec.

    Stops when |Δmean|/(|mean| + 1e-6) < ``tol`` after ``min_samples`` draws, or at ``max_samples``;
    stderr = sd/√k (0 for a diagonal H, where every draw is exact).
    """
    _check("max_samples", max_samples, 1, integer=True)
    _check("min_samples", min_samples, 1, integer=True)
    _check("tol", tol, 0)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    draws: list[float] = []
    mean = 0.0
    for k in range(1, max_samples + 1):
        v = (torch.randint(0, 2, (dim,), generator=gen, device=gen.device).to(dtype) * 2 - 1).to(device)
        draws.append(float(v @ matvec(v).to(dtype)))
        prev, mean = mean, sum(draws) / k
        if k >= min_samples and abs(mean - prev) / (abs(mean) + 1e-6) < tol:
            break
    sd = float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0
    return TraceEstimate(mean, sd / math.sqrt(len(draws)), len(draws))


def top_eigenvalues_from_hvp(matvec: Callable[[Tensor], Tensor], dim: int, *, k: int = 1, method: str = "lanczos",
                             tol: float = 1e-3, max_iter: int = 100, generator: torch.Generator | None = None,
                             dtype: torch.dtype = torch.float64, device=None) -> EigResult:
    """Top-k eigenpairs of a symmetric operator given by a flat ``matvec``.

    ``"lanczos"``: ``scipy.sparse.linalg.eigsh(which="LA")`` in float64, the largest *algebraic* eigenvalues.
    ``"power"``: power iteration v ← Hv/‖Hv‖, λ = vᵀHv, re-orthonormalised against earlier vectors for k > 1; it
    finds the largest-*magnitude* eigenvalues, which may be negative (``which`` says so).
    """
    _check("k", k, 1, integer=True)
    _check("max_iter", max_iter, 1, integer=True)
    _check("tol", tol, 0)
    if k > dim:
        raise ValueError(f"k must be <= the dimension {dim}, got {k}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    count = [0]

    def mv(v: Tensor) -> Tensor:
        count[0] += 1
        return matvec(v.to(device=device)).to(torch.float64).cpu()

    v0 = torch.randn(dim, generator=gen, dtype=torch.float64, device=gen.device).cpu()
    if method == "lanczos":
        from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

        op = LinearOperator((dim, dim), dtype=np.float64,
                            matvec=lambda x: mv(torch.from_numpy(np.asarray(x, dtype=np.float64).ravel())).numpy())
        try:
            vals, vecs = eigsh(op, k=k, which="LA", tol=tol, maxiter=max_iter, v0=v0.numpy(),
                               ncv=min(dim, max(2 * k + 1, 20)))
            converged = True
        except ArpackNoConvergence as err:
            vals, vecs, converged = err.eigenvalues, err.eigenvectors, False
        order = np.argsort(vals)[::-1]
        return EigResult([float(vals[i]) for i in order], [torch.from_numpy(vecs[:, i].copy()) for i in order],
                         count[0], converged, "largest_algebraic")
    if method != "power":
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    values, vectors, converged = [], [], True
    for _ in range(k):
        v = v0 / v0.norm()
        lam, ok = 0.0, False
        for _ in range(max_iter):
            for u in vectors:
                v = v - (u @ v) * u
            hv = mv(v / v.norm())
            new = float((v / v.norm()) @ hv)
            for u in vectors:
                hv = hv - (u @ hv) * u
            v = hv / hv.norm().clamp_min(1e-300)
            if abs(new - lam) <= tol * (abs(new) + 1e-12):
                lam, ok = new, True
                break
            lam = new
        converged &= ok
        values.append(lam)
        vectors.append(v)
        v0 = torch.randn(dim, generator=gen, dtype=torch.float64, device=gen.device).cpu()
    return EigResult(values, vectors, count[0], converged, "largest_magnitude")


# --------------------------------------------------------------------------------------- model-level API
def _model_matvec(model, loss_fn, data, params):
    batches = as_batches(data)

    def matvec(v: Tensor) -> Tensor:
        return _flat(dataset_hvp(model, loss_fn, batches, params, _unflat(v, params)))

    return matvec


def hessian_trace(model: nn.Module, loss_fn: Callable, data, *, params=None, max_samples: int = 100,
                  min_samples: int = 10, tol: float = 1e-3, generator: torch.Generator | None = None) -> TraceEstimate:
    """Hutchinson trace of the full-data Hessian of ``loss_fn(model(X), y)`` (see :func:`hutchinson_from_hvp`)."""
    ps = trainable(model, params)
    with measuring(model, ps):
        dim = sum(p.numel() for p in ps)
        return hutchinson_from_hvp(_model_matvec(model, loss_fn, data, ps), dim, max_samples=max_samples,
                                   min_samples=min_samples, tol=tol, generator=generator, device=ps[0].device)


def top_eigenvalues(model: nn.Module, loss_fn: Callable, data, *, k: int = 1, method: str = "lanczos",
                    tol: float = 1e-3, max_iter: int = 100, params=None,
                    generator: torch.Generator | None = None) -> EigResult:
    """Top-k Hessian eigenvalues of the full-data loss (see :func:`top_eigenvalues_from_hvp`)."""
    ps = trainable(model, params)
    with measuring(model, ps):
        dim = sum(p.numel() for p in ps)
        return top_eigenvalues_from_hvp(_model_matvec(model, loss_fn, data, ps), dim, k=k, method=method, tol=tol,
                                        max_iter=max_iter, generator=generator, device=ps[0].device)
