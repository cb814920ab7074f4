"""The zeroth-order optimizers in the contract suite.

How the suite's properties map to ZO (there is no gradient):
* "closure calls per step" = 2 (q = 1, central differences); the closures run forward only (no backward).
* NaN gradient → NaN loss: the suite writes NaN into ``split[0][0].grad`` right after the k-th closure call. Here the
  closure stores its loss in entry 0 of that ``.grad`` tensor and returns a 0-d view of it, so the injected NaN
  becomes the loss of exactly that call: the optimizer restores the weights and raises (or skips).
* "skip": a skipped ZO step is not counted (its directions are reused by the next step), so the run continues as if
  it never happened, as the suite requires. ``zero_grad`` is a no-op.
* Bit-identical weights after a raised or skipped step need an exact restore, so the factories use
  ``perturb="swap"`` (and ``master_dtype=torch.float32`` for 16-bit dtypes): ``perturb="inplace"`` restores fp32
  weights only up to rounding (≈1 ulp on some entries per probe cycle; bounded in tests/zo/test_restore.py).
"""

from __future__ import annotations

import torch
from _optimizer_factories import Factory, Setup
from torch.nn import functional as F

from conftest import batch, mlp
from optimlab.zo import ZOSGD, ZOAdam


def _make(cls, preset):
    def make(*, dtype=torch.float32, device="cpu", nonfinite="raise", group_overrides=None, first_group_only=False,
             **kw) -> Setup:
        model = mlp(0, dtype=dtype, device=device)
        split = [list(model[0].parameters()), list(model[3].parameters())]
        overrides = group_overrides or [{}] * len(split)
        groups = [{"params": ps, **o} for ps, o in zip(split, overrides)]
        groups = groups[:1] if first_group_only else groups
        extra = {"master_dtype": torch.float32} if dtype in (torch.float16, torch.bfloat16) else {}
        opt = cls(groups, **{"nonfinite": nonfinite, **extra, **preset, **kw})
        target = split[0][0]

        def closure(t: int):
            x, y = batch(100 + t, dtype=dtype, device=device)

            def run():
                loss = F.cross_entropy(model(x), y).float()
                if target.grad is None:
                    target.grad = torch.zeros_like(target)
                target.grad.view(-1)[0] = loss
                return target.grad.view(-1)[0]

            return run

        return Setup(model, opt, closure, split)

    return make


FACTORIES = [
    Factory("zosgd-swap", ZOSGD, _make(ZOSGD, {"lr": 0.05, "eps": 1e-2, "perturb": "swap"}), passes=2, override={"eps": 0.05}),
    Factory("zosgd-momentum-swap", ZOSGD, _make(ZOSGD, {"lr": 0.05, "eps": 1e-2, "momentum": 0.9, "perturb": "swap",
                                                        "trace_every": 2}),
            passes=2, override={"lr": 0.02}, table_cases=False),
    Factory("zoadam", ZOAdam, _make(ZOAdam, {"lr": 0.01, "eps": 1e-2, "perturb": "swap"}), passes=2, override={"eps": 0.05}),
]
