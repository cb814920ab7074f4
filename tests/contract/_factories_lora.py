"""Contract factories of the LoRA gradient wrappers: RefLoRA (matrix and scalar modes) and NoRAPlus.

The model is the suite's 6-16-3 MLP with both Linear layers wrapped in :class:`optimlab.lora.LoRALinear` (r = α = 2;
only the four LoRA factors are trainable, one layer's pair per param group). B is drawn non-zero from a seeded
generator, so the refactoring acts from the first step (``warmup_steps=0`` is allowed only then).

Where a contract property cannot apply as written:
* ``wrapper=True`` (``param_groups is base.param_groups`` is asserted); the SAM-only ``rho = 0`` test applies to
  two-pass wrappers only.
* The hyperparameters (``mode``, ``warmup_steps``, ``preset``, ...) are per optimizer, not per group: the maths
  couples the two factors of a pair, which may sit in different groups. So there are no per-group keys to test; the
  valid per-group override is the base's ``lr``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from _optimizer_factories import Factory, Setup

from conftest import batch, closure_for, mlp
from optimlab.lora import inject_lora
from optimlab.lora.noraplus import NoRAPlus
from optimlab.lora.reflora import RefLoRA


def lora_mlp(dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.nn.Module:
    """The suite's MLP with LoRA (r = α = 2) on both Linear layers; B non-zero and seeded."""
    model = mlp(0, dtype=dtype, device=device)
    inject_lora(model, r"0|3", r=2, alpha=2, generator=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ("0", "3"):
            B = model.get_submodule(name).lora_B["default"].weight
            B.copy_((0.3 * torch.randn(B.shape, generator=g, dtype=torch.float64)).to(dtype=dtype, device=device))
    return model


def _make(cls: type, preset: dict[str, Any], base: str) -> Callable[..., Setup]:
    def make(*, dtype=torch.float32, device="cpu", nonfinite="raise", group_overrides=None, first_group_only=False,
             plain=False, lr=None, **kw) -> Setup:
        model = lora_mlp(dtype, device)
        split = [[model[0].lora_A["default"].weight, model[0].lora_B["default"].weight],
                 [model[3].lora_A["default"].weight, model[3].lora_B["default"].weight]]
        overrides = group_overrides or [{}] * len(split)
        groups = [{"params": ps, **o} for ps, o in zip(split, overrides)]
        groups = groups[:1] if first_group_only else groups
        if base == "sgd":
            opt = torch.optim.SGD(groups, lr=0.05 if lr is None else lr, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=0.01 if lr is None else lr, eps=1e-3, weight_decay=0.0)
        if not plain:
            with warnings.catch_warnings():  # first_group_only: the second pair joins on add_param_group
                warnings.simplefilter("ignore" if first_group_only else "default")
                opt = cls(model, opt, **{"nonfinite": nonfinite, **preset, **kw})

        def closure(t: int):
            return closure_for(model, *batch(100 + t, dtype=dtype, device=device))

        return Setup(model, opt, closure, split)

    return make


def _factory(id_: str, cls: type, preset: dict[str, Any], base: str, table_cases: bool = True) -> Factory:
    lr = 0.02 if base == "sgd" else 0.005
    return Factory(id_, cls, _make(cls, preset, base), override={"lr": lr}, table_cases=table_cases, wrapper=True)


FACTORIES = [
    _factory("reflora-matrix-adamw", RefLoRA, {"mode": "matrix", "warmup_steps": 0}, "adamw"),
    _factory("reflora-scalar-sgd", RefLoRA, {"mode": "scalar", "warmup_steps": 1}, "sgd", table_cases=False),
    _factory("reflora-scalar-adamw", RefLoRA, {"mode": "scalar", "warmup_steps": 0}, "adamw", table_cases=False),
    _factory("noraplus-nora-adamw", NoRAPlus, {"preset": "nora"}, "adamw"),
    _factory("noraplus-riemannian-sgd", NoRAPlus, {"preset": "riemannian"}, "sgd", table_cases=False),
]
