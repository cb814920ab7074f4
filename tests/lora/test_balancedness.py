"""Balancedness metrics (arXiv:2410.14802, §2): values, sign convention, the conserved r×r matrix, reports on our
LoRALinear and on a real PEFT model, and BAR on PEFT (LoRA+ optimizer included)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimlab.lora import LoRALinear, find_lora_pairs, inject_lora
from optimlab.lora.balancedness import balancedness, balancedness_matrix, balancedness_report, grad_imbalance
from optimlab.lora.bar import BAR


def test_balancedness_hand_values_and_sign_convention():
    X = torch.tensor([[3.0, 4.0]])  # ‖X‖² = 25
    Y = torch.tensor([[1.0], [2.0]])  # ‖Y‖² = 5
    assert balancedness(X, Y) == 10.0
    layer = LoRALinear(5, 4, r=2, generator=0)  # PEFT init: lora_B = 0
    A = layer.lora_A["default"].weight
    assert balancedness(layer.lora_B["default"].weight, A) == pytest.approx(-0.5 * float(A.detach().double().square().sum()))
    assert balancedness(layer.lora_B["default"].weight, A) < 0


def test_balancedness_matrix_trace_and_grad_imbalance():
    g = torch.Generator().manual_seed(0)
    B, A = torch.randn(5, 3, generator=g), torch.randn(3, 4, generator=g)
    M = balancedness_matrix(B, A)
    assert M.shape == (3, 3)
    assert float(torch.trace(M)) == pytest.approx(2 * balancedness(B, A), rel=1e-12)
    Bc, Ac = torch.randn(6, 3, 1, 1, generator=g), torch.randn(3, 2, 3, 3, generator=g)  # conv factors
    assert float(torch.trace(balancedness_matrix(Bc, Ac))) == pytest.approx(2 * balancedness(Bc, Ac), rel=1e-6)
    X = torch.zeros(2, 2, requires_grad=True)
    Y = torch.zeros(2, 2, requires_grad=True)
    assert grad_imbalance(X, Y) is None
    X.grad, Y.grad = torch.full((2, 2), 1.5), torch.zeros(2, 2)  # ‖g_X‖² = 9, ‖g_Y‖² = 0
    assert grad_imbalance(X, Y) == pytest.approx(3.0)
    Y.grad = torch.full((2, 2), 2.0)  # 16
    assert grad_imbalance(X, Y) == pytest.approx((9 - 16) / 5)


def test_report_on_lora_linear_lists_active_trainable_pairs_only():
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    names = inject_lora(m, r"0|2", r=2, generator=0)
    assert names == ["0", "2"]
    m[2].add_adapter("extra", r=2, generator=1)
    m[2].set_adapter("default")  # "extra" inactive
    rep = balancedness_report(m)
    assert [p.name for p in rep.pairs] == ["0.default", "2.default"]
    assert rep.total == pytest.approx(sum(p.bal for p in rep.pairs))
    assert rep.max_abs >= rep.mean_abs > 0
    d = rep.to_dict()
    assert "balancedness/0.default/bal" in d and "balancedness/max_abs" in d
    assert "balancedness/0.default/grad_imbalance" not in d  # no gradient yet
    m[0].lora_A["default"].weight.requires_grad_(False)  # a frozen pair is not listed
    assert [p.name for p in balancedness_report(m).pairs] == ["2.default"]
    with pytest.raises(ValueError, match="no LoRA"):
        balancedness_report(nn.Linear(3, 3))


def _peft_model():
    peft = pytest.importorskip("peft")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.v_proj, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.out(torch.relu(self.q_proj(x) + self.v_proj(x)))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return peft.get_peft_model(Net(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))


def test_report_and_bar_on_a_peft_model():
    model = _peft_model()
    pairs = find_lora_pairs(model)
    rep = balancedness_report(model)
    modules = {n for n, _ in model.named_modules()}
    assert len(rep) == 2 and all(p.bal < 0 for p in rep.pairs)  # PEFT init: lora_B = 0
    assert all(p.name.rsplit(".", 1)[0] in modules for p in rep.pairs)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = BAR(torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0), pairs, mu0=1.0, total_steps=20)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert opt.t == 5 and all(r.grad_imbalance is not None for r in balancedness_report(model).pairs)


def test_bar_wraps_peft_loraplus_optimizer_unchanged():
    model = _peft_model()
    from peft.optimizers import create_loraplus_optimizer

    base = create_loraplus_optimizer(model, optimizer_cls=torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16)
    opt = BAR(base, model, variant="obar", mu0=1.0, schedule="constant")
    assert opt.param_groups is base.param_groups
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    model(x).square().mean().backward()
    opt.step()
    assert opt.t == 1
