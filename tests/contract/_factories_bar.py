"""BAR (nBAR over SGD with momentum, oBAR over AdamW) in the shared contract battery.

The model is a 6-16-3 MLP of two :class:`optimlab.lora.LoRALinear` layers (r = 4) with both factors non-zero (so
every factor has a gradient); the two param groups are the two layers' (lora_A, lora_B), each holding whole pairs,
so a per-group ``mu0`` override acts on whole pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from _optimizer_factories import Factory, Setup
from torch import nn

from conftest import CLASSES, HIDDEN, IN_FEATURES, batch, closure_for
from optimlab.lora import LoRALinear, find_lora_pairs
from optimlab.lora.bar import BAR


def lora_mlp(dtype: torch.dtype = torch.float32, device: str = "cpu") -> nn.Sequential:
    """6-16-3 MLP of two LoRA layers (r = 4, α = 8), seeded; lora_B drawn non-zero (std 0.1)."""
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(LoRALinear(IN_FEATURES, HIDDEN, r=4, alpha=8, generator=1), nn.ReLU(),
                              LoRALinear(HIDDEN, CLASSES, r=4, alpha=8, generator=2))
    with torch.no_grad():
        for layer in (model[0], model[2]):
            w = layer.lora_B["default"].weight
            w.copy_(0.1 * torch.randn(w.shape, generator=g))
    return model.to(device=device, dtype=dtype)


def _bar_make(base: str, preset: dict[str, Any]) -> Callable[..., Setup]:
    def make(*, dtype=torch.float32, device="cpu", nonfinite="raise", group_overrides=None, first_group_only=False,
             **kw) -> Setup:
        model = lora_mlp(dtype, device)
        split = [[model[0].lora_A["default"].weight, model[0].lora_B["default"].weight],
                 [model[2].lora_A["default"].weight, model[2].lora_B["default"].weight]]
        overrides = group_overrides or [{}] * len(split)
        groups = [{"params": ps, **o} for ps, o in zip(split, overrides)]
        groups = groups[:1] if first_group_only else groups
        if base == "sgd":
            opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=0.01, eps=1e-3, weight_decay=0.0)
        pairs = find_lora_pairs(model)[:1] if first_group_only else find_lora_pairs(model)
        # total_steps = 8 keeps prod_t(1 - c_t) above 1/2 (no dead-adapter warning) at lr 0.1, mu0 = 1
        opt = BAR(opt, pairs, **{"nonfinite": nonfinite, "mu0": 1.0, "total_steps": 8, **preset, **kw})

        def closure(t: int):
            return closure_for(model, *batch(100 + t, dtype=dtype, device=device))

        return Setup(model, opt, closure, split)

    return make


FACTORIES = [
    Factory("bar-nbar-sgd", BAR, _bar_make("sgd", {"variant": "nbar"}), override={"mu0": 0.0}, wrapper=True),
    Factory("bar-obar-adamw", BAR, _bar_make("adamw", {"variant": "obar", "schedule": "cosine"}),
            override={"mu0": 0.0}, table_cases=False, wrapper=True),
]
