"""SAMTrainerMixin on a tiny BERT built from a config (no download): the Trainer's base step uses ∇L(w + ε)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from optimlab.sam.hf import SAMTrainerMixin  # noqa: E402


class Recorder(torch.optim.SGD):
    """SGD with lr 0 that records the gradient it was stepped with."""

    def step(self, closure=None):
        self.seen = [p.grad.detach().clone() for g in self.param_groups for p in g["params"]]
        return super().step(closure)


class SAMTrainer(SAMTrainerMixin, transformers.Trainer):
    sam_kwargs = {"rho": 0.5}  # noqa: RUF012


def tiny_bert():
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def test_trainer_step_uses_gradient_at_perturbed_weights(tmp_path):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (8, 6), generator=g)
    labels = torch.randint(0, 2, (8,), generator=g)
    data = [{"input_ids": ids[i], "labels": labels[i]} for i in range(8)]
    model = tiny_bert()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = Recorder(params, lr=0.0)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8,
                                          report_to=[], save_strategy="no", max_grad_norm=0.0, use_cpu=True,
                                          logging_strategy="no", dataloader_drop_last=False)
    trainer = SAMTrainer(model=model, args=args, train_dataset=data,
                         optimizers=(opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)))
    before = [p.detach().clone() for p in params]
    trainer.train()
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # lr 0 and exact restore

    def loss_at(ws):
        with torch.no_grad():
            for p, w in zip(params, ws):
                p.copy_(w)
        model.train()
        return model(input_ids=ids, labels=labels).loss

    grads = torch.autograd.grad(loss_at(before), params)
    norm = torch.sqrt(sum((gr**2).sum() for gr in grads))
    perturbed = [w + 0.5 * gr / norm for w, gr in zip(before, grads)]
    expected = torch.autograd.grad(loss_at(perturbed), params)
    for got, exp in zip(opt.seen, expected):
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-6)
    plain = torch.autograd.grad(loss_at(before), params)
    assert any(not torch.allclose(s, q, rtol=1e-3, atol=1e-5) for s, q in zip(opt.seen, plain))


def test_gradient_accumulation_is_refused(tmp_path):
    model = tiny_bert()
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=1, gradient_accumulation_steps=2,
                                          report_to=[], save_strategy="no", use_cpu=True)
    data = [{"input_ids": torch.ones(4, dtype=torch.long), "labels": torch.tensor(0)}] * 4
    trainer = SAMTrainer(model=model, args=args, train_dataset=data)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        trainer.train()
