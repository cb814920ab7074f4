"""The DDP hook on gloo (2 and 3 local processes), SimulatedGroup, checkpoints, the launcher (specs/comm.md §5).

Spawning costs seconds per call, so the multi-process checks are grouped: one 2-process suite, one 2-process
checkpoint reload, one 3-process suite, and the launcher's own tests; each is bounded by ``run_local``'s timeout.
"""

import copy
import math
import os
import pickle
import threading
import time

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP

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
    counter_generator,
    predict_memory,
    register_hook,
    run_local,
)

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


def _batch(rank, step, n_in=16, n_out=4):
    g = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(32, n_in, generator=g), torch.randint(n_out, (32,), generator=g)


def _configs():
    return {
        "randomblock+conef": lambda: CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=2),
        "randomk+ef": lambda: CommState(RandomK(0.1), EFMemory(), start_iter=2),
        "countsketch+conef": lambda: CommState(CountSketch(0.2, scale=0.1), ConEFMemory(0.2, 0.1), start_iter=2),
        "powersgd+ef": lambda: CommState(PowerSGD(2), EFMemory(), start_iter=2),
        "powersgd+conef-local": lambda: CommState(PowerSGD(1), ConEFMemory(0.5, 0.2), start_iter=2,
                                                  residual="local"),
        "topk+ef": lambda: CommState(TopK(0.1), EFMemory(), start_iter=2, communicator="allgather"),
        "scaledsign": lambda: CommState(ScaledSign(), NoMemory(), start_iter=2, communicator="allgather"),
        "qsgd+ef": lambda: CommState(QSGD(), EFMemory(), start_iter=2, communicator="allgather"),
    }


def _train(ddp, opt, rank, steps, start=0, record=None, n_in=16, n_out=4):
    for t in range(start, start + steps):
        x, y = _batch(rank, t, n_in, n_out)
        if record is not None:  # this rank's raw gradient, from a copy of the module
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


