"""§8: the factories drop into a Hugging Face ``Trainer`` (``optimizers=(opt, sched)``): the hooks run inside the
trainer's optimizer step, once per step."""

from __future__ import annotations

import importlib.util

import pytest
import torch

needs_hf = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("peft", "transformers", "accelerate")),
                              reason="peft/transformers/accelerate are not installed (extra optimlab[lora])")


@needs_hf
def test_minimal_trainer_run_with_reflora(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from optimlab.lora.reflora import create_reflora_optimizer

    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=16, num_labels=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_peft_model(BertForSequenceClassification(cfg),
                               LoraConfig(r=4, lora_alpha=4, target_modules=["query", "value"]))
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(1, 64, (8,), generator=g), "labels": int(i % 2)} for i in range(16)]
    opt = create_reflora_optimizer(model, torch.optim.AdamW, lr=1e-2, mode="scalar", warmup_steps=1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, report_to=[],
                             save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, sched)).train()
    assert opt.k == 3
    for pair in opt.pairs:
        na, nb = float(pair.A.norm()), float(pair.B.norm())
        assert abs(na - nb) <= 1e-4 * na  # RefLoRA-S balanced the norms after the last step
