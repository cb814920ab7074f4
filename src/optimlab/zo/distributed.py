"""Data-parallel zeroth-order steps that exchange only seeds and scalars over ``torch.distributed``.

Every process holds a full replica and its own data shard. ``shared``: all processes use the same directions
(the seed is agreed once at construction) and all-reduce the 2q (+1) probe losses, 16q (+8) bytes per step
against 4d for a DDP gradient all-reduce; ``per_process``: process r folds its ``process_rank`` into the
direction seed and all-gathers its q half-differences (8·q·world_size bytes), and every process applies all
world_size·q directions. Precedent for seed-and-scalar exchange: FedKSeed, arXiv:2312.06353; the ZO step itself:
MeZO, arXiv:2305.17333. All collectives use the group's own timeout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["MODES", "agree_seed", "gather_scalars", "reduce_losses", "replica_checksum", "require_group"]

MODES = ("shared", "per_process")


def require_group(process_group=None, *, owner: str = "ZOSGD") -> tuple[int, int]:
    """``(process_rank, world_size)`` of the group; ``ValueError`` when ``torch.distributed`` is not initialised."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(f"{owner}: distributed must be None unless a torch.distributed process group is "
                         "initialised (call torch.distributed.init_process_group first)")
    return dist.get_rank(process_group), dist.get_world_size(process_group)


def _device_for(group) -> torch.device:
    import torch.distributed as dist

    backend = dist.get_backend(group)
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def agree_seed(seed: int, process_group=None, *, owner: str = "ZOSGD") -> int:
    """Check that every process passed the same base seed (``ValueError`` naming them otherwise); returns it."""
    import torch.distributed as dist

    world = dist.get_world_size(process_group)
    mine = torch.tensor([seed], dtype=torch.int64, device=_device_for(process_group))
    seen = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(seen, mine, group=process_group)
    values = [int(s.item()) for s in seen]
    if len(set(values)) != 1:
        raise ValueError(f"{owner}: seed must be the same on every process, got {values}")
    return values[0]


def replica_checksum(params: Sequence[Tensor], process_group=None, *, step: int | None = None,
                     owner: str = "ZOSGD") -> tuple[float, float]:
    """All-gather the float64 (Σθ, Σθ²) of the trainables; ``RuntimeError`` naming the step if replicas differ."""
    import torch.distributed as dist

    dev = _device_for(process_group)
    s = torch.zeros(2, dtype=torch.float64, device=dev)
    for p in params:
        x = p.detach().to(device=dev, dtype=torch.float64)
        s[0] += x.sum()
        s[1] += x.square().sum()
    world = dist.get_world_size(process_group)
    seen = [torch.zeros_like(s) for _ in range(world)]
    dist.all_gather(seen, s, group=process_group)
    if any(not torch.equal(seen[0], x) for x in seen[1:]):
        where = "at construction" if step is None else f"at step {step}"
        raise RuntimeError(f"{owner}: replicas differ {where}: (sum, sum of squares) per process = "
                           f"{[tuple(x.tolist()) for x in seen]}")
    return float(s[0]), float(s[1])


def reduce_losses(losses: Tensor, counts: Tensor | None, process_group=None) -> Tensor:
    """Mean of per-process loss vectors (float64). With ``counts`` (examples per process, one number), the
    mean is weighted by them: Σ_r n_r·ℓ_r / Σ_r n_r (unequal shards)."""
    import torch.distributed as dist

    dev = _device_for(process_group)
    if counts is None:
        buf = losses.to(device=dev, dtype=torch.float64).clone()
        dist.all_reduce(buf, group=process_group)
        return (buf / dist.get_world_size(process_group)).cpu()
    n = counts.to(device=dev, dtype=torch.float64).reshape(1)
    buf = torch.cat([losses.to(device=dev, dtype=torch.float64) * n, n])
    dist.all_reduce(buf, group=process_group)
    return (buf[:-1] / buf[-1]).cpu()


def gather_scalars(values: Tensor, process_group=None) -> Tensor:
    """All-gather a float64 vector from every process: ``(world_size, len(values))`` on the CPU."""
    import torch.distributed as dist

    dev = _device_for(process_group)
    mine = values.to(device=dev, dtype=torch.float64).contiguous()
    seen = [torch.zeros_like(mine) for _ in range(dist.get_world_size(process_group))]
    dist.all_gather(seen, mine, group=process_group)
    return torch.stack(seen).cpu()