def _suite_n(rank, world, ckpt_dir):
    """Everything that needs N live processes, in one spawn; returns plain results for the parent to check."""
    out = {"rank": rank}
    # 1. Identity + NoMemory (after start_iter) against PyTorch's allreduce_hook, and against no hook at all.
    models = {}
    for kind in ("ours", "pytorch", "nohook"):
        m = _small(1)
        ddp = DDP(m)
        if kind == "ours":
            register_hook(ddp, CommState(Identity(), NoMemory(), start_iter=2))
        elif kind == "pytorch":
            ddp.register_comm_hook(None, allreduce_hook)
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.1), rank, 6)
        models[kind] = _params(m)
    out["identity_vs_allreduce"] = max(float((a - b).abs().max()) for a, b in zip(models["ours"], models["pytorch"]))
    out["identity_vs_nohook"] = max(float((a - b).abs().max()) for a, b in zip(models["ours"], models["nohook"]))
    # 2. After 30 compressed steps, replicas identical for every compressor.
    out["replicas"] = {}
    for name, make in _configs().items():
        if world == 3 and name not in ("randomblock+conef", "topk+ef", "powersgd+ef", "qsgd+ef"):
            continue
        m = _small(2)
        ddp = DDP(m)
        state = register_hook(ddp, make())
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), rank, 32)
        out["replicas"][name] = (_params(m), state.stats["compressed_steps"])
    if world != 2:
        return out
    # 3. Hook output against SimulatedGroup on the same raw gradients.
    out["records"] = {}
    for name in ("randomblock+conef", "powersgd+ef", "topk+ef"):
        m = _small(3)
        ddp = DDP(m)
        register_hook(ddp, _configs()[name]())
        rec = {"raw": [], "avg": []}
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), rank, 8, record=rec)
        out["records"][name] = rec
    # 4. gradient_as_bucket_view True/False give identical parameters.
    views = []
    for as_view in (True, False):
        m = _small(4)
        ddp = DDP(m, gradient_as_bucket_view=as_view)
        register_hook(ddp, CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=2))
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), rank, 8)
        views.append(_params(m))
    out["bucket_view_equal"] = all(torch.equal(a, b) for a, b in zip(*views))
    # 5. Bucket rebuild with a compressor active from iteration 0 (register_hook keys memory by name).
    m = _digits_mlp()
    ddp = DDP(m, bucket_cap_mb=0.1)
    state = register_hook(ddp, CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=0))
    sizes = []
    for t in range(3):
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), rank, 1, start=t, n_in=64, n_out=10)
        sizes.append(state.stats["last_step"]["bucket_numels"])
    out["rebuild"] = {"sizes": sizes, "keys": sorted(state.memory.keys()), "compressed": state.stats["compressed_steps"]}
    # 6. A bare registration keys memory by bucket and needs start_iter >= 2.
    m = _small(5)
    ddp = DDP(m)
    ddp.register_comm_hook(CommState(RandomBlock(0.1), EFMemory(), start_iter=0), comm_hook)
    try:
        _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), rank, 1)
        out["bare"] = "no error"
    except ValueError as e:
        out["bare"] = str(e)
    m = _small(5)
    ddp = DDP(m)
    bare = CommState(RandomBlock(0.1), EFMemory(), start_iter=2)
    ddp.register_comm_hook(bare, comm_hook)
    _train(ddp, torch.optim.SGD(m.parameters(), lr=0.05), rank, 4)
    out["bare_keys"] = sorted(bare.memory.keys())
    # 7. Non-finite gradient on rank 0 at a coordinate the random block does not send.
    m = _small(6)
    ddp = DDP(m)
    state = register_hook(ddp, CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=2, seed=3))
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    _train(ddp, opt, rank, 4)
    w = m[2].weight
    d, k = w.numel(), RandomBlock(0.1).k(w.shape)
    u = RandomBlock(0.1)._indices(d, k, counter_generator(3, state.iter, "2.weight"))
    bad = (u + k) % d
    before = {key: v.clone() for key, v in state.memory.state_dict()["tables"].items()}

    def poison(g):
        g = g.clone()
        g.view(-1)[bad] = math.inf
        return g

    handle = w.register_hook(poison) if rank == 0 else None
    x, y = _batch(rank, 99)
    opt.zero_grad()
    nn.functional.cross_entropy(ddp(x), y).backward()
    out["nan_output_nonfinite"] = not bool(torch.isfinite(w.grad).all())
    out["nan_memory_unchanged"] = all(torch.equal(before[k_], v) for k_, v in
                                      state.memory.state_dict()["tables"].items())
    if handle is not None:
        handle.remove()
    _train(ddp, opt, rank, 1, start=100)  # skip the poisoned step (no opt.step above); the next one is finite
    out["nan_next_finite"] = all(bool(torch.isfinite(p.grad).all()) for p in m.parameters())
    out["nan_next_memory_changed"] = any(not torch.equal(before[k_], v) for k_, v in
                                         state.memory.state_dict()["tables"].items())
    # 8. aggregate() over the process group, without DDP: the parent compares it with SimulatedGroup.
    agg_state = CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=1)
    out["aggregate"] = []
    for t in range(3):
        grads = _grads(50 * rank + t)
        inputs = {k: v.clone() for k, v in grads.items()}
        aggregate(grads, agg_state)
        out["aggregate"].append((inputs, grads))
    # 9. Checkpoint: 15 steps, save, 10 more (the reload happens in fresh processes).
    for name in ("randomblock+conef", "powersgd+ef"):
        m = _small(7)
        ddp = DDP(m)
        state = register_hook(ddp, CommState(*_ckpt_parts(name), start_iter=10))
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        _train(ddp, opt, rank, 15)
        torch.save({"model": m.state_dict(), "opt": opt.state_dict(), "comm": state.state_dict()},
                   os.path.join(ckpt_dir, f"{name}-{rank}.pt"))
        _train(ddp, opt, rank, 10, start=15)
        out[f"ckpt_{name}"] = _params(m)
    out["pickle_drops_group"] = pickle.loads(pickle.dumps(state)).process_group is None
    return out


def _ckpt_parts(name):
    return (RandomBlock(0.1), ConEFMemory(0.2, 0.1)) if name == "randomblock+conef" else (PowerSGD(2), EFMemory())


def _reload(rank, world, ckpt_dir):
    out = {}
    for name in ("randomblock+conef", "powersgd+ef"):
        ck = torch.load(os.path.join(ckpt_dir, f"{name}-{rank}.pt"))
        m = _small(99)
        m.load_state_dict(ck["model"])
        ddp = DDP(m, bucket_cap_mb=0.001)  # another bucket layout: name-keyed state does not care
        state = register_hook(ddp, CommState(*_ckpt_parts(name), start_iter=10))
        state.load_state_dict(ck["comm"])
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        opt.load_state_dict(ck["opt"])
        _train(ddp, opt, rank, 10, start=15)
        out[name] = _params(m)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Multi-process tests
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    res = run_local(_suite_n, nprocs=2, args=(str(ckpt),), timeout_s=TIMEOUT)
    return res, ckpt


