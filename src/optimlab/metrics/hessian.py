"""Hessian of a model's loss: HVPs, exact Hessians, Hutchinson trace, top eigenvalues (Lanczos / power).

Methods as in PyHessian (Yao, Gholami, Keutzer, Mahoney; arXiv:1912.07145): everything is built on Hessian-vector
products by double backpropagation, H v = ∇_w(∇_w L · v). Over a data set the HVP is Σ_b (|b|/N) H_b v, the exact
full-data Hessian whatever the batching. Measurements put the model in ``eval()`` and restore its mode, weights and
buffers bit-exactly afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from optimlab._random import check_generator
from optimlab.metrics._model import as_batches, measuring, trainable
from optimlab.result import CONVERGED, MAX_ITER, IterativeResult

MAX_EXACT = 5000


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of tr(H): mean of vᵀHv over ``n_samples`` Rademacher probes, with its standard error."""

    value: float
    stderr: float
    n_samples: int


@dataclass(frozen=True, kw_only=True)
class EigResult(IterativeResult):
    """Top eigenvalues (descending for Lanczos, in order found for power) with unit eigenvectors (flat, float64, CPU),
    as an :class:`optimlab.result.IterativeResult`.

    ``which`` is ``"largest_algebraic"`` (Lanczos) or ``"largest_magnitude"`` (power iteration: the value may be
    negative). ``iterations`` counts operator applications (Hessian-vector products); ``status`` is ``"converged"``,
    or ``"max_iter"`` when the iteration budget ran out (``converged`` is then False).
    """

    values: list[float]
    vectors: list[Tensor]
    which: str

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, vectors): a 1-D array of the k values and a dim×k array of the vectors as columns."""
        vecs = np.stack([v.numpy() for v in self.vectors], axis=1) if self.vectors else np.zeros((0, 0))
        return np.asarray(self.values, dtype=np.float64), vecs


def _eig(values: list[float], vectors: list[Tensor], count: int, converged: bool, which: str) -> EigResult:
    return EigResult(status=CONVERGED if converged else MAX_ITER, iterations=count, values=values, vectors=vectors,
                     which=which)


def _grads(loss: Tensor, params: list[Tensor]) -> list[Tensor | None]:
    if loss.ndim != 0:
        raise ValueError(f"loss_fn() must return a scalar, got shape {tuple(loss.shape)}")
    return list(torch.autograd.grad(loss, params, create_graph=True, allow_unused=True))


def _hvp_from_grads(grads: list[Tensor | None], params: list[Tensor], vec: Sequence[Tensor],
                    retain: bool) -> list[Tensor]:
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
    out = [torch.zeros_like(p) for p in params]  # parameters the gradient does not depend on: zero rows of H
    if live:
        res = torch.autograd.grad([grads[i] for i in live], params,
                                  grad_outputs=[vec[i].to(params[i].dtype) for i in live],
                                  retain_graph=retain, allow_unused=True)
        out = [torch.zeros_like(p) if r is None else r.detach() for p, r in zip(params, res)]
    return out


def hvp(loss_fn: Callable[[], Tensor], params: Sequence[Tensor], vec: Sequence[Tensor]) -> list[Tensor]:
    """H v for the scalar ``loss_fn()`` at ``params`` by double backprop: H v = ∇_w (∇_w L · v) (PyHessian)."""
    params = list(params)
    if len(vec) != len(params):
        raise ValueError(f"vec must have one tensor per parameter ({len(params)}), got {len(vec)}")
    with torch.enable_grad():
        return _hvp_from_grads(_grads(loss_fn(), params), params, vec, retain=False)


def exact_hessian(loss_fn: Callable[[], Tensor], params: Sequence[Tensor]) -> Tensor:
    """Dense Hessian H_ij = ∂²L/∂w_i∂w_j (d × d, d = total parameter count), all columns H e_i in one batched
    double-backward (per-column loop if an op does not support batching). Refuses d > 5000."""
    params = list(params)
    d = sum(p.numel() for p in params)
    if d > MAX_EXACT:
        raise ValueError(f"exact_hessian refuses {d} parameters (max {MAX_EXACT}); use hvp-based estimates")
    with torch.enable_grad():
        grads = _grads(loss_fn(), params)
        eye = torch.eye(d, dtype=params[0].dtype, device=params[0].device)
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not live:
            return torch.zeros(d, d, dtype=params[0].dtype, device=params[0].device)
        basis = [b.reshape(d, *params[i].shape) for i, b in enumerate(eye.split([p.numel() for p in params], 1))]
        try:
            rows = torch.autograd.grad([grads[i] for i in live], params, grad_outputs=[basis[i] for i in live],
                                       retain_graph=True, allow_unused=True, is_grads_batched=True)
            cols = [torch.zeros(d, p.numel(), dtype=p.dtype, device=p.device) if r is None else r.reshape(d, -1)
                    for p, r in zip(params, rows)]
            return torch.cat(cols, dim=1).detach().T.contiguous()
        except RuntimeError:  # some op lacks a batching rule: one HVP per column
            cols = [_flat(_hvp_from_grads(grads, params, [b[i] for b in basis], retain=True)) for i in range(d)]
            return torch.stack(cols, dim=1)


def dataset_hvp(model: nn.Module, loss_fn: Callable, batches, params: Sequence[Tensor],
                vec: Sequence[Tensor]) -> list[Tensor]:
    """Σ_b (|b|/N) H_b v over the batches of a data set: the full-data HVP, independent of the batching."""
    return _DatasetHVP(model, loss_fn, as_batches(batches), list(params))(vec)


class _DatasetHVP:
    """Full-data HVP. With one batch the first-order graph is built once and reused for every product
    (as PyHessian does); with several it is rebuilt per batch so memory stays that of one batch."""

    def __init__(self, model, loss_fn, batches, params):
        self.model, self.loss_fn, self.batches, self.params = model, loss_fn, batches, params
        self.n = sum(int(x.shape[0]) for x, _ in batches)
        self.cached = None

    def _batch_grads(self, x, y):
        with torch.enable_grad():
            return _grads(self.loss_fn(self.model(x), y), self.params)

    def __call__(self, vec: Sequence[Tensor]) -> list[Tensor]:
        if len(self.batches) == 1:
            if self.cached is None:
                self.cached = self._batch_grads(*self.batches[0])
            with torch.enable_grad():
                return _hvp_from_grads(self.cached, self.params, vec, retain=True)
        total = [torch.zeros_like(p) for p in self.params]
        for x, y in self.batches:
            with torch.enable_grad():
                part = _hvp_from_grads(self._batch_grads(x, y), self.params, vec, retain=False)
            for t, h in zip(total, part):
                t.add_(h, alpha=x.shape[0] / self.n)
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


def _generator(generator: torch.Generator | int | None) -> torch.Generator:
    """``None`` keeps the metrics reproducible by default (seed 0); otherwise :func:`check_generator`'s rule."""
    return check_generator(0 if generator is None else generator)


