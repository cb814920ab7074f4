"""LoRALinear and inject_lora: PEFT's names and init, function unchanged at init, merge/unmerge, errors."""

import math

import pytest
import torch
from torch import nn

from optimlab.lora import LoRALinear, inject_lora


def test_fresh_layer_is_the_base_layer_and_init_is_seeded():
    a, b = LoRALinear(5, 7, r=3, alpha=6, generator=4), LoRALinear(5, 7, r=3, alpha=6, generator=4)
    assert torch.equal(a.lora_A["default"].weight, b.lora_A["default"].weight)
    assert torch.count_nonzero(a.lora_B["default"].weight) == 0
    bound = 1 / math.sqrt(5)  # kaiming_uniform with a=sqrt(5) on fan_in=5
    assert a.lora_A["default"].weight.abs().max() <= bound
    assert a.scaling["default"] == 2.0
    assert LoRALinear(5, 7, r=4, alpha=8, use_rslora=True).scaling["default"] == 4.0
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a(x), a.base_layer(x))
    assert not any(p.requires_grad for p in a.base_layer.parameters())


def test_merge_unmerge_round_trip():
    layer = LoRALinear(4, 4, r=2, generator=0)
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(0.5)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    y = layer(x)
    w0 = layer.base_layer.weight.clone()
    layer.merge()
    assert layer.merged and torch.allclose(layer(x), y, atol=1e-6)
    layer.unmerge()
    assert not layer.merged and torch.allclose(layer.base_layer.weight, w0, atol=1e-6)


def test_inject_keeps_function_freezes_base_and_errors():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    for p in model.parameters():
        nn.init.normal_(p, generator=g)
    x = torch.randn(5, 4, generator=g)
    y = model(x)
    w = model[0].weight
    assert inject_lora(model, r"0", r=2) == ["0"]
    assert isinstance(model[0], LoRALinear) and model[0].base_layer.weight is w
    assert torch.equal(model(x), y)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["0.lora_A.default.weight", "0.lora_B.default.weight"]
    with pytest.raises(ValueError, match="matches no nn.Linear"):
        inject_lora(model, r"nothing")
    with pytest.raises(ValueError, match="r must be"):
        LoRALinear(3, 3, r=0)
    with pytest.raises(ValueError, match="alpha must be"):
        LoRALinear(3, 3, alpha=-1.0)
    with pytest.raises(ValueError, match="exists already"):
        model[0].add_adapter("default")
    with pytest.raises(ValueError, match="unknown adapter"):
        model[0].set_adapter("nope")
