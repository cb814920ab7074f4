"""The DDP hook on gloo (2 and 3 local processes), SimulatedGroup, aggregate, checkpoints.

Spawning costs seconds per call, so the multi-process checks are grouped: one 2-process suite, one 2-process
checkpoint reload and one 3-process suite, each bounded by ``run_local``'s timeout. The single-process checks of
the same pipeline are in test_simulate.py, the launcher's own tests in tests/test_distributed.py.
"""

import copy
import math
import os
import pickle

import pytest
import torch
from test_simulate import random_grads
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP

from optimlab._random import counter_generator
from optimlab.comm import (
    QSGD,
    CommState,
    ConEFMemory,
    CountSketch,
    EFMemory,
    Identity,
    NoMemory,
    PowerSGD,
    RandomBlock,
    RandomK,
    ScaledSign,
    SimulatedGroup,
    TopK,
    aggregate,
    comm_hook,
    register_hook,
)
from optimlab.distributed import run_local

TIMEOUT = 150


# ----------------------------------------------------------------------------------------------------------------
# Helpers used in the worker processes (module level, so that spawn can import them)
# ----------------------------------------------------------------------------------------------------------------
def _small(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def _digits_mlp(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def _batch(process_rank, step, n_in=16, n_out=4):
    g = torch.Generator().manual_seed(1000 * process_rank + step)
    return torch.randn(32, n_in, generator=g), torch.randint(n_out, (32,), generator=g)


def _configs():
    return {
        "randomblock+conef": lambda: CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=2),
        "randomk+ef": lambda: CommState(RandomK(0.1), EFMemory(), start_iter=2),
        "countsketch+conef": lambda: CommState(CountSketch(0.2, lam=0.1), ConEFMemory(0.2, 0.1), start_iter=2),
        "powersgd+ef": lambda: CommState(PowerSGD(2), EFMemory(), start_iter=2),
        "powersgd+conef-local": lambda: CommState(PowerSGD(1), ConEFMemory(0.5, 0.2), start_iter=2,
                                                  residual="local"),
        "topk+ef": lambda: CommState(TopK(0.1), EFMemory(), start_iter=2, communicator="allgather"),
        "scaledsign": lambda: CommState(ScaledSign(), NoMemory(), start_iter=2, communicator="allgather"),
        "qsgd+ef": lambda: CommState(QSGD(), EFMemory(), start_iter=2, communicator="allgather"),
    }


def _train(ddp, opt, process_rank, steps, start=0, record=None, n_in=16, n_out=4):
    for t in range(start, start + steps):
        x, y = _batch(process_rank, t, n_in, n_out)
        if record is not None:  # this process's raw gradient, from a copy of the module
            twin = copy.deepcopy(ddp.module)
            nn.functional.cross_entropy(twin(x), y).backward()
            record["raw"].append({n: p.grad.clone() for n, p in twin.named_parameters()})
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        if record is not None:
            record["avg"].append({n: p.grad.clone() for n, p in ddp.module.named_parameters()})
        opt.step()


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _suite_n(process_rank, world_size, ckpt_dir):
    """Everything that needs N live processes, in one spawn; returns plain results for the parent to check."""
    out = {"process_rank": process_rank}
    # 1. Identity + NoMemory (after start_iter) against PyTorch's allreduce_hook, and against no hook at all.
    models = {}
    for kind in ("ours", "pytorch", "nohook"):
        m = _small(1)
        ddp = DDP(m)
        if kind == "ours":
            register_hook(ddp, CommState(Identity(), NoMemory(), start_iter=2))
        elif kind == "pytorch":
            ddp.register_comm_hook(None, allreduce_hook)
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.1), process_rank, 6)
        models[kind] = _params(m)
    out["identity_vs_allreduce"] = max(float((a - b).abs().max()) for a, b in zip(models["ours"], models["pytorch"]))
    out["identity_vs_nohook"] = max(float((a - b).abs().max()) for a, b in zip(models["ours"], models["nohook"]))
    # 2. After 30 compressed steps, replicas identical for every compressor.
    out["replicas"] = {}
    for name, make in _configs().items():
        if world_size == 3 and name not in ("randomblock+conef", "topk+ef", "powersgd+ef", "qsgd+ef"):
            continue
        m = _small(2)
        ddp = DDP(m)
        state = register_hook(ddp, make())
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), process_rank, 32)
        out["replicas"][name] = (_params(m), state.stats["compressed_steps"])
    if world_size != 2:
        return out
    # 3. Hook output against SimulatedGroup on the same raw gradients.
    out["records"] = {}
    for name in ("randomblock+conef", "powersgd+ef", "topk+ef"):
        m = _small(3)
        ddp = DDP(m)
        register_hook(ddp, _configs()[name]())
        rec = {"raw": [], "avg": []}
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), process_rank, 8, record=rec)
        out["records"][name] = rec
    # 4. gradient_as_bucket_view True/False give identical parameters.
    views = []
    for as_view in (True, False):
        m = _small(4)
        ddp = DDP(m, gradient_as_bucket_view=as_view)
        register_hook(ddp, CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=2))
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), process_rank, 8)
        views.append(_params(m))
    out["bucket_view_equal"] = all(torch.equal(a, b) for a, b in zip(*views))
    # 5. Bucket rebuild with a compressor active from iteration 0 (register_hook keys memory by name).
    m = _digits_mlp()
    ddp = DDP(m, bucket_cap_mb=0.1)
    state = register_hook(ddp, CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=0))
    sizes = []
    for t in range(3):
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), process_rank, 1, start=t, n_in=64, n_out=10)
        sizes.append(state.stats["last_step"]["bucket_numels"])
    out["rebuild"] = {"sizes": sizes, "keys": sorted(state.memory.keys()),
                      "compressed": state.stats["compressed_steps"]}
    # 6. A bare registration keys memory by bucket and needs start_iter >= 2.
    m = _small(5)
    ddp = DDP(m)
    ddp.register_comm_hook(CommState(RandomBlock(0.1), EFMemory(), start_iter=0), comm_hook)
    try:
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), process_rank, 1)
        out["bare"] = "no error"
    except ValueError as e:
        out["bare"] = str(e)
    m = _small(5)
    ddp = DDP(m)
    bare = CommState(RandomBlock(0.1), EFMemory(), start_iter=2)
    ddp.register_comm_hook(bare, comm_hook)
    _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), process_rank, 4)
    out["bare_keys"] = sorted(bare.memory.keys())
    # 7. Non-finite gradient on process 0 at a coordinate the random block does not send.
    m = _small(6)
    ddp = DDP(m)
    state = register_hook(ddp, CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=2, seed=3))
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    _train(ddp, opt, process_rank, 4)
    w = m[2].weight
    d, k = w.numel(), RandomBlock(0.1).k(w.shape)
    u = RandomBlock(0.1)._indices(d, k, counter_generator(3, state.iter, "2.weight"))
    bad = (u + k) % d
    before = {key: v.clone() for key, v in state.memory.state_dict()["tables"].items()}

    def poison(g):
        g = g.clone()
        g.view(-1)[bad] = math.inf
        return g

    handle = w.register_hook(poison) if process_rank == 0 else None
    x, y = _batch(process_rank, 99)
    opt.zero_grad()
    nn.functional.cross_entropy(ddp(x), y).backward()
    out["nan_output_nonfinite"] = not bool(torch.isfinite(w.grad).all())
    out["nan_memory_unchanged"] = all(torch.equal(before[k_], v) for k_, v in
                                      state.memory.state_dict()["tables"].items())
    if handle is not None:
        handle.remove()
    _train(ddp, opt, process_rank, 1, start=100)  # skip the poisoned step (no opt.step above); the next one is finite
    out["nan_next_finite"] = all(bool(torch.isfinite(p.grad).all()) for p in m.parameters())
    out["nan_next_memory_changed"] = any(not torch.equal(before[k_], v) for k_, v in
                                         state.memory.state_dict()["tables"].items())
    # 8. aggregate() over the process group, without DDP: the parent compares it with SimulatedGroup.
    agg_state = CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=1)
    out["aggregate"] = []
    for t in range(3):
        grads = random_grads(50 * process_rank + t)
        inputs = {k: v.clone() for k, v in grads.items()}
        aggregate(grads, agg_state)
        out["aggregate"].append((inputs, grads))
    # 9. Checkpoint: 15 steps, save, 10 more (the reload happens in fresh processes).
    for name in ("randomblock+conef", "powersgd+ef"):
        m = _small(7)
        ddp = DDP(m)
        state = register_hook(ddp, CommState(*_ckpt_parts(name), start_iter=10))
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        _train(ddp, opt, process_rank, 15)
        torch.save({"model": m.state_dict(), "opt": opt.state_dict(), "comm": state.state_dict()},
                   os.path.join(ckpt_dir, f"{name}-{process_rank}.pt"))
        _train(ddp, opt, process_rank, 10, start=15)
        out[f"ckpt_{name}"] = _params(m)
    out["pickle_drops_group"] = pickle.loads(pickle.dumps(state)).process_group is None
    return out