# --------------------------------------------------------------------------------------- matrix-free estimators
def hutchinson_from_hvp(matvec: Callable[[Tensor], Tensor], dim: int, *, max_samples: int = 100,
                        min_samples: int = 10, tol: float = 1e-3, generator: torch.Generator | int | None = None,
                        dtype: torch.dtype = torch.float64, device=None) -> TraceEstimate:
    """tr(H) ≈ (1/k) Σ_i v_iᵀ H v_i with Rademacher v_i (Hutchinson 1989; PyHessian arXiv:1912.07145), for any
    flat ``matvec``. Probes are drawn on the generator's device, then moved to ``device`` in ``dtype``.

    Stops when |Δmean|/(|mean| + 1e-6) < ``tol`` once ``min_samples`` draws are in, or at ``max_samples``;
    stderr = sd/√k (0 for a diagonal H, where every draw equals tr H exactly).
    """
    _check("dim", dim, 1, integer=True)
    _check("max_samples", max_samples, 1, integer=True)
    _check("min_samples", min_samples, 1, integer=True)
    _check("tol", tol, 0)
    if min_samples > max_samples:
        raise ValueError(f"min_samples must be <= max_samples={max_samples}, got {min_samples}")
    gen = _generator(generator)
    draws: list[float] = []
    mean = 0.0
    for k in range(1, max_samples + 1):
        v = (torch.randint(0, 2, (dim,), generator=gen, device=gen.device) * 2 - 1).to(device=device, dtype=dtype)
        draws.append(float(v @ matvec(v).to(dtype)))
        prev, mean = mean, math.fsum(draws) / k
        if k >= min_samples and abs(mean - prev) / (abs(mean) + 1e-6) < tol:
            break
    sd = float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0
    return TraceEstimate(mean, sd / math.sqrt(len(draws)), len(draws))


