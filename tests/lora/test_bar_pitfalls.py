"""BAR (arXiv:2410.14802): bad input, the non-finite policy, sharded tensors, the pitfalls of scale-invariant
rescaling (sign convention, dead adapters, low precision, the callback form) and DDP."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from test_bar import backward, data, lora_mlp, make_base, same, trainable, weights
from torch import nn
from torch.nn import functional as F

from optimlab.lora import find_lora_pairs
from optimlab.lora.bar import BAR, alpha_schedule, bar_rescale_, create_bar_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_raises_saying_what_was_found():
    m = lora_mlp()
    pairs = find_lora_pairs(m)
    base = make_base("sgd", trainable(m))
    with pytest.raises(ValueError, match="empty"):
        BAR(base, [], schedule="constant")
    with pytest.raises(ValueError, match=r"'0\.lora_[AB]\.default\.weight' is not optimised by base"):
        BAR(make_base("sgd", [pairs[1].A, pairs[1].B]), pairs, schedule="constant")
    with pytest.raises(ValueError, match="appears twice"):
        BAR(base, [(pairs[0].B, pairs[0].A), (pairs[1].B, pairs[0].A)], schedule="constant")
    bad = copy.copy(pairs[0])
    object.__setattr__(bad, "A", nn.Parameter(torch.zeros(5, 6, dtype=torch.float64)))
    with pytest.raises(ValueError, match="r mismatch"):
        BAR(base, [bad], schedule="constant")
    frozen = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="requires_grad=False"):
        BAR(base, [(frozen, pairs[0].A)], schedule="constant")
    with pytest.raises(ValueError, match="no LoRA pairs"):
        create_bar_optimizer(nn.Sequential(nn.Linear(3, 3)), lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="mu0"):
        BAR(base, pairs, mu0=-1.0, schedule="constant")
    with pytest.raises(ValueError, match="mu0"):
        alpha_schedule("constant", -0.5, None)
    opt = BAR(make_base("sgd", trainable(m), lr=0.5), pairs, mu0=4.0, schedule="constant")
    backward(m, 0)
    w = weights(m)
    with pytest.raises(ValueError, match=r"alpha_t \* lr = 4 \* 0.5"):
        opt.step()
    assert same(weights(m), w)


@pytest.mark.parametrize("variant", ["nbar", "obar"])
def test_nonfinite_raise_and_skip(variant):
    for policy in ("raise", "skip"):
        m = lora_mlp()
        opt = BAR(make_base("adamw", trainable(m)), m, variant=variant, total_steps=10, nonfinite=policy)
        backward(m, 0)
        trainable(m)[1].grad.view(-1)[0] = math.nan
        w, st = weights(m), copy.deepcopy(opt.state_dict())
        if policy == "raise":
            with pytest.raises(FloatingPointError):
                opt.step()
        else:
            opt.step()
            assert opt.skipped_steps == 1
        assert same(weights(m), w) and opt.t == 0 and opt.state_dict()["base"] == st["base"]


def test_sharded_dtensor_is_not_supported():
    class FakeDTensor(torch.Tensor):  # what BAR checks: DTensor's type name
        pass

    FakeDTensor.__name__ = "DTensor"
    t = torch.zeros(2, 2, requires_grad=True).as_subclass(FakeDTensor)
    with pytest.raises(NotImplementedError, match="sharded"):
        bar_rescale_([(t, torch.zeros(2, 2, requires_grad=True))], variant="nbar", alpha=1.0, lrs=0.1)


# ------------------------------------------------------------------------------------------ pitfalls
def test_peft_init_sign_convention_and_the_rule_shrinks_abs_bal():
    """Pitfall 1: PEFT init (B = 0) gives bal < 0; both variants then move |bal| down."""
    from optimlab.lora.balancedness import balancedness

    for variant in ("nbar", "obar"):
        m = lora_mlp(b_std=0.0)
        p = find_lora_pairs(m)[1]
        bal0 = balancedness(p.B, p.A)
        assert bal0 < 0
        opt = BAR(torch.optim.SGD(trainable(m), lr=0.05), m, variant=variant, mu0=1.0, schedule="constant")
        for t in range(20):
            opt.zero_grad()
            backward(m, t)
            opt.step()
        assert abs(balancedness(p.B, p.A)) < abs(bal0)


def test_dead_adapter_warning():
    m = lora_mlp(b_std=0.0)
    with pytest.warns(RuntimeWarning, match="dead|stall"):
        BAR(torch.optim.AdamW(trainable(m), lr=0.01), m, mu0=5.0, total_steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BAR(torch.optim.AdamW(trainable(m), lr=3e-4), m, mu0=1.0, total_steps=1000)  # the paper's setting


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_warns_and_accumulate_applies_the_pending_multiplier(dtype):
    m = lora_mlp(dtype=dtype)
    opt = BAR(torch.optim.SGD(trainable(m), lr=1e-4), m, variant="obar", mu0=1.0, schedule="constant")
    with torch.no_grad():
        for p in trainable(m):
            p.grad = torch.zeros_like(p)
    w = weights(m)
    with pytest.warns(RuntimeWarning, match="rounds to 1"):
        opt.step()
    assert same(weights(m), w)  # the silent no-op the warning is about
    acc = BAR(torch.optim.SGD(trainable(m), lr=1e-4), m, variant="obar", mu0=1.0, schedule="constant",
              low_precision="accumulate")
    eps = torch.finfo(dtype).eps
    n_steps = int(eps / 2 / 1e-4) + 2  # until (1 ± 1e-4)^n is representable
    changed_at = None
    for k in range(n_steps):
        with torch.no_grad():
            for p in trainable(m):
                p.grad = torch.zeros_like(p)
        acc.step()
        if changed_at is None and not same(weights(m), w):
            changed_at = k + 1
    assert changed_at is not None and changed_at > 1
    pending = [s["bar_pending"] for s in acc.state.values() if "bar_pending" in s]
    assert pending and all(abs(v - 1) <= eps / 2 for v in pending)


def test_callback_acts_on_every_pre_optimizer_step():
    """Pitfall 5: the callback form runs whenever the Trainer calls on_pre_optimizer_step (also on steps the fp16
    loss scaler then skips); the wrapper form is skip-aware (test_gradscaler_skipped_step_skips_bar)."""
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    from optimlab.lora.bar import BARCallback

    m = lora_mlp()
    opt = torch.optim.SGD(trainable(m), lr=0.05)
    cb = BARCallback(mu0=1.0, schedule="constant")
    backward(m, 0)
    w = weights(m)
    state = SimpleNamespace(global_step=0, max_steps=10)
    cb.on_pre_optimizer_step(None, state, None, model=m, optimizer=opt)
    assert not same(weights(m), w)  # rescaled, although no optimizer step followed


def test_callback_needs_on_pre_optimizer_step(monkeypatch):
    transformers = pytest.importorskip("transformers")
    from optimlab.lora.bar import BARCallback

    monkeypatch.delattr(transformers.TrainerCallback, "on_pre_optimizer_step")
    with pytest.raises(ImportError, match="on_pre_optimizer_step"):
        BARCallback()


# ------------------------------------------------------------------------------------------ DDP
def _ddp_worker(process_rank, world_size):
    from torch.nn.parallel import DistributedDataParallel as DDP

    m = lora_mlp(dtype=torch.float32)
    ddp = DDP(m)
    opt = BAR(torch.optim.AdamW(trainable(m), lr=0.01), find_lora_pairs(m), total_steps=10)
    for t in range(10):
        opt.zero_grad()
        x, y = data(10 * t + process_rank, torch.float32)
        F.cross_entropy(ddp(x), y).backward()
        opt.step()
    flat = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    out = [torch.zeros_like(flat) for _ in range(world_size)]
    torch.distributed.all_gather(out, flat)
    return all(torch.equal(out[0], o) for o in out)


def test_ddp_replicas_stay_identical():
    from optimlab.distributed import run_local

    assert all(run_local(_ddp_worker, world_size=2, timeout=120))


def test_negative_alpha_is_refused_by_the_pure_function():
    m = lora_mlp()
    backward(m, 0)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got -1"):
        bar_rescale_(m, variant="nbar", alpha=-1.0, lrs=0.1)


class _TinyLoRA(nn.Module):
    """A Trainer-compatible model: forward(x, labels) -> {"loss", "logits"} over two LoRA layers."""

    def __init__(self):
        super().__init__()
        self.net = lora_mlp(dtype=torch.float32)

    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


@pytest.mark.slow
def test_hf_trainer_with_create_bar_optimizer_and_callback(tmp_path):
    transformers = pytest.importorskip("transformers")
    from optimlab.lora.bar import BalancednessLogger, BARCallback

    ds = [{"x": data(k, torch.float32)[0][0], "labels": data(k, torch.float32)[1][0]} for k in range(16)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                                          report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
                                          remove_unused_columns=False, disable_tqdm=True)
    model = _TinyLoRA()
    opt = create_bar_optimizer(model, lr=0.01, total_steps=3, weight_decay=0.0)
    logger = BalancednessLogger(every=1)
    transformers.Trainer(model=model, args=args, train_dataset=ds, optimizers=(opt, None),
                         callbacks=[logger]).train()
    assert opt.t == 3 and len(logger.history) == 3
    model2 = _TinyLoRA()
    cb = BARCallback(mu0=1.0, schedule="linear")
    w = weights(model2)
    transformers.Trainer(model=model2, args=args, train_dataset=ds, callbacks=[cb]).train()
    assert cb.pairs is not None and len(cb.pairs) == 2 and not same(weights(model2), w)


def test_adam_moves_balancedness_while_sgd_conserves_it():
    """Pitfall 8: only (S)GD conserves bal; under Adam the reference is plain LoRA's curve, never a constant."""
    from optimlab.lora.balancedness import balancedness_report

    drift = {}
    for kind in ("sgd", "adamw"):
        m = lora_mlp()
        total0 = balancedness_report(m).total
        opt = (torch.optim.SGD(trainable(m), lr=1e-3) if kind == "sgd"
               else torch.optim.AdamW(trainable(m), lr=1e-3, weight_decay=0.0))
        for t in range(30):
            opt.zero_grad()
            backward(m, t)
            opt.step()
        drift[kind] = abs(balancedness_report(m).total - total0) / abs(total0)
    assert drift["sgd"] < 1e-4 < drift["adamw"]
