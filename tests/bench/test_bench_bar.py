"""``optimlab bench bar``: the bench's model and steps, and the cost properties it relies on (foreach launches, one
host sync, no persistent state beyond the base's)."""

from __future__ import annotations

import pytest
import torch

from optimlab.bench.bar import lora_mlp, step_functions
from optimlab.lora import find_lora_pairs
from optimlab.lora.bar import BAR

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("use_peft", [False, True])
def test_bench_model_has_one_pair_per_hidden_layer(use_peft):
    if use_peft:
        pytest.importorskip("peft")
    model, kind = lora_mlp(3, width=32, use_peft=use_peft)
    assert kind == ("peft" if use_peft else "optimlab")
    pairs = find_lora_pairs(model)
    assert len(pairs) == 3 and all(p.r == 8 for p in pairs)
    assert all(float(p.B.detach().abs().sum()) > 0 for p in pairs)  # a trained adapter, not B = 0


def test_every_method_steps_its_own_copy():
    model, _ = lora_mlp(2, width=32, use_peft=False)
    fns = step_functions(model, batch=16)
    assert set(fns) == {"lora", "nbar", "obar", "sam"}
    before = [p.detach().clone() for p in model.parameters()]
    for f in fns.values():
        f()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the template is untouched


def test_rescale_uses_few_foreach_launches_and_one_sync(monkeypatch):
    """64 tiny pairs: the rescale phase is ≤ 5 foreach launches and one host sync, whatever the number of pairs."""
    g = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(3, 2, generator=g, requires_grad=True), torch.randn(2, 3, generator=g, requires_grad=True))
             for _ in range(64)]
    params = [t for p in pairs for t in p]
    for t in params:
        t.grad = torch.randn(t.shape, generator=g)
    opt = BAR(torch.optim.SGD(params, lr=0.01), pairs, variant="obar", mu0=1.0, schedule="constant")
    calls = {"foreach": 0, "sync": 0}
    for name in ("_foreach_norm", "_foreach_mul_"):
        real = getattr(torch, name)

        def counted(*a, real=real, **k):
            calls["foreach"] += 1
            return real(*a, **k)

        monkeypatch.setattr(torch, name, counted)
    real_tolist = torch.Tensor.tolist

    def tolist(self):
        calls["sync"] += 1
        return real_tolist(self)

    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    with torch.no_grad():
        assert opt._rescale()
    assert calls["foreach"] <= 5 and calls["sync"] == 1


def test_bar_has_no_persistent_state_beyond_the_base():
    model, _ = lora_mlp(2, width=32, use_peft=False)
    params = [p for p in model.parameters() if p.requires_grad]
    base = torch.optim.AdamW(params, lr=1e-3)
    opt = BAR(base, find_lora_pairs(model), total_steps=100)
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    model(x).square().mean().backward()
    opt.step()
    sd = opt.state_dict()
    assert sd["wrapper"]["state"] == {}
    assert not any(isinstance(v, torch.Tensor) for v in sd["wrapper"].values())
    assert sd["base"]["state"].keys() == base.state_dict()["state"].keys()
