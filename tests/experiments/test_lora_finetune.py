"""The fine-tuning helpers of the LoRA claims: the cached-layers path equals the full forward; runs are seeded."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from optimlab.experiments import _lora_finetune as ft
from optimlab.experiments._lora_tasks import teacher_student, train


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
def test_cached_path_equals_the_full_forward():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(cfg).eval()
    ids = torch.randint(1, 64, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, 6:] = 0
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        top = ft.Top(torch.nn.ModuleList([copy.deepcopy(layer) for layer in model.encoder.layer[2:]]), 32, seed=0)
        h = out.hidden_states[2]
        ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in top.layers:
            r = layer(h, attention_mask=ext)
            h = r[0] if isinstance(r, tuple) else r
    keep = mask.bool()
    assert torch.allclose(h[keep], out.last_hidden_state[keep], atol=1e-5)


def test_smoke_runs_are_seeded_and_methods_differ():
    bb = ft.backbone("smoke", {})
    a = ft.finetune(bb, "reflora", 0, 2e-3, "smoke")
    b = ft.finetune(bb, "reflora", 0, 2e-3, "smoke")
    c = ft.finetune(bb, "nora", 0, 2e-3, "smoke")
    assert a.test == b.test and a.steps == [5, 10]
    assert a.test != c.test


def test_teacher_student_nora_starts_in_the_row_space_and_trains():
    task = teacher_student(0, "aligned", steps=30, d=32)
    run = train(task, 0, "nora", 1e-2)
    assert run.error < 1.0 and run.held_loss < float("inf")
