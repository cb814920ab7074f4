"""Data-parallel ZO with seeds and scalars only: 2 gloo processes on localhost, all checks in one spawn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimlab.distributed import run_local
from optimlab.zo import ZOSGD

N_IN = 5


def _data(n=16):
    g = torch.Generator().manual_seed(11)
    return torch.randn(n, N_IN, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)


def _param():
    return nn.Parameter(torch.linspace(-1, 1, N_IN, dtype=torch.float64))


def _loss(p, X, y):
    return ((X @ p).tanh() - y).square().mean()


def _single(steps, X, y, **kw):
    p = _param()
    opt = ZOSGD([p], lr=0.1, eps=1e-2, perturb="swap", **kw)
    for _ in range(steps):
        opt.step(lambda: _loss(p, X, y))
    return p.detach()


def _worker(rank, world):
    import torch.distributed as dist

    X, y = _data()
    out = {}
    half = X.shape[0] // world
    Xs, ys = X[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half]
    # shared: equal shards
    p = _param()
    opt = ZOSGD([p], lr=0.1, eps=1e-2, perturb="swap", distributed="shared", checksum_every=5)
    for _ in range(20):
        opt.step(lambda: _loss(p, Xs, ys))
    out["shared"] = p.detach().clone()
    from optimlab.metrics.collectives import count_collectives

    with count_collectives() as c:  # one step without a checksum: only the loss vector travels
        opt.step(lambda: _loss(p, Xs, ys))
    out["bytes_per_step"] = c.nbytes
    # per_process: own directions, all applied everywhere
    p = _param()
    opt = ZOSGD([p], lr=0.1, eps=1e-2, perturb="swap", distributed="per_process")
    hs = []
    for _ in range(5):
        opt.step(lambda: _loss(p, Xs, ys))
        hs.append(opt.last_step.proj_grad)
    out["per_process"] = p.detach().clone()
    out["per_process_dirs"] = [[opt.regenerate(t, 0, r)[0] for r in range(world)] for t in range(5)]
    out["per_process_h"] = hs
    # unequal shards with (loss, n) closures
    cut = 5 if rank == 0 else X.shape[0]
    lo = 0 if rank == 0 else 5
    Xu, yu = X[lo:cut], y[lo:cut]
    p = _param()
    opt = ZOSGD([p], lr=0.1, eps=1e-2, perturb="swap", distributed="shared")
    for _ in range(20):
        opt.step(lambda: (_loss(p, Xu, yu), Xu.shape[0]))
    out["unequal"] = p.detach().clone()
    # a differing seed at construction raises
    try:
        ZOSGD([_param()], seed=rank, distributed="shared")
        out["seed_error"] = ""
    except ValueError as e:
        out["seed_error"] = str(e)
    # differing weights at construction raise
    try:
        ZOSGD([nn.Parameter(torch.full((3,), float(rank)))], distributed="shared")
        out["weight_error"] = ""
    except RuntimeError as e:
        out["weight_error"] = str(e)
    # a manual change on one replica is caught by checksum_every
    p = _param()
    opt = ZOSGD([p], lr=0.1, distributed="shared", perturb="swap", checksum_every=2)
    opt.step(lambda: _loss(p, Xs, ys))
    if rank == 1:
        with torch.no_grad():
            p[0] += 1.0
    try:
        opt.step(lambda: _loss(p, Xs, ys))
        out["checksum_error"] = ""
    except RuntimeError as e:
        out["checksum_error"] = str(e)
    dist.barrier()
    return out


@pytest.fixture(scope="module")
def results():
    return run_local(_worker, world_size=2, timeout=120)


def test_shared_replicas_equal_single_process_on_the_full_batch(results):
    a, b = results
    assert torch.equal(a["shared"], b["shared"])
    X, y = _data()
    ref = _single(20, X, y)
    assert torch.allclose(a["shared"], ref, rtol=1e-12, atol=1e-14)


def test_shared_mode_sends_16q_plus_8_bytes_per_step(results):
    assert results[0]["bytes_per_step"] == 16 * 1 + 8  # versus 4·d bytes for a gradient all-reduce


def test_per_process_replicas_equal_the_sum_over_both_processes_directions(results):
    a, b = results
    assert torch.equal(a["per_process"], b["per_process"])
    p = _param().detach().clone()
    for t in range(5):
        hs = a["per_process_h"][t]  # proj_grad over (process, direction), the same on both processes
        assert hs == b["per_process_h"][t]
        g = sum(h * w for h, w in zip(hs, a["per_process_dirs"][t])) / len(hs)
        p = p - 0.1 * g
    assert torch.allclose(a["per_process"], p, rtol=1e-12, atol=1e-14)


def test_unequal_shards_with_counts_equal_the_concatenated_batch(results):
    a, b = results
    assert torch.equal(a["unequal"], b["unequal"])
    X, y = _data()
    assert torch.allclose(a["unequal"], _single(20, X, y), rtol=1e-12, atol=1e-14)


def test_mismatches_are_caught(results):
    for r in results:
        assert "seed" in r["seed_error"]
        assert "replicas differ at construction" in r["weight_error"]
        assert "replicas differ at step 1" in r["checksum_error"]


def test_distributed_without_a_group_raises():
    with pytest.raises(ValueError, match="distributed"):
        ZOSGD([_param()], distributed="per_process")
