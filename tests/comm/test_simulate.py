"""The compressed-communication pipeline in one process: SimulatedGroup (the reference of the DDP hook), its
non-finite guard, the global RNG, the all-gather path, residuals, reports, predict_memory and CommState's
validation. The multi-process checks are in test_hooks_distributed.py.
"""

import math

import pytest
import torch
from torch import nn

from optimlab._random import counter_generator
from optimlab.comm import (
    QSGD,
    CommState,
    ConEFMemory,
    CountSketch,
    EFMemory,
    NoMemory,
    PowerSGD,
    RandomBlock,
    RandomK,
    ScaledSign,
    SimulatedGroup,
    TopK,
    predict_memory,
)


def _digits_mlp(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def random_grads(seed, bad=None):
    """{"w": 32×40, "b": 32} Gaussian gradients from ``seed``; ``bad``: a flat index of "w" set to inf."""
    g = torch.Generator().manual_seed(seed)
    out = {"w": torch.randn(32, 40, generator=g), "b": torch.randn(32, generator=g)}
    if bad is not None:
        out["w"].view(-1)[bad] = math.inf
    return out


def test_simulated_nonfinite_guard_and_raise():
    sim = SimulatedGroup(2, lambda: CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=0, seed=1))
    sim.step([random_grads(0), random_grads(1)])
    before = [s.memory.state_dict()["tables"]["w"].clone() for s in sim.states]
    k = RandomBlock(0.1).k((32, 40))
    u = RandomBlock(0.1)._indices(1280, k, counter_generator(1, 1, "w"))
    sim.step([random_grads(2, bad=(u + k) % 1280), random_grads(3)])
    for out, st, b in zip(sim.outputs, sim.states, before):
        assert not bool(torch.isfinite(out["w"]).all())
        assert torch.equal(st.memory.state_dict()["tables"]["w"], b)
    out = sim.step([random_grads(4), random_grads(5)])
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    raising = SimulatedGroup(2, lambda: CommState(RandomBlock(0.1), EFMemory(), start_iter=0, nonfinite="raise"))
    with pytest.raises(FloatingPointError, match="'w'"):
        raising.step([random_grads(0, bad=3), random_grads(1)])


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
            sim.step([random_grads(s), random_grads(s + 10)])
    assert torch.equal(before, torch.get_rng_state())


def test_allgather_path_equals_mean_of_decodes():
    for comp in (TopK(0.1), ScaledSign()):
        sim = SimulatedGroup(3, lambda c=comp: CommState(type(c)() if isinstance(c, ScaledSign) else TopK(0.1),
                                                         NoMemory(), start_iter=0, communicator="allgather"))
        grads = [random_grads(s) for s in range(3)]
        out = sim.step(grads)
        ref = sum(comp.apply(g["w"], counter_generator(0, 0, "w")) for g in grads) / 3
        torch.testing.assert_close(out["w"], ref, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out["b"], sum(g["b"] for g in grads) / 3)
        assert sim.states[0].comm_report().communicator == "allgather"


def test_local_and_global_residuals_differ_and_reports():
    def run(residual):
        sim = SimulatedGroup(2, lambda: CommState(RandomBlock(0.1), EFMemory(), start_iter=0, residual=residual))
        for s in range(3):
            sim.step([random_grads(2 * s), random_grads(2 * s + 1)])
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
    with pytest.raises(ValueError, match="world_size"):
        SimulatedGroup(0, lambda: CommState(RandomBlock()))
    with pytest.raises(ValueError, match="world_size"):
        SimulatedGroup(True, lambda: CommState(RandomBlock()))
    for kwargs, word in [({"seed": 1.5}, "seed"), ({"min_compression_rate": -1}, "min_compression_rate"),
                         ({"nonfinite": "skip_memory"}, "nonfinite"), ({"start_iter": 2.0}, "start_iter"),
                         ({"memory": "ef"}, "memory"), ({"compress_vectors": "yes"}, "compress_vectors")]:
        with pytest.raises(ValueError, match=word):
            CommState(RandomBlock(), **kwargs)
    with pytest.raises(ValueError, match="compressor"):
        CommState("randomblock")
    with pytest.raises(ValueError, match="allgather"):
        CommState(PowerSGD(), communicator="allgather")
    shared = CommState(RandomBlock())
    with pytest.raises(ValueError, match="new compressor"):
        SimulatedGroup(2, lambda: shared)
    with pytest.raises(ValueError, match="mismatch"):
        CommState(RandomBlock(0.2)).load_state_dict(CommState(RandomBlock(0.1)).state_dict())
