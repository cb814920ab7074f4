"""Synthetic LoRA tasks shared by the ``nora.lora_*`` and ``reflora.*`` claims.

Teacher–student task (fixed before any run): d = 256; W0 = U diag(3·0.9^k) Vᵀ (U, V Haar); ΔW* = U* diag(1, .7, .5, .3)
V*ᵀ with U* Haar and V* = V[:, :4] ("aligned": the target moves W0's dominant input directions, NoRA's premise) or
Haar ("random"). Inputs x = Σ_x z with Σ_x = Q diag(linspace(0.2, 2, 256)) Qᵀ, 4096 for training and 1024 held out
(drawn apart); targets (W0 + ΔW*) x. One :class:`~optimlab.lora.LoRALinear` on W0 (no bias), r = α = 8, loss
½‖y − t‖² averaged over the batch; batch 64, AdamW (weight decay 0), cosine to 0 over T steps. Metric
‖sBA − ΔW*‖_F/‖ΔW*‖_F. Every method of a seed sees the same data, data order, and (where it uses one) the same
Kaiming draw for A; the seed fixes all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from optimlab.lora import LoRALinear, find_lora_pairs
from optimlab.lora.nora import nora_init_
from optimlab.lora.noraplus import NoRAPlus
from optimlab.lora.reflora import RefLoRA

D, R, N_TRAIN, N_HELD, BATCH = 256, 8, 4096, 1024, 64
TARGET_SV = (1.0, 0.7, 0.5, 0.3)
LRS = (3e-3, 1e-2, 3e-2)


def _haar(n: int, g: torch.Generator) -> Tensor:
    Q, Rm = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(Rm))


@dataclass
class Task:
    W0: Tensor
    dW: Tensor
    x: Tensor
    t: Tensor
    x_held: Tensor
    t_held: Tensor
    order: Tensor  # (steps, BATCH) indices


def teacher_student(seed: int, target: str, steps: int, d: int = D) -> Task:
    """The task of the module docstring (float32 tensors; ``target`` is ``"aligned"`` or ``"random"``)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    U, V, Us, Q = (_haar(d, g) for _ in range(4))
    W0 = (U * (3.0 * 0.9 ** torch.arange(d, dtype=torch.float64))) @ V.T
    Vs = V[:, :4] if target == "aligned" else _haar(d, g)[:, :4]
    dW = (Us[:, :4] * torch.tensor(TARGET_SV, dtype=torch.float64)) @ Vs.T
    cov_root = (Q * torch.linspace(0.2, 2.0, d, dtype=torch.float64)) @ Q.T
    x = torch.randn(N_TRAIN, d, generator=g, dtype=torch.float64) @ cov_root
    gh = torch.Generator().manual_seed(20_000 + seed)  # held-out inputs, seeded apart
    xh = torch.randn(N_HELD, d, generator=gh, dtype=torch.float64) @ cov_root
    W = W0 + dW
    order = torch.stack([torch.randperm(N_TRAIN, generator=g)[:BATCH] for _ in range(steps)])
    f = torch.float32
    return Task(W0.to(f), dW.to(f), x.to(f), (x @ W.T).to(f), xh.to(f), (xh @ W.T).to(f), order)


def lora_layer(task: Task, seed: int, init: str, sigma: float = 0.1) -> LoRALinear:
    d = task.W0.shape[0]
    layer = LoRALinear(d, d, r=R, alpha=R, bias=False, generator=seed)
    with torch.no_grad():
        layer.base_layer.weight.copy_(task.W0)
    if init == "nora":
        nora_init_(layer, sigma=sigma, generator=seed)
    return layer


def make_optimizer(layer: LoRALinear, method: str, lr: float, warmup: int = 10):
    params = [p for p in layer.parameters() if p.requires_grad]
    base = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if method in ("lora", "nora"):
        return base
    if method in ("noraplus", "noraplus-riemannian"):
        return NoRAPlus(layer, base, preset="nora" if method == "noraplus" else "riemannian")
    if method in ("reflora", "reflora-s"):
        return RefLoRA(layer, base, mode="matrix" if method == "reflora" else "scalar", warmup_steps=warmup)
    raise ValueError(f"unknown method {method!r}")


def loss_of(layer: LoRALinear, x: Tensor, t: Tensor) -> Tensor:
    return 0.5 * (layer(x) - t).square().sum(dim=1).mean()


def rel_error(layer: LoRALinear, task: Task) -> float:
    (pair,) = find_lora_pairs(layer)
    with torch.no_grad():
        return float(torch.linalg.matrix_norm(pair.delta_weight() - task.dW) / torch.linalg.matrix_norm(task.dW))


@dataclass
class Run:
    error: float
    held_loss: float
    train_loss: float
    checkpoints: list[tuple[int, float, Tensor, Tensor]]  # (step, full-batch train loss, A, B)


def train(task: Task, seed: int, method: str, lr: float, *, init: str | None = None, sigma: float = 0.1,
          checkpoint_every: int = 0, warmup: int = 10) -> Run:
    """One run of ``method`` (``lora``, ``nora``, ``noraplus``, ``noraplus-riemannian``, ``reflora``, ``reflora-s``);
    the NoRA-based methods start from the NoRA init, the others from PEFT's (override with ``init``)."""
    init = init or ("nora" if method.startswith(("nora", "noraplus")) else "peft")
    layer = lora_layer(task, seed, init, sigma)
    opt = make_optimizer(layer, method, lr, warmup)
    steps = task.order.shape[0]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.0)
    (pair,) = find_lora_pairs(layer)
    cps = []
    for k in range(steps):
        idx = task.order[k]
        opt.zero_grad(set_to_none=True)
        loss = loss_of(layer, task.x[idx], task.t[idx])
        if not math.isfinite(float(loss.detach())):
            break
        loss.backward()
        opt.step()
        sched.step()
        if checkpoint_every and (k + 1) % checkpoint_every == 0:
            with torch.no_grad():
                full = float(loss_of(layer, task.x, task.t))
            cps.append((k + 1, full, pair.A.detach().clone(), pair.B.detach().clone()))
    with torch.no_grad():
        held = float(loss_of(layer, task.x_held, task.t_held))
        full = float(loss_of(layer, task.x, task.t))
    err = rel_error(layer, task)
    if not math.isfinite(held):
        err = held = math.inf
    return Run(err, held, full, cps)


def select_lr(runs: dict[float, list[Run]]) -> float:
    """The lr whose median held-out loss is lowest (the metric never selects)."""
    def med(lr):
        vals = sorted(r.held_loss for r in runs[lr])
        return vals[len(vals) // 2] if len(vals) % 2 else 0.5 * (vals[len(vals) // 2 - 1] + vals[len(vals) // 2])
    return min(runs, key=med)


def median(values) -> float:
    v = sorted(float(x) for x in values)
    if not v:
        return math.nan
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