def top_eigenvalues_from_hvp(matvec: Callable[[Tensor], Tensor], dim: int, *, k: int = 1, method: str = "lanczos",
                             tol: float = 1e-3, max_iter: int = 100, generator: torch.Generator | int | None = None,
                             dtype: torch.dtype = torch.float64, device=None) -> EigResult:
    """Top-k eigenpairs of a symmetric operator given by a flat ``matvec`` (PyHessian arXiv:1912.07145 §3).

    ``"lanczos"``: implicitly restarted Lanczos, ``scipy.sparse.linalg.eigsh(which="LA")`` on a float64
    ``LinearOperator``: the largest *algebraic* eigenvalues; ``tol`` is ARPACK's relative accuracy and ``max_iter``
    its number of restarts (dense ``eigh`` when k ≥ dim). ``"power"``: v ← Hv/‖Hv‖, λ = vᵀHv until
    |Δλ| ≤ tol·|λ| or ``max_iter`` products, re-orthonormalised against earlier vectors for k > 1 (deflation);
    it finds the largest-*magnitude* eigenvalues, which may be negative (``which`` says so).
    """
    _check("dim", dim, 1, integer=True)
    _check("k", k, 1, integer=True)
    _check("max_iter", max_iter, 1, integer=True)
    _check("tol", tol, 0)
    if k > dim:
        raise ValueError(f"k must be <= the dimension {dim}, got {k}")
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    gen = _generator(generator)
    count = [0]

    def mv(v: Tensor) -> Tensor:
        count[0] += 1
        return matvec(v.to(device=device, dtype=dtype)).to(torch.float64).cpu()

    v0 = torch.randn(dim, generator=gen, device=gen.device).to(torch.float64).cpu()
    if method == "lanczos":
        return _lanczos(mv, dim, k, tol, max_iter, v0, count)
    values, vectors, converged = [], [], True
    for _ in range(k):
        v, lam, ok = v0, 0.0, False
        for _ in range(max_iter):
            for u in vectors:
                v = v - (u @ v) * u
            v = v / v.norm()
            hv = mv(v)
            new = float(v @ hv)
            for u in vectors:
                hv = hv - (u @ hv) * u
            ok = abs(new - lam) <= tol * abs(new)
            lam, v = new, (hv if hv.norm() > 0 else v)
            if ok:
                break
        converged &= ok
        for u in vectors:
            v = v - (u @ v) * u
        values.append(lam)
        vectors.append(v / v.norm())
        v0 = torch.randn(dim, generator=gen, device=gen.device).to(torch.float64).cpu()
    return _eig(values, vectors, count[0], converged, "largest_magnitude")


def _lanczos(mv, dim, k, tol, max_iter, v0, count) -> EigResult:
    if k >= dim:  # ARPACK needs k < dim; tiny operators are solved densely
        dense = torch.stack([mv(e) for e in torch.eye(dim, dtype=torch.float64)], dim=1)
        vals, vecs = torch.linalg.eigh(0.5 * (dense + dense.T))
        order = torch.argsort(vals, descending=True)[:k]
        return _eig([float(vals[i]) for i in order], [vecs[:, i].clone() for i in order], count[0], True,
                         "largest_algebraic")
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    op = LinearOperator((dim, dim), dtype=np.float64,
                        matvec=lambda x: mv(torch.from_numpy(np.asarray(x, dtype=np.float64).ravel())).numpy())
    try:
        with _one_blas_thread():
            vals, vecs = eigsh(op, k=k, which="LA", tol=tol, maxiter=max_iter, v0=v0.numpy(),
                               ncv=min(dim, max(2 * k + 1, 20)))
        converged = True
    except ArpackNoConvergence as err:
        vals, vecs, converged = err.eigenvalues, err.eigenvectors, False
    order = np.argsort(vals)[::-1]
    return _eig([float(vals[i]) for i in order], [torch.from_numpy(vecs[:, i].copy()) for i in order],
                count[0], converged, "largest_algebraic")


def _one_blas_thread():
    """ARPACK's BLAS threads spin between calls and starve torch's HVPs (5-10x slower on 2 cores); its vector
    operations are cheap, so run them on one thread when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# --------------------------------------------------------------------------------------- model-level API
def _model_matvec(model, loss_fn, data, params):
    op = _DatasetHVP(model, loss_fn, as_batches(data), params)
    return lambda v: _flat(op(_unflat(v, params)))


def hessian_trace(model: nn.Module, loss_fn: Callable, data, *, params=None, max_samples: int = 100,
                  min_samples: int = 10, tol: float = 1e-3, generator: torch.Generator | int | None = None) -> TraceEstimate:
    """Hutchinson estimate of tr ∇²L(w) for the full-data loss L = (1/N) Σ_b |b|·loss_fn(model(X_b), y_b)
    (see :func:`hutchinson_from_hvp`); ``params=None`` means every parameter with ``requires_grad``."""
    ps = trainable(model, params)
    with measuring(model, ps):
        dim = sum(p.numel() for p in ps)
        return hutchinson_from_hvp(_model_matvec(model, loss_fn, data, ps), dim, max_samples=max_samples,
                                   min_samples=min_samples, tol=tol, generator=generator, device=ps[0].device)


def top_eigenvalues(model: nn.Module, loss_fn: Callable, data, *, k: int = 1, method: str = "lanczos",
                    tol: float = 1e-3, max_iter: int = 100, params=None,
                    generator: torch.Generator | int | None = None) -> EigResult:
    """Top-k eigenvalues of ∇²L(w) for the full-data loss (see :func:`top_eigenvalues_from_hvp`)."""
    ps = trainable(model, params)
    with measuring(model, ps):
        dim = sum(p.numel() for p in ps)
        return top_eigenvalues_from_hvp(_model_matvec(model, loss_fn, data, ps), dim, k=k, method=method, tol=tol,
                                        max_iter=max_iter, generator=generator, device=ps[0].device)