def test_results_come_back_in_rank_order(two):
    res, _ = two
    assert [r["rank"] for r in res] == [0, 1]


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
            assert torch.equal(out[k], res[0]["aggregate"][t][1][k]) and torch.equal(out[k], res[1]["aggregate"][t][1][k])


def test_checkpoint_resumes_bit_identically_in_fresh_processes(two):
    res, ckpt = two
    again = run_local(_reload, nprocs=2, args=(str(ckpt),), timeout_s=TIMEOUT)
    for rank in (0, 1):
        for name in ("randomblock+conef", "powersgd+ef"):
            assert all(torch.equal(a, b) for a, b in zip(res[rank][f"ckpt_{name}"], again[rank][name])), name


def test_three_processes():
    res = run_local(_suite_n, nprocs=3, args=("",), timeout_s=TIMEOUT)
    for r in res:
        assert r["identity_vs_allreduce"] < 1e-6
    for name, (params0, _) in res[0]["replicas"].items():
        for other in res[1:]:
            assert all(torch.equal(a, b) for a, b in zip(params0, other["replicas"][name][0])), name


# ----------------------------------------------------------------------------------------------------------------
# Single-process checks of the same pipeline
# ----------------------------------------------------------------------------------------------------------------
def _grads(seed, bad=None):
    g = torch.Generator().manual_seed(seed)
    out = {"w": torch.randn(32, 40, generator=g), "b": torch.randn(32, generator=g)}
    if bad is not None:
        out["w"].view(-1)[bad] = math.inf
    return out


def test_simulated_nonfinite_guard_and_raise():
    sim = SimulatedGroup(2, lambda: CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=0, seed=1))
    sim.step([_grads(0), _grads(1)])
    before = [s.memory.state_dict()["tables"]["w"].clone() for s in sim.states]
    k = RandomBlock(0.1).k((32, 40))
    u = RandomBlock(0.1)._indices(1280, k, counter_generator(1, 1, "w"))
    sim.step([_grads(2, bad=(u + k) % 1280), _grads(3)])
    for out, st, b in zip(sim.outputs, sim.states, before):
        assert not bool(torch.isfinite(out["w"]).all())
        assert torch.equal(st.memory.state_dict()["tables"]["w"], b)
    out = sim.step([_grads(4), _grads(5)])
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    raising = SimulatedGroup(2, lambda: CommState(RandomBlock(0.1), EFMemory(), start_iter=0, nonfinite="raise"))
    with pytest.raises(FloatingPointError, match="'w'"):
        raising.step([_grads(0, bad=3), _grads(1)])


def test_global_rng_is_never_touched():
    makers = [lambda c=c, m=m: CommState(c(), m(), start_iter=0) for c, m in [
        (lambda: RandomBlock(0.1), EFMemory), (lambda: RandomK(0.1), lambda: ConEFMemory(0.2, 0.1)),
        (lambda: CountSketch(0.2), NoMemory), (lambda: PowerSGD(2, warm_start=False), EFMemory)]]
    makers.append(lambda: CommState(QSGD(), EFMemory(), start_iter=0, communicator="allgather"))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for make in makers:
        sim = SimulatedGroup(2, make)
        for s in range(2):
            sim.step([_grads(s), _grads(s + 10)])
    assert torch.equal(before, torch.get_rng_state())


def test_allgather_path_equals_mean_of_decodes():
    for comp in (TopK(0.1), ScaledSign()):
        sim = SimulatedGroup(3, lambda c=comp: CommState(type(c)() if isinstance(c, ScaledSign) else TopK(0.1),
                                                         NoMemory(), start_iter=0, communicator="allgather"))
        grads = [_grads(s) for s in range(3)]
        out = sim.step(grads)
        ref = sum(comp.apply(g["w"], counter_generator(0, 0, "w")) for g in grads) / 3
        torch.testing.assert_close(out["w"], ref, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out["b"], sum(g["b"] for g in grads) / 3)
        assert sim.states[0].comm_report().communicator == "allgather"


