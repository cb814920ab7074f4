"""Seed-log replay: rebuild ZO-SGD/ZO-Adam weights from the seeds and scalars a run logged (``record=True``).

A step's update depends only on (seed, step, process ranks, direction count) and the half-differences hᵢ, so the
log of a run is a few dozen bytes per step (FedKSeed's precedent, arXiv:2312.06353: < 18 KB per federated round).
Replay applies the same update code as the optimizer (not fused), so it is bit-identical to a ``perturb="swap"`` or
``master_dtype`` run on the same device type, and equal up to rounding drift to an ``inplace`` run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from optimlab.zo.optim import ZOSGD, ZOAdam

__all__ = ["replay"]


def replay(params: Iterable[Tensor] | Iterable[dict], log: dict[str, Any]) -> torch.optim.Optimizer:
    """Apply every logged step of ``log`` (``opt.log`` of a run with ``record=True``) to ``params``, which must hold
    the run's initial weights in the same groups; returns the optimizer used (its state continues the run)."""
    if not isinstance(log, dict) or "records" not in log:
        raise ValueError("replay: log must be the opt.log of an optimizer built with record=True")
    cls = {"ZOSGD": ZOSGD, "ZOAdam": ZOAdam}.get(log.get("optimizer"))
    if cls is None:
        raise ValueError(f"replay: unknown optimizer {log.get('optimizer')!r} in the log")
    dt = {k: (None if log[k] is None else getattr(torch, log[k])) for k in ("master_dtype", "noise_dtype")}
    opt = cls(params, seed=log["seed"], q=log["q"], direction=log["direction"], difference=log["difference"],
              chunk_numel=log["chunk_numel"], perturb="swap", **dt)
    opt.distributed = log["distributed"]  # only selects how many process ranks the update regenerates
    with torch.no_grad():
        for rec in log["records"]:
            for g, vals in zip(opt.param_groups, rec["groups"]):
                g.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in vals.items()})
            for _, p, _ in opt._trainables():
                opt._init_state(p)
            opt._apply_update(rec["step"], torch.tensor(rec["h"], dtype=torch.float64))
            opt._step = rec["step"] + 1
    opt.distributed = None
    return opt
