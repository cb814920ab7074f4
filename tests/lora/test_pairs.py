"""find_lora_pairs / resolve_pairs on pure-torch LoRALinear models and on real PEFT models (tiny BERT from config)."""

import pytest
import torch
from torch import nn

from optimlab.lora import LoRALinear, LoRAPair, find_lora_pairs, inject_lora, resolve_pairs


def _mlp(seed=0):
    torch.manual_seed(seed)  # test-local model weights; the library never reads the global RNG
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def test_pairs_in_module_order_with_peft_orientation():
    m = _mlp()
    inject_lora(m, r"0|4", r=2, alpha=4, generator=0)
    pairs = find_lora_pairs(m)
    assert [p.name for p in pairs] == ["0", "4"]
    p = pairs[1]
    assert p.A.shape == (2, 8) and p.B.shape == (3, 2) and p.r == 2 and p.kind == "linear"
    assert p.scaling == 2.0 and p.adapter == "default" and not p.merged
    assert p.base_weight is m[4].base_layer.weight and p.qualified_name == "4.default"
    with torch.no_grad():
        p.B.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(m[4](x), m[4].base_layer(x) + x @ p.delta_weight().T, atol=1e-6)


def test_inactive_and_frozen_adapters_are_not_listed():
    layer = LoRALinear(4, 5, r=2, generator=0)
    layer.add_adapter("other", r=3, generator=1)
    assert [p.adapter for p in find_lora_pairs(layer)] == ["default", "other"]
    layer.set_adapter("other")
    assert [p.adapter for p in find_lora_pairs(layer)] == ["other"]
    assert [p.adapter for p in find_lora_pairs(layer, adapter="default")] == ["default"]
    layer.lora_A["other"].weight.requires_grad_(False)
    assert find_lora_pairs(layer) == []
    assert len(find_lora_pairs(layer, trainable_only=False)) == 1


def test_resolve_pairs_errors_say_what_was_found():
    with pytest.raises(ValueError, match=r"Foo: no LoRA pairs in the model \(Sequential.*no LoRA layer"):
        resolve_pairs(_mlp(), owner="Foo")
    with pytest.raises(ValueError, match="empty"):
        resolve_pairs([], owner="Foo")
    with pytest.raises(ValueError, match="LoRAPair"):
        resolve_pairs([(torch.zeros(2), torch.zeros(2))], owner="Foo")
    with pytest.raises(ValueError, match="nn.Module or a sequence"):
        resolve_pairs(3, owner="Foo")
    layer = LoRALinear(4, 5, r=2, generator=0)
    (p,) = find_lora_pairs(layer)
    twin = LoRAPair(name="twin", adapter="default", module=layer, A=p.A, B=p.B, scaling=1.0, base_weight=None,
                    kind="linear", merged=False)
    with pytest.raises(ValueError, match="two pairs"):
        resolve_pairs([p, twin], owner="Foo")
    layer.merge()
    with pytest.raises(ValueError, match="merged"):
        resolve_pairs(layer, owner="Foo")


def test_bad_kinds_and_model():
    with pytest.raises(ValueError, match="kinds"):
        find_lora_pairs(_mlp(), kinds=("dense",))
    with pytest.raises(ValueError, match="nn.Module"):
        find_lora_pairs("model")


def test_peft_model_pairs_match_peft_names():
    pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  vocab_size=100)
    model = get_peft_model(transformers.BertModel(cfg), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    pairs = find_lora_pairs(model)
    assert len(pairs) == 4
    names = dict(model.named_parameters())
    for p in pairs:
        assert names[f"{p.name}.lora_A.default.weight"] is p.A and names[f"{p.name}.lora_B.default.weight"] is p.B
        assert p.scaling == 2.0 and p.base_weight.shape == (32, 32)
    emb = get_peft_model(transformers.BertModel(cfg), LoraConfig(r=4, lora_alpha=4, target_modules=["word_embeddings"]))
    (e,) = find_lora_pairs(emb)
    assert e.kind == "embedding" and e.A.shape == (4, 100) and e.B.shape == (32, 4)
    assert find_lora_pairs(emb, kinds=("linear",)) == []
