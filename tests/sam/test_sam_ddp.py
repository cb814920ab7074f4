"""SAM under DistributedDataParallel with 2 gloo processes on localhost.

``ascent_sync="global"``: pass 1's gradient is all-reduced, so ε and the step equal single-process SAM on the
concatenated batch. ``"local"``: pass 1 runs under ``no_sync()``, each rank perturbs with its own gradient
(m-sharpness with m = per-rank batch), pass 2 is synchronised, so replicas stay identical.
"""

import torch
from torch import nn
from torch.nn import functional as F

from optimlab.distributed import run_local
from optimlab.sam import SAM


def _mlp():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def _batch(t):
    g = torch.Generator().manual_seed(100 + t)
    return torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)


def _train(model, opt, step_model, rank=None, world=1, steps=3):
    for t in range(steps):
        x, y = _batch(t)
        if rank is not None:
            x, y = x.chunk(world)[rank], y.chunk(world)[rank]

        def closure(x=x, y=y):
            loss = F.cross_entropy(step_model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
    return [p.detach().clone() for p in model.parameters()]


def _ddp_worker(rank, world):
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    for mode in ("global", "local"):
        model = _mlp()
        ddp = DDP(model)
        opt = SAM(base=torch.optim.SGD(ddp.parameters(), lr=0.1), rho=0.05, model=ddp, ascent_sync=mode)
        out[mode] = _train(model, opt, ddp, rank, world)
    return out


def test_ddp_global_equals_single_process_and_local_keeps_replicas_identical():
    results = run_local(_ddp_worker, world_size=2, timeout=120)
    single = _mlp()
    reference = _train(single, SAM(base=torch.optim.SGD(single.parameters(), lr=0.1), rho=0.05), single)
    for mode in ("global", "local"):
        for a, b in zip(results[0][mode], results[1][mode]):
            assert torch.equal(a, b), f"replicas differ with ascent_sync={mode!r}"
    for a, b in zip(results[0]["global"], reference):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert any(not torch.allclose(a, b, rtol=1e-6, atol=1e-7)
               for a, b in zip(results[0]["local"], reference))
