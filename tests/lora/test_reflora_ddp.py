"""T-D1: RefLoRA under DistributedDataParallel (2 gloo processes on localhost) keeps the ranks identical."""

from __future__ import annotations

import torch

from optimlab.distributed import run_local


def _worker(rank: int, world_size: int) -> dict[str, list[float]]:
    return {mode: _train(rank, mode) for mode in ("matrix", "scalar")}


def _train(rank: int, mode: str) -> list[float]:
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from optimlab.lora import inject_lora
    from optimlab.lora.reflora import RefLoRA

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    inject_lora(model, r"0|2", r=2, alpha=2, generator=0)
    ddp = DDP(model)
    base = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    opt = RefLoRA(model, base, mode=mode, warmup_steps=1)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    for _ in range(5):
        x, y = torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)
        opt.zero_grad()
        nn.functional.mse_loss(ddp(x), y).backward()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()


def test_ranks_stay_identical_after_five_reflora_steps():
    a, b = run_local(_worker, world_size=2, timeout=120)
    for mode in ("matrix", "scalar"):
        assert a[mode] == b[mode]
        assert any(x != 0 for x in a[mode])
