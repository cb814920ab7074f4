"""Fixtures of the ConEF claims (their common set-up): the digits data and models, per-process batches,
the analytic payload counts, the timing of the hook's own work on the public
:class:`~optimlab.comm.pipeline.BucketStep`, the step-time model, the sketch-contraction cells, and the NaN-aware
max and median of the verdicts (Li et al., arXiv:2312.08538).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import nn

from optimlab.comm import BucketStep, CommState, ConEFMemory, sketch, sketch_hash, unsketch
from optimlab.comm.simulate import flat_views
from optimlab.experiments._fixtures import make_mlp

__all__ = ["MODELS", "RB_RATIO", "START_ITER", "WORKERS", "analytic_counts", "contraction_cells", "digits_cnn",
           "digits_data", "digits_mlp", "max_nan", "median_nan_low", "modeled_step", "pipeline_seconds",
           "shard_batches", "synthetic_batch", "synthetic_mlp", "tensor_1024"]

WORKERS = 2  # run_local(world_size=2, backend="gloo"): a project choice that fits a 2-core CPU machine
RB_RATIO = 0.1  # Q is a 10% random block, the ratio of the authors' reference code
START_ITER = 10  # as in the authors' reference examples (their class and PyTorch's hook default to 1000)


def digits_data():
    """load_digits, X/16, train_test_split(test_size=0.25, stratify=y, random_state=0): 1,347 train, 450 test."""
    from optimlab.data import load_sklearn

    sp = load_sklearn("digits", test_size=0.25, seed=0, standardize=False)
    return sp.X_train / 16.0, sp.y_train, sp.X_test / 16.0, sp.y_test


def digits_mlp(seed: int) -> nn.Module:
    """MLP 64-256-256-10 (85,002 parameters)."""
    return make_mlp([64, 256, 256, 10], seed=seed)


def digits_cnn(seed: int) -> nn.Module:
    """conv 1→16 3×3 pad 1, conv 16→32 3×3 pad 1, fc 2048→10 (ReLUs between), on 1×8×8 digits."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2048, 10))


def synthetic_mlp(seed: int) -> nn.Module:
    """MLP 512-1024-1024-10 (1,585,162 parameters) on Gaussian inputs."""
    return make_mlp([512, 1024, 1024, 10], seed=seed)


def tensor_1024(seed: int) -> nn.Module:
    """One 1024×1024 weight (a bias-free linear layer) on Gaussian inputs: the largest single tensor of claim 1."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(1024, 1024, bias=False)


# name -> (constructor, input width)
MODELS = {"digits_mlp": (digits_mlp, 64), "digits_cnn": (digits_cnn, 64), "synthetic_mlp": (synthetic_mlp, 512),
          "tensor_1024": (tensor_1024, 1024)}


def shard_batches(n: int, process_rank: int, world_size: int, seed: int, epoch: int, batch: int = 32):
    """Epoch e uses the permutation seeded seed*1000+e; process r takes perm[r::N]; full batches of 32 only."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
    mine = perm[process_rank::world_size]
    n_batches = (n // world_size) // batch  # the same on every process
    return [mine[i * batch:(i + 1) * batch] for i in range(n_batches)]


def synthetic_batch(process_rank: int, step: int, n_in: int):
    """32 Gaussian inputs of width ``n_in`` and labels in 0..9, seeded by (process, step)."""
    g = torch.Generator().manual_seed(7919 * process_rank + step)
    return torch.randn(32, n_in, generator=g), torch.randint(10, (32,), generator=g)


def analytic_counts(model: nn.Module, ratio: float = RB_RATIO, rank: int = 2) -> tuple[int, int]:
    """(random-block payload, PowerSGD rank-r payload) per step, from the parameter shapes (claim 3):
    Σ max(1, ⌊ratio·d_t⌋) + vectors, and Σ (n+m)·r over compressed matrices + the uncompressed rest."""
    rb = ps = 0
    for p in model.parameters():
        if p.dim() < 2:
            rb += p.numel()
            ps += p.numel()
            continue
        n, m = p.shape[0], p.numel() // p.shape[0]
        rb += max(1, math.floor(ratio * n * m))
        r = min(rank, n, m)
        ps += (n + m) * r if (n + m) * r * 2 < n * m else n * m
    return rb, ps


def pipeline_seconds(state: CommState, grads: dict[str, torch.Tensor]) -> float:
    """Seconds the hook's own work takes on one worker for one bucket holding ``grads`` (compensate, compress,
    pack, decode, memory update: :class:`~optimlab.comm.pipeline.BucketStep`), with the collective replaced by the
    identity (world size 1)."""
    buffer, views = flat_views(grads)
    t0 = time.perf_counter()
    step = BucketStep(state, list(grads), views, buffer, state.iter, 0, 1)
    nxt = step.start()
    while nxt is not None:
        nxt = step.receive(nxt)
    dt = time.perf_counter() - t0
    state.end_step()
    return dt


def modeled_step(compute: float, hook: float, nbytes: float, collectives: int, n: int, gbps: float,
                 latency_s: float) -> float:
    """Seconds per step (claim 4's model): compute + hook + 2(N−1)/N·bytes/B + latency per collective."""
    return compute + hook + 2 * (n - 1) / n * nbytes * 8 / (gbps * 1e9) + latency_s * collectives


def contraction_cells(ms, ratios, rows: int,
                      generator: torch.Generator) -> tuple[list[str], list[float], list[float], list[float]]:
    """Claim 5's cells: for each m and sketch ratio s, ``rows`` Gaussian rows x (float64) and the
    fixed fmix32 hash, at λ = 0.1 and ``lam="auto"`` (``lam_for``: min(1/(1+κ), 2/max_b c_b)): (cell names,
    measured ‖λSᵀSx − x‖²/‖x‖², (1−λ)² + λ²κ, κ)."""
    cells, measured, predicted, kappas = [], [], [], []
    for m in ms:
        x = torch.randn(rows, m, generator=generator, dtype=torch.float64)
        xx = float((x * x).sum())
        for s in ratios:
            mem = ConEFMemory(ratio=s, lam="auto")
            w = mem.width(m)
            h, sign = sketch_hash(m, w)
            kappa = mem.kappa(m)
            table = sketch(x, h, sign, w).double()
            for lam_name, lam in (("0.1", 0.1), ("auto", mem.lam_for(m))):
                dec = unsketch(table, h, sign, torch.zeros_like(x), lam=lam)
                cells.append(f"m={m}/s={s}/lam={lam_name}")
                measured.append(float(((dec - x) ** 2).sum()) / xx)
                predicted.append((1 - lam) ** 2 + lam**2 * kappa)
                kappas.append(kappa)
    return cells, measured, predicted, kappas


def max_nan(values: Sequence[float]) -> float:
    """max, NaN as soon as any value is NaN (Python's max is order-dependent on NaN)."""
    values = [float(v) for v in values]
    return math.nan if any(math.isnan(v) for v in values) else max(values)


def median_nan_low(values: Sequence[float]) -> float:
    """Median in which NaN (a diverged run) ranks below every number; NaN when the middle value is NaN."""
    if not values:
        raise ValueError("values must be non-empty")
    order = sorted(values, key=lambda v: -math.inf if math.isnan(v) else v)
    n = len(order)
    mid = order[n // 2] if n % 2 else (order[n // 2 - 1] + order[n // 2]) / 2
    return float(mid)
