"""NoRA initialisation ``nora_init_`` (Li, Zhang, Mokhtari, He, ICLR 2025, arXiv:2410.18965): tests T-N1, L4, L11."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch
from torch import nn

from optimlab.lora import LoRALinear, find_lora_pairs, inject_lora
from optimlab.lora.nora import nora_init_


def _model(seed=0, targets=r"0|2", alpha=4):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(24, 32), nn.Tanh(), nn.Linear(32, 16))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    inject_lora(model, targets, r=4, alpha=alpha, generator=1)
    return model


def _row_residual(A, W0):
    """‖A (I − P_row(W0))‖ / ‖A‖."""
    _, sv, Vh = torch.linalg.svd(W0.detach().double(), full_matrices=False)
    Q = Vh[sv > 1e-5 * sv[0]].T  # orthonormal basis of row(W0), float32 round-off excluded
    A = A.detach().double()
    return float(torch.linalg.matrix_norm(A - A @ Q @ Q.T) / torch.linalg.matrix_norm(A))


def test_function_unchanged_base_untouched_and_a_changed():
    model = _model()
    x = torch.randn(8, 24, generator=torch.Generator().manual_seed(5))
    y0 = model(x)
    bases = [p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n]
    A_before = [p.A.detach().clone() for p in find_lora_pairs(model)]
    names = nora_init_(model, sigma=0.1, generator=0)
    assert names == ["0.default", "2.default"]
    assert torch.equal(model(x), y0)
    assert all(torch.equal(a, b) for a, b in zip(bases, [p for n, p in model.named_parameters() if "lora_" not in n]))
    for pair, before in zip(find_lora_pairs(model), A_before):
        assert not torch.equal(pair.A, before)
        assert not bool(pair.B.ne(0).any())


def test_a0_sketches_the_loaded_weight_not_the_random_one():
    """T-N1 (iii) / pitfall L1: W0 is 'loaded' after the LoRA layers exist and has a large null space; sketching the
    random weight (the reference bug) would leave A0 outside row(W0)."""
    model = _model()
    g = torch.Generator().manual_seed(9)
    layer = model[0]
    loaded = torch.randn(32, 3, generator=g) @ torch.randn(3, 24, generator=g)  # rank 3 of 24 columns
    with torch.no_grad():
        layer.base_layer.weight.copy_(loaded)
    nora_init_(model, generator=0)
    assert _row_residual(layer.lora_A["default"].weight, loaded) <= 1e-5
    bug = torch.randn(4, 32, generator=g) @ torch.randn(32, 24, generator=g)  # a sketch of an unrelated weight
    assert _row_residual(bug, loaded) > 0.5


def test_a0_formula_and_scaling():
    """A0 = (σ/s) Ωᵀ W0: s·A0 does not depend on α (L4) and σ scales A0 linearly."""
    a8, a32 = _model(alpha=8), _model(alpha=32)
    nora_init_(a8, sigma=0.1, generator=3)
    nora_init_(a32, sigma=0.1, generator=3)
    p8, p32 = find_lora_pairs(a8)[0], find_lora_pairs(a32)[0]
    assert torch.allclose(p8.scaling * p8.A, p32.scaling * p32.A, rtol=1e-5, atol=1e-7)
    raw = _model(alpha=8)
    nora_init_(raw, sigma=0.2, generator=3, divide_by_scaling=False)
    assert torch.allclose(find_lora_pairs(raw)[0].A, 2 * p8.scaling * p8.A, rtol=1e-5, atol=1e-7)


def test_seeding_is_reproducible_per_layer_and_leaves_global_rng():
    a, b = _model(), _model()
    state = torch.get_rng_state()
    nora_init_(a, generator=7)
    nora_init_(b, generator=7)
    assert torch.equal(torch.get_rng_state(), state)
    pa, pb = find_lora_pairs(a), find_lora_pairs(b)
    assert all(torch.equal(x.A, y.A) for x, y in zip(pa, pb))
    c = _model()
    nora_init_(c, generator=8)
    assert not torch.equal(find_lora_pairs(c)[0].A, pa[0].A)
    # L11: the layer-0 sketch does not depend on which other layers are targeted
    only0 = _model(targets=r"0")
    nora_init_(only0, generator=7)
    assert torch.equal(find_lora_pairs(only0)[0].A, pa[0].A)


def test_same_omega_seed_differs_across_pairs():
    model = nn.Sequential(LoRALinear(16, 16, r=4, generator=0), LoRALinear(16, 16, r=4, generator=0))
    with torch.no_grad():
        model[1].base_layer.weight.copy_(model[0].base_layer.weight)
    nora_init_(model, generator=1)
    p0, p1 = find_lora_pairs(model)
    assert not torch.equal(p0.A, p1.A)


def test_bad_input_raises():
    model = _model()
    for sigma in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            nora_init_(model, sigma=sigma)
    with pytest.raises(ValueError, match="no LoRA pairs"):
        nora_init_(nn.Sequential(nn.Linear(3, 3)))
    model[0].merge()
    with pytest.raises(ValueError, match="merged"):
        nora_init_(model)


# ----------------------------------------------------------------------------------------------- with peft
needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None or importlib.util.find_spec("transformers")
                                is None, reason="peft/transformers are not installed (extra optimlab[lora])")


def _tiny_bert(targets=("query", "value"), seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = BertModel(cfg).eval()
    return get_peft_model(backbone, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))


@needs_peft
def test_peft_bert_function_unchanged_and_loaded_weight_sketched():
    model = _tiny_bert()
    ids = torch.arange(12).reshape(2, 6)
    y0 = model(input_ids=ids).last_hidden_state
    pairs = find_lora_pairs(model)
    assert len(pairs) == 4
    g = torch.Generator().manual_seed(3)
    loaded = torch.randn(32, 2, generator=g) @ torch.randn(2, 32, generator=g)
    with torch.no_grad():  # "load" a low-rank pretrained weight after get_peft_model
        pairs[0].base_weight.copy_(loaded)
    y0 = model(input_ids=ids).last_hidden_state
    sums = [float(p.base_weight.double().sum()) for p in pairs]
    nora_init_(model, generator=0)
    assert torch.equal(model(input_ids=ids).last_hidden_state, y0)
    assert sums == [float(p.base_weight.double().sum()) for p in pairs]
    assert _row_residual(pairs[0].A, loaded) <= 1e-5


@needs_peft
def test_peft_gpt2_fan_in_fan_out_uses_the_transpose():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = GPT2Model(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(backbone, LoraConfig(r=4, target_modules=["c_fc"], fan_in_fan_out=True))
    (pair,) = find_lora_pairs(model)
    assert pair.base_weight.shape == (128, 32)  # Conv1D stores (in, out); the pair gives d_out × d_in
    g = torch.Generator().manual_seed(1)
    low = torch.randn(128, 3, generator=g) @ torch.randn(3, 32, generator=g)
    with torch.no_grad():
        pair.base_weight.copy_(low)
    nora_init_(model, generator=0)
    assert pair.A.shape == (4, 32)
    assert _row_residual(pair.A, low) <= 1e-5


@needs_peft
def test_peft_embedding_pairs_are_skipped_with_a_warning():
    model = _tiny_bert(targets=("query", "word_embeddings"))
    with pytest.warns(UserWarning, match="embedding"):
        names = nora_init_(model, generator=0)
    assert all("word_embeddings" not in n for n in names) and len(names) == 2


@needs_peft
def test_peft_adapter_saved_after_nora_reloads_with_vanilla_peft(tmp_path):
    from peft import PeftModel

    model = _tiny_bert()
    nora_init_(model, generator=0)
    with torch.no_grad():  # a trained adapter: B != 0
        for p in find_lora_pairs(model):
            p.B.fill_(0.01)
    ids = torch.arange(12).reshape(2, 6)
    want = model(input_ids=ids).last_hidden_state
    model.save_pretrained(tmp_path)
    fresh = _tiny_bert().get_base_model()
    reloaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
    assert torch.allclose(reloaded(input_ids=ids).last_hidden_state, want, atol=1e-6)
