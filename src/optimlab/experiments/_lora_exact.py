"""Exact and matrix-factorisation experiments of the ``reflora.*`` claims (float64; arXiv:2505.18877, PEFT letters).

* :func:`consistency_trial`: one trial of claim ``reflora.consistent_balanced`` (r = 8, d_in = 64, d_out = 48).
* :func:`flat_pair`: claim ``reflora.flatter`` (a): top Hessian eigenvalue at zero residual before/after balancing.
* :func:`mf_run`: claim ``reflora.mf_convergence``: ½‖BA − T‖² by RefLoRA-SGD, plain SGD or ScaledGD.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from optimlab.lora import LoRALinear
from optimlab.lora.reflora import RefLoRA, refactor_
from optimlab.matfac import ScaledGD
from optimlab.metrics.hessian import hvp, top_eigenvalues_from_hvp

D64 = torch.float64


def pair_layer(A: Tensor, B: Tensor) -> LoRALinear:
    """A LoRALinear (s = 1, zero base, no bias) holding copies of (A, B) in float64."""
    r, d_in = A.shape
    layer = LoRALinear(d_in, B.shape[0], r=r, alpha=r, bias=False, generator=0).to(D64)
    with torch.no_grad():
        layer.base_layer.weight.zero_()
        layer.lora_A["default"].weight.copy_(A)
        layer.lora_B["default"].weight.copy_(B)
    return layer


def factors(layer: LoRALinear) -> tuple[Tensor, Tensor]:
    return layer.lora_A["default"].weight, layer.lora_B["default"].weight


def _rel(x: Tensor, y: Tensor) -> float:
    return float(torch.linalg.matrix_norm(x - y) / torch.linalg.matrix_norm(y))


def _sgd_step(A: Tensor, B: Tensor, G: Tensor, lr: float, method: str) -> Tensor:
    """One SGD step on <G, BA> (so ∂ℓ/∂W = G) by ``method`` (``reflora``, ``reflora-s`` or ``plain``); returns
    (BA, A, B) after the step."""
    layer = pair_layer(A, B)
    a, b = factors(layer)
    base = torch.optim.SGD([a, b], lr=lr)
    opt = base if method == "plain" else RefLoRA(layer, base, mode="matrix" if method == "reflora" else "scalar",
                                                 warmup_steps=0)
    opt.zero_grad()
    (G * (b @ a)).sum().backward()
    opt.step()
    return (b @ a).detach(), a.detach(), b.detach()


def consistency_trial(seed: int, lr: float = 1e-3, r: int = 8, d_in: int = 64, d_out: int = 48) -> dict[str, float]:
    """Every number of claim 4's checks for one trial (random A, B, G and P with cond(P) = 1e3)."""
    g = torch.Generator().manual_seed(60_000 + seed)
    A, B = torch.randn(r, d_in, generator=g, dtype=D64), torch.randn(d_out, r, generator=g, dtype=D64)
    G = torch.randn(d_out, d_in, generator=g, dtype=D64)
    U, _ = torch.linalg.qr(torch.randn(r, r, generator=g, dtype=D64))
    V, _ = torch.linalg.qr(torch.randn(r, r, generator=g, dtype=D64))
    P = U @ torch.diag(torch.logspace(0, -3, r, dtype=D64)) @ V.T
    A2, B2 = P.T @ A, B @ torch.linalg.inv(P).T
    out = {}
    w1, w2 = _sgd_step(A, B, G, lr, "reflora")[0], _sgd_step(A2, B2, G, lr, "reflora")[0]
    out["p_invariance"] = _rel(w2, w1)
    out["plain_deviation"] = _rel(_sgd_step(A2, B2, G, lr, "plain")[0], _sgd_step(A, B, G, lr, "plain")[0])
    dW = B @ A
    U, sv_all, Vh = torch.linalg.svd(dW, full_matrices=False)  # rank r: the square roots from the top-r triplets
    left, right = (U[:, :r] * sv_all[:r]) @ U[:, :r].T, (Vh[:r].T * sv_all[:r]) @ Vh[:r]
    want = dW - lr * (left @ G + G @ right) + lr**2 * G @ dW.T @ G
    out["closed_form"] = _rel(w1, want)
    a, b = A.clone(), B.clone()
    refactor_(a, b)
    GA, GB = a @ a.T, b.T @ b
    sv = torch.linalg.svdvals(dW)[:r]
    out["balance"] = _rel(GA, GB)
    out["diagonal"] = float((torch.diagonal(GA).sort(descending=True).values - sv).abs().max() / sv[0])
    nuclear = float(sv.sum())
    energy = float(a.square().sum() + b.square().sum())
    out["energy"] = abs(energy - 2 * nuclear) / (2 * nuclear)
    excess = -math.inf
    for _ in range(5):
        Q = torch.randn(r, r, generator=g, dtype=D64)
        e = float((Q.T @ A).square().sum() + (B @ torch.linalg.inv(Q).T).square().sum())
        excess = max(excess, (energy - e) / e)
    out["energy_minimal"] = excess
    plain_w = _sgd_step(A, B, G, lr, "plain")[0]
    scal_w, sa, sb = _sgd_step(A, B, G, lr, "reflora-s")
    out["scalar_product"] = _rel(scal_w, plain_w)
    na, nb = float(sa.norm()), float(sb.norm())
    out["scalar_norms"] = abs(na - nb) / na
    return out


