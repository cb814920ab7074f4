"""Vectorised float64 toys of Li, Zhang, He (NeurIPS 2024, arXiv:2410.14802, §4 and Apdx A.4) for the ``bar.*`` claims.

Every run of a claim advances one array of rows (method × α × seed × block) with closed-form gradients in numpy, so
SGD, SAM, nBAR and oBAR share the initialisation x0 = [0.2, −0.1, 0.3], y0 = −3x0, the noise stream (one
``numpy.random.Generator`` per (seed, block)), η = 1e-4 and T. SAM uses the same noise draw in both passes and one
global norm ε = ρ g/(‖g‖ + 1e-12) over every vector (as :class:`optimlab.sam.SAM`); nBAR/oBAR rescale each pair
by 1 ± c, c = μ0·m(t)·η, then take the SGD step with the gradient computed before the rescale (as
:class:`optimlab.lora.bar.BAR` over ``torch.optim.SGD``). tests/experiments/test_bar_toys.py pins one row of each to
those classes.

* NOP (claims 1, 3, 5): f = ‖x yᵀ − (A + α N_ξ)‖_F², A = diag(0.5, 0, 0), N_ξ = diag(1, 0.8, 0.5)·U_ξ, U_ξ iid N(0,1).
* OP (claims 2, 4): f = mean_i (xᵀy − (0.5 + α n_i))² over a batch of n_i ~ N(0, 1) (batch 1 in claim 2).
  ``"msam"`` perturbs each sample separately (m = batch chunks in the paper's eq. 38) and averages the gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

X0 = np.array([0.2, -0.1, 0.3])
Y0 = -3.0 * X0
A_NOP = np.diag([0.5, 0.0, 0.0])
D_NOP = np.array([1.0, 0.8, 0.5])
ETA = 1e-4
SAM_EPS = 1e-12
CHUNK = 500
METHODS = ("sgd", "sam", "nbar", "obar")

__all__ = ["ETA", "METHODS", "X0", "Y0", "ToyRun", "bal_gap", "op_hessian", "run_nop", "run_op"]


@dataclass(frozen=True)
class ToyRun:
    """``r[method]``: per (α, seed, block) the final |‖x‖² − ‖y‖²| / |‖x0‖² − ‖y0‖²|; ``curve[method]``: r at the
    ``steps`` recorded (axis 0); ``x``/``y``: final iterates by method, shape (α, seed, block, dim)."""

    r: dict[str, np.ndarray]
    curve: dict[str, np.ndarray]
    steps: np.ndarray
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]


def bal_gap(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|‖x‖² − ‖y‖²| over the last axis."""
    return np.abs((x * x).sum(-1) - (y * y).sum(-1))


def _linear(mu0: float, T: int, schedule: str):
    return (lambda t: mu0) if schedule == "constant" else (lambda t: mu0 * max(0.0, 1.0 - t / T))


def _bar_factors(kind: np.ndarray, nx2, ny2, wx2, wy2, c):
    """Per row (1 ± c, 1 ∓ c); kind 0 = SGD/SAM (factor 1), 1 = nBAR (grad norms), 2 = oBAR (weight norms)."""
    grow = np.where(kind == 1, nx2 >= ny2, ~(wx2 >= wy2))
    cc = np.where(kind == 0, 0.0, c)
    return np.where(grow, 1.0 + cc, 1.0 - cc), np.where(grow, 1.0 - cc, 1.0 + cc)