def _ckpt_parts(name):
    return (RandomBlock(0.1), ConEFMemory(0.2, 0.1)) if name == "randomblock+conef" else (PowerSGD(2), EFMemory())


def _reload(process_rank, world_size, ckpt_dir):
    out = {}
    for name in ("randomblock+conef", "powersgd+ef"):
        ck = torch.load(os.path.join(ckpt_dir, f"{name}-{process_rank}.pt"))
        m = _small(99)
        m.load_state_dict(ck["model"])
        ddp = DDP(m, bucket_cap_mb=0.001)  # another bucket layout: name-keyed state does not care
        state = register_hook(ddp, CommState(*_ckpt_parts(name), start_iter=10))
        state.load_state_dict(ck["comm"])
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        opt.load_state_dict(ck["opt"])
        _train(ddp, opt, process_rank, 10, start=15)
        out[name] = _params(m)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Multi-process tests
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    res = run_local(_suite_n, world_size=2, args=(str(ckpt),), timeout=TIMEOUT)
    return res, ckpt


def test_results_come_back_in_process_order(two):
    res, _ = two
    assert [r["process_rank"] for r in res] == [0, 1]


def test_identity_equals_pytorch_allreduce_hook_bitwise(two):
    res, _ = two
    for r in res:
        assert r["identity_vs_allreduce"] == 0.0
        assert r["identity_vs_nohook"] < 1e-6  # divide by N exactly once


