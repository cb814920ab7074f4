"""NoRA+ preconditioning (arXiv:2410.18965; reference preconditioner of the authors' LoRA code): T-N2, L3, peers."""

from __future__ import annotations

import importlib.util
import io
import math

import pytest
import torch
from torch import nn

from optimlab.lora import find_lora_pairs, inject_lora
from optimlab.lora.nora import nora_init_
from optimlab.lora.noraplus import NoRAPlus, create_noraplus_optimizer, noraplus_precondition


def _model(seed=0, b_nonzero=True):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    inject_lora(model, r"0|2", r=2, alpha=4, generator=1)
    if b_nonzero:
        with torch.no_grad():
            for pair in find_lora_pairs(model):
                pair.B.copy_(0.3 * torch.randn(pair.B.shape, generator=g))
    return model


def _data(t):
    g = torch.Generator().manual_seed(100 + t)
    return torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)


def _backward(model, t, scale=1.0):
    x, y = _data(t)
    (scale * nn.functional.mse_loss(model(x), y)).backward()


def _lora(model):
    return [p for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize(("preset", "damping", "normalize"), [("nora", 1e-6, "fro"), ("riemannian", 1e-2, "none")])
def test_gradients_match_the_formula(preset, damping, normalize):
    model = _model()
    opt = NoRAPlus(model, torch.optim.SGD(_lora(model), lr=0.0), preset=preset)
    assert (opt.damping, opt.normalize) == (damping, normalize)
    opt.k = 1  # past the first step (where g_A is left as is)
    _backward(model, 0)
    raw = [(p.A.grad.clone(), p.B.grad.clone()) for p in find_lora_pairs(model)]
    opt.step()
    for pair, (gA, gB) in zip(find_lora_pairs(model), raw):
        A, B = pair.A.detach().double(), pair.B.detach().double()
        MB = torch.linalg.inv(B.T @ B + damping * torch.eye(2, dtype=torch.float64))
        MA = torch.linalg.inv(A @ A.T + damping * torch.eye(2, dtype=torch.float64))
        if normalize == "fro":
            MB, MA = MB / MB.norm(), MA / MA.norm()
        assert torch.allclose(pair.A.grad.double(), MB @ gA.double(), rtol=1e-6, atol=1e-9)
        assert torch.allclose(pair.B.grad.double(), gB.double() @ MA, rtol=1e-6, atol=1e-9)


def test_first_step_leaves_g_a_and_explicit_arguments_override_the_preset():
    model = _model()
    opt = NoRAPlus(model, torch.optim.SGD(_lora(model), lr=0.0), preset="nora", damping=0.5, normalize="none")
    assert (opt.damping, opt.normalize) == (0.5, "none")
    _backward(model, 0)
    gA = [p.A.grad.clone() for p in find_lora_pairs(model)]
    opt.step()
    assert all(torch.equal(p.A.grad, g) for p, g in zip(find_lora_pairs(model), gA))


def test_no_nan_while_b_is_zero():
    model = _model(b_nonzero=False)
    nora_init_(model, generator=0)
    opt = create_noraplus_optimizer(model, torch.optim.AdamW, lr=1e-2)
    for t in range(4):
        opt.zero_grad()
        _backward(model, t)
        opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert any(bool(p.B.ne(0).any()) for p in find_lora_pairs(model))


def test_once_per_optimizer_step_under_gradient_accumulation():
    """Pitfall L3: 4 micro-batches, one preconditioning of the accumulated gradient (not one per backward)."""
    model, ref = _model(), _model()
    opt = NoRAPlus(model, torch.optim.SGD(_lora(model), lr=0.1))
    calls = []
    original = opt._before
    opt._before = lambda: (calls.append(opt.k), original())[1]
    ref_opt = torch.optim.SGD(_lora(ref), lr=0.1)
    for step in range(2):
        opt.zero_grad()
        ref_opt.zero_grad()
        for micro in range(4):
            _backward(model, 4 * step + micro, scale=0.25)
            _backward(ref, 4 * step + micro, scale=0.25)
        for pair in find_lora_pairs(ref):  # the map applied once, on the accumulated gradient
            ga, gb = noraplus_precondition(pair.A, pair.B, pair.A.grad, pair.B.grad, damping=1e-6, normalize="fro",
                                           first_step=step == 0)
            pair.A.grad.copy_(ga.float())
            pair.B.grad.copy_(gb.float())
        opt.step()
        ref_opt.step()
    assert calls == [0, 1]
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(model.parameters(), ref.parameters()))


def test_state_dict_resume_is_bit_identical():
    def build():
        model = _model()
        return model, create_noraplus_optimizer(model, torch.optim.AdamW, lr=1e-2)

    def train(model, opt, steps):
        for t in steps:
            opt.zero_grad()
            _backward(model, t)
            opt.step()

    a, opt_a = build()
    train(a, opt_a, range(10))
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
    train(a, opt_a, range(10, 20))
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    b, opt_b = build()
    b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["opt"])
    assert opt_b.k == 10
    train(b, opt_b, range(10, 20))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_bad_inputs_raise():
    model = _model()
    for key, value in (("preset", "adam"), ("damping", -1.0), ("normalize", "l2"), ("clip_after", 0.0)):
        with pytest.raises(ValueError, match=key):
            create_noraplus_optimizer(model, torch.optim.SGD, lr=0.1, **{key: value})
    with pytest.raises(ValueError, match="LBFGS"):
        create_noraplus_optimizer(model, torch.optim.LBFGS, lr=1.0)
    opt = create_noraplus_optimizer(model, torch.optim.SGD, lr=0.1)
    _backward(model, 0)
    model[0].lora_A["default"].weight.grad.view(-1)[0] = math.nan
    with pytest.raises(FloatingPointError, match="0.default.A"):
        opt.step()


@pytest.mark.skipif(importlib.util.find_spec("peft") is None or importlib.util.find_spec("transformers") is None,
                    reason="peft/transformers are not installed (extra optimlab[lora])")
def test_riemannian_preset_matches_peft_create_riemannian_optimizer():
    from peft import LoraConfig, get_peft_model
    from peft.optimizers import create_riemannian_optimizer
    from transformers import BertConfig, BertModel

    def build():
        cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = get_peft_model(BertModel(cfg), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for pair in find_lora_pairs(model):
                pair.B.copy_(0.1 * torch.randn(pair.B.shape, generator=g))
        return model

    ours_m, peft_m, start = build(), build(), build()
    ours = create_noraplus_optimizer(ours_m, torch.optim.SGD, lr=0.05, preset="riemannian")
    theirs = create_riemannian_optimizer(peft_m, torch.optim.SGD, lr=0.05, reg=1e-2)
    ids = torch.arange(16).reshape(2, 8)
    for model, opt in ((ours_m, ours), (peft_m, theirs)):
        for _ in range(5):
            opt.zero_grad()
            model(input_ids=ids).last_hidden_state[..., :16].square().mean().backward()
            opt.step()
    moved = 0.0
    for (n, a), b, c in zip(ours_m.named_parameters(), peft_m.parameters(), start.parameters()):
        if a.requires_grad:
            assert float((a - b).detach().norm() / b.detach().norm()) <= 1e-6, n
            moved = max(moved, float((b - c).detach().norm() / c.detach().norm()))
    assert moved > 1e-3  # the steps did something: the agreement is not trivial