def flat_pair(seed: int, r: int = 4, d_in: int = 16, d_out: int = 20) -> dict[str, float]:
    """Claim 5 (a): an imbalanced pair (B·10^u, A/10^u) at zero residual of ½‖BA − T‖², T = BA (s = 1); the top
    Hessian eigenvalue in (A, B) (Lanczos on exact Hessian-vector products) before and after :func:`refactor_`."""
    g = torch.Generator().manual_seed(70_000 + seed)
    scale = 10 ** (1 + torch.rand(1, generator=g, dtype=D64).item())
    A = torch.randn(r, d_in, generator=g, dtype=D64) / scale
    B = torch.randn(d_out, r, generator=g, dtype=D64) * scale
    T = B @ A

    def top(A: Tensor, B: Tensor) -> float:
        a, b = A.clone().requires_grad_(True), B.clone().requires_grad_(True)

        def loss():
            return 0.5 * (b @ a - T).square().sum()

        def mv(v: Tensor) -> Tensor:
            va, vb = v[:a.numel()].view_as(a), v[a.numel():].view_as(b)
            return torch.cat([h.reshape(-1) for h in hvp(loss, [a, b], [va, vb])])

        res = top_eigenvalues_from_hvp(mv, a.numel() + b.numel(), k=1, method="lanczos", tol=1e-12, max_iter=300,
                                       generator=seed)
        return float(res.values[0])

    before = top(A, B)
    a, b = A.clone(), B.clone()
    refactor_(a, b)
    after = top(a, b)
    s1 = float(torch.linalg.svdvals(T)[0])
    return {"before": before, "after": after, "two_sigma1": 2 * s1}


def mf_problem(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Target 60×40 of rank 4 with singular values 10·geomspace(1, 1/20, 4); init entries N(0, 0.1²)."""
    g = torch.Generator().manual_seed(80_000 + seed)
    U, _ = torch.linalg.qr(torch.randn(60, 4, generator=g, dtype=D64))
    V, _ = torch.linalg.qr(torch.randn(40, 4, generator=g, dtype=D64))
    sv = torch.tensor([10.0 * (1 / 20) ** (k / 3) for k in range(4)], dtype=D64)
    T = (U * sv) @ V.T
    B0 = 0.1 * torch.randn(60, 4, generator=g, dtype=D64)
    A0 = 0.1 * torch.randn(4, 40, generator=g, dtype=D64)
    return T, A0, B0


def mf_run(T: Tensor, A0: Tensor, B0: Tensor, method: str, lr: float, max_iter: int, *, tol: float = 1e-3,
           min_iter: int = 0) -> list[float]:
    """Relative errors ‖BA − T‖_F/‖T‖_F (iteration 0 first) of ``method`` in {``reflora``, ``gd``, ``scaledgd``};
    stops after ``min_iter`` once below ``tol``, or on divergence (error > 1e6 or non-finite)."""
    layer = pair_layer(A0, B0)
    a, b = factors(layer)
    if method == "scaledgd":
        X, Y = b, a.detach().T.clone().requires_grad_(True)  # X ≡ B, Y ≡ Aᵀ
        opt = ScaledGD([X, Y], lr=lr, symmetric=False)

        def product():
            return X @ Y.T
    else:
        base = torch.optim.SGD([a, b], lr=lr)
        opt = RefLoRA(layer, base, warmup_steps=0) if method == "reflora" else base

        def product():
            return b @ a
    tn = float(torch.linalg.matrix_norm(T))
    errs = []
    for k in range(max_iter + 1):
        with torch.no_grad():
            err = float(torch.linalg.matrix_norm(product() - T)) / tn
        errs.append(err)
        if not math.isfinite(err) or err > 1e6 or (k >= min_iter and err < tol) or k == max_iter:
            break
        opt.zero_grad()
        (0.5 * (product() - T).square().sum()).backward()
        opt.step()
    return errs


def iterations_to(errs: list[float], tol: float = 1e-3) -> float:
    """First iteration with error < tol (inf if never)."""
    return next((float(k) for k, e in enumerate(errs) if e < tol), math.inf)