def run_nop(methods, alphas, seeds, *, T: int, rho: float = 0.1, mu0: float = 1.0, schedule: str = "constant",
            blocks: int = 1, lr: float = ETA, record: int = 200) -> ToyRun:
    """The NOP toy over rows (method, α, seed, block); ``blocks`` > 1 trains D independent copies jointly (their
    own noise; SAM's norm is global over all 2D vectors; BAR acts per block)."""
    Mn, Al, S, D = len(methods), len(alphas), len(seeds), blocks
    kind = np.array([{"sgd": 0, "sam": 0, "nbar": 1, "obar": 2}[m] for m in methods])[:, None, None, None]
    sam = [i for i, m in enumerate(methods) if m in ("sam",)]
    x = np.broadcast_to(X0, (Mn, Al, S, D, 3)).copy()
    y = np.broadcast_to(Y0, (Mn, Al, S, D, 3)).copy()
    alpha = np.asarray(alphas, dtype=np.float64)[None, :, None, None, None, None]
    rngs = [[np.random.default_rng([int(s), b]) for b in range(D)] for s in seeds]
    mult = _linear(mu0, T, schedule)
    base = bal_gap(X0, Y0)
    every = max(1, T // record)
    steps, curve = [], []
    for start in range(0, T, CHUNK):
        n = min(CHUNK, T - start)
        U = np.stack([np.stack([g.standard_normal((n, 3, 3)) for g in row], 1) for row in rngs], 1)  # n,S,D,3,3
        N = D_NOP[:, None] * U
        for k in range(n):
            t = start + k
            Mt = A_NOP + alpha * N[k]  # 1,Al,S,D,3,3
            R = x[..., :, None] * y[..., None, :] - Mt
            gx = 2.0 * (R * y[..., None, :]).sum(-1)
            gy = 2.0 * (R * x[..., :, None]).sum(-2)
            if sam:
                i = sam[0]
                norm = np.sqrt((gx[i] ** 2).sum((-1, -2)) + (gy[i] ** 2).sum((-1, -2)))[..., None, None]
                xs, ys = x[i] + rho * gx[i] / (norm + SAM_EPS), y[i] + rho * gy[i] / (norm + SAM_EPS)
                Rs = xs[..., :, None] * ys[..., None, :] - Mt[0]
                gx[i] = 2.0 * (Rs * ys[..., None, :]).sum(-1)
                gy[i] = 2.0 * (Rs * xs[..., :, None]).sum(-2)
            c = mult(t) * lr
            fx, fy = _bar_factors(kind, (gx * gx).sum(-1), (gy * gy).sum(-1), (x * x).sum(-1), (y * y).sum(-1), c)
            x = x * fx[..., None] - lr * gx
            y = y * fy[..., None] - lr * gy
            if (t + 1) % every == 0 or t + 1 == T:
                steps.append(t + 1)
                curve.append(bal_gap(x, y) / base)
    curve_arr = np.stack(curve)
    return ToyRun({m: curve_arr[-1, i] for i, m in enumerate(methods)},
                  {m: curve_arr[:, i] for i, m in enumerate(methods)}, np.array(steps),
                  {m: x[i] for i, m in enumerate(methods)}, {m: y[i] for i, m in enumerate(methods)})


def run_op(methods, alphas, seeds, *, T: int, rho: float = 0.2, batch: int = 1, lr: float = ETA,
           record: int = 200) -> ToyRun:
    """The OP toy over rows (method, α, seed); methods from ``"sgd"``, ``"sam"`` (one ε per batch) and ``"msam"``
    (one ε per sample, perturbed gradients averaged); every method sees the same batches."""
    Mn, Al, S = len(methods), len(alphas), len(seeds)
    x = np.broadcast_to(X0, (Mn, Al, S, 1, 3)).copy()
    y = np.broadcast_to(Y0, (Mn, Al, S, 1, 3)).copy()
    alpha = np.asarray(alphas, dtype=np.float64)[None, :, None, None]
    rngs = [np.random.default_rng([int(s), 0]) for s in seeds]
    base = bal_gap(X0, Y0)
    every = max(1, T // record)
    steps, curve = [], []
    for start in range(0, T, CHUNK):
        n = min(CHUNK, T - start)
        noise = np.stack([g.standard_normal((n, batch)) for g in rngs], 1)  # n,S,batch
        for k in range(n):
            t = start + k
            a = 0.5 + alpha * noise[k][None, None]  # 1,Al,S,batch
            gxs, gys = np.empty_like(x), np.empty_like(y)
            for i, m in enumerate(methods):
                xi, yi = x[i], y[i]  # Al,S,1,3
                res = (xi * yi).sum(-1) - a[0]  # Al,S,batch
                if m == "sgd":
                    fp = 2.0 * res.mean(-1, keepdims=True)
                    gxs[i], gys[i] = fp[..., None] * yi, fp[..., None] * xi
                    continue
                if m == "sam":
                    fp = 2.0 * res.mean(-1, keepdims=True)[..., None]  # Al,S,1,1
                else:
                    fp = 2.0 * res[..., None]  # per sample: Al,S,batch,1
                gx, gy = fp * yi, fp * xi
                norm = np.sqrt((gx * gx).sum(-1, keepdims=True) + (gy * gy).sum(-1, keepdims=True))
                xs, ys = xi + rho * gx / (norm + SAM_EPS), yi + rho * gy / (norm + SAM_EPS)
                res_s = (xs * ys).sum(-1) - a[0]  # Al,S,batch (SAM: one perturbed point; m-SAM: one per sample)
                if m == "sam":
                    fps = 2.0 * res_s.mean(-1, keepdims=True)[..., None]
                    gxs[i], gys[i] = fps * ys, fps * xs
                else:
                    fps = 2.0 * res_s[..., None]
                    gxs[i] = (fps * ys).mean(-2, keepdims=True)
                    gys[i] = (fps * xs).mean(-2, keepdims=True)
            x = x - lr * gxs
            y = y - lr * gys
            if (t + 1) % every == 0 or t + 1 == T:
                steps.append(t + 1)
                curve.append(bal_gap(x, y) / base)
    curve_arr = np.stack(curve)
    return ToyRun({m: curve_arr[-1, i] for i, m in enumerate(methods)},
                  {m: curve_arr[:, i] for i, m in enumerate(methods)}, np.array(steps),
                  {m: x[i, ..., 0, :] for i, m in enumerate(methods)}, {m: y[i, ..., 0, :] for i, m in enumerate(methods)})


def op_hessian(x: np.ndarray, y: np.ndarray, target: float = 0.5) -> np.ndarray:
    """The 6×6 Hessian of (xᵀy − target)² at (x, y): 2vvᵀ + 2(xᵀy − target)J, v = (y, x), J = [[0, I], [I, 0]]."""
    v = np.concatenate([y, x])
    J = np.block([[np.zeros((3, 3)), np.eye(3)], [np.eye(3), np.zeros((3, 3))]])
    return 2.0 * np.outer(v, v) + 2.0 * (x @ y - target) * J