def test_local_and_global_residuals_differ_and_reports():
    def run(residual):
        sim = SimulatedGroup(2, lambda: CommState(RandomBlock(0.1), EFMemory(), start_iter=0, residual=residual))
        for s in range(3):
            sim.step([_grads(2 * s), _grads(2 * s + 1)])
        return sim

    loc, glob = run("local"), run("global")
    assert not torch.equal(loc.states[0].memory.decoded("w"), glob.states[0].memory.decoded("w"))
    rep = loc.states[0].comm_report()
    assert rep.payload_numel == 128 + 32 and rep.collectives == 1
    assert rep.wire_bytes == pytest.approx(2 * (2 - 1) / 2 * rep.payload_bytes)
    assert CommState(PowerSGD(1)).residual == "global" and CommState(RandomBlock()).residual == "local"


def test_predict_memory_equals_measured():
    model = _digits_mlp()
    for make in (lambda: ConEFMemory(0.2, 0.1), lambda: ConEFMemory(0.1, storage_dtype=torch.float16),
                 EFMemory, lambda: ConEFMemory(0.2, cache_hashes=True)):
        sim = SimulatedGroup(1, lambda mk=make: CommState(RandomBlock(0.1), mk(), start_iter=0))
        g = {n: torch.randn_like(p) for n, p in model.named_parameters()}
        sim.step([g])
        rep = sim.states[0].memory_report()
        pred = predict_memory(model, RandomBlock(0.1), make())
        assert (rep.error_bytes, rep.cache_bytes, rep.ef_reference_bytes) == \
               (pred.error_bytes, pred.cache_bytes, pred.ef_reference_bytes)
        assert rep.bucket_reference_bytes == 4 * 85002
    sim = SimulatedGroup(1, lambda: CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=0))
    sim.step([{n: torch.randn_like(p) for n, p in model.named_parameters()}])
    assert sim.states[0].memory_report().ratio_to_ef <= 0.2


def test_comm_state_validation_and_checkpoint_mismatch():
    for kwargs, word in [({"start_iter": -1}, "start_iter"), ({"residual": "x"}, "residual"),
                         ({"communicator": "x"}, "communicator"), ({"nonfinite": "x"}, "nonfinite")]:
        with pytest.raises(ValueError, match=word):
            CommState(RandomBlock(), **kwargs)
    with pytest.raises(ValueError, match="TopK"):
        CommState(TopK(), communicator="allreduce")
    with pytest.warns(RuntimeWarning, match="grows"):
        CommState(TopK())
    with pytest.raises(ValueError, match="n_workers"):
        SimulatedGroup(0, lambda: CommState(RandomBlock()))
    shared = CommState(RandomBlock())
    with pytest.raises(ValueError, match="new compressor"):
        SimulatedGroup(2, lambda: shared)
    with pytest.raises(ValueError, match="mismatch"):
        CommState(RandomBlock(0.2)).load_state_dict(CommState(RandomBlock(0.1)).state_dict())


# ----------------------------------------------------------------------------------------------------------------
# Launcher
# ----------------------------------------------------------------------------------------------------------------
def _fail_on_rank_1(rank, world):
    if rank == 1:
        raise KeyError("boom from rank one")
    dist.barrier()
    return rank


def _sleep_forever(rank, world, pid_file):
    with open(f"{pid_file}.{rank}", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)


def _port(rank, world):
    return int(os.environ["MASTER_PORT"])


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as ended
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_launcher_worker_error_names_rank():
    with pytest.raises(RuntimeError, match=r"rank 1 of 2(.|\n)*boom from rank one"):
        run_local(_fail_on_rank_1, nprocs=2, timeout_s=60)


def test_launcher_timeout_ends_only_its_children(tmp_path):
    bystander = threading.Event()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        run_local(_sleep_forever, nprocs=1, args=(str(tmp_path / "pid"),), timeout_s=9)
    assert time.monotonic() - start < 40
    pid = int((tmp_path / "pid.0").read_text())
    assert not _alive(pid)
    assert _alive(os.getpid()) and not bystander.is_set()


def test_launcher_concurrent_calls_get_different_ports():
    ports = []
    threads = [threading.Thread(target=lambda: ports.append(run_local(_port, nprocs=1, timeout_s=60)[0]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ports) == 2 and ports[0] != ports[1]


def test_launcher_bad_arguments():
    with pytest.raises(ValueError, match="nprocs"):
        run_local(_port, nprocs=0)
    if not torch.cuda.is_available() or torch.cuda.device_count() < 64:
        with pytest.raises(ValueError, match="nccl"):
            run_local(_port, nprocs=64, backend="nccl")
    with pytest.raises(ValueError, match="timeout_s"):
        run_local(_port, timeout_s=0)