def test_replicas_identical_after_compressed_steps(two):
    res, _ = two
    for name, (params0, compressed) in res[0]["replicas"].items():
        params1, _ = res[1]["replicas"][name]
        assert compressed == 30, name
        assert all(torch.equal(a, b) for a, b in zip(params0, params1)), name


@pytest.mark.parametrize("name", ["randomblock+conef", "powersgd+ef", "topk+ef"])
def test_hook_equals_simulated_group(two, name):
    res, _ = two
    recs = [r["records"][name] for r in res]
    sim = SimulatedGroup(2, _configs()[name])
    for t in range(len(recs[0]["raw"])):
        out = sim.step([recs[0]["raw"][t], recs[1]["raw"][t]])
        for k, v in out.items():
            assert torch.equal(v, recs[0]["avg"][t][k]), (name, t, k, float((v - recs[0]["avg"][t][k]).abs().max()))


def test_gradient_as_bucket_view_is_irrelevant(two):
    res, _ = two
    assert all(r["bucket_view_equal"] for r in res)


def test_bucket_rebuild_keeps_memory_keys(two):
    res, _ = two
    for r in res:
        sizes = r["rebuild"]["sizes"]
        assert sizes[0] == [85002] and sizes[1] == sizes[2] == [68362, 16640]  # torch 2.13, bucket_cap_mb=0.1
        assert r["rebuild"]["keys"] == ["0.weight", "2.weight", "4.weight"]
        assert r["rebuild"]["compressed"] == 3


def test_bare_registration(two):
    res, _ = two
    for r in res:
        assert "start_iter >= 2" in r["bare"]
        assert r["bare_keys"] and all(k.startswith("bucket") for k in r["bare_keys"])


def test_nonfinite_gradient_poisons_every_rank_and_spares_memory(two):
    res, _ = two
    for r in res:
        assert r["nan_output_nonfinite"] and r["nan_memory_unchanged"]
        assert r["nan_next_finite"] and r["nan_next_memory_changed"]
        assert r["pickle_drops_group"]


def test_aggregate_without_ddp_equals_simulated_group(two):
    res, _ = two
    sim = SimulatedGroup(2, lambda: CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=1))
    for t in range(3):
        out = sim.step([res[0]["aggregate"][t][0], res[1]["aggregate"][t][0]])
        for k in out:
            assert all(torch.equal(out[k], r["aggregate"][t][1][k]) for r in res)


def test_checkpoint_resumes_bit_identically_in_fresh_processes(two):
    res, ckpt = two
    again = run_local(_reload, world_size=2, args=(str(ckpt),), timeout=TIMEOUT)
    for process_rank in (0, 1):
        for name in ("randomblock+conef", "powersgd+ef"):
            assert all(torch.equal(a, b) for a, b in zip(res[process_rank][f"ckpt_{name}"],
                                                         again[process_rank][name])), name


def test_three_processes():
    res = run_local(_suite_n, world_size=3, args=("",), timeout=TIMEOUT)
    for r in res:
        assert r["identity_vs_allreduce"] < 1e-6
    for name, (params0, _) in res[0]["replicas"].items():
        for other in res[1:]:
            assert all(torch.equal(a, b) for a, b in zip(params0, other["replicas"][name][0])), name
