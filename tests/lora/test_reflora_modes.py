"""RefLoRA / RefLoRA-S as optimizer wrappers: equivalences, warm-up, state, hooks and errors (arXiv:2505.18877)."""

from __future__ import annotations

import importlib.util
import io
import math

import pytest
import torch
from torch import nn

from optimlab.lora import LoRALinear, find_lora_pairs, inject_lora
from optimlab.lora.reflora import RefLoRA, balanced_metric, create_reflora_optimizer, refactor_

D64 = torch.float64


class Linear1(nn.Module):
    """One LoRA pair on a zero base weight (s = 1); loss = <G0, W> + ½‖W‖²·quad, so ∂ℓ/∂W is known."""

    def __init__(self, seed=0, r=8, d_in=64, d_out=48, dtype=D64, quad=0.0, zero_b=False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.layer = LoRALinear(d_in, d_out, r=r, alpha=r, bias=False, generator=seed).to(dtype)
        with torch.no_grad():
            self.layer.base_layer.weight.zero_()
            self.layer.lora_A["default"].weight.copy_(torch.randn(r, d_in, generator=g, dtype=D64))
            if not zero_b:
                self.layer.lora_B["default"].weight.copy_(torch.randn(d_out, r, generator=g, dtype=D64))
        self.G0 = torch.randn(d_out, d_in, generator=g, dtype=D64).to(dtype)
        self.quad, self.d_in = quad, d_in

    @property
    def A(self):
        return self.layer.lora_A["default"].weight

    @property
    def B(self):
        return self.layer.lora_B["default"].weight

    def loss(self):
        W = self.layer(torch.eye(self.d_in, dtype=self.G0.dtype)).T  # (W0 + sBA), d_out × d_in
        return (self.G0 * W).sum() + 0.5 * self.quad * W.square().sum()


def stepper(model, opt):
    def closure():
        loss = model.loss()
        loss.backward()
        return loss

    opt.zero_grad()
    return opt.step(closure)


def lora_params(model):
    return [p for p in model.parameters() if p.requires_grad]


def test_matrix_mode_equals_refactor_then_sgd():
    lr = 1e-3
    m = Linear1(0)
    ref = Linear1(0)
    stepper(m, RefLoRA(m, torch.optim.SGD(lora_params(m), lr=lr), warmup_steps=0))
    with torch.no_grad():
        P = refactor_(ref.A, ref.B)
    stepper(ref, torch.optim.SGD(lora_params(ref), lr=lr))
    assert P.shape == (8, 8)
    got, want = m.B @ m.A, ref.B @ ref.A
    assert float(torch.linalg.matrix_norm(got - want) / torch.linalg.matrix_norm(want)) <= 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_matrix_mode_depends_only_on_the_product(seed):
    g = torch.Generator().manual_seed(50 + seed)
    U, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=D64))
    V, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=D64))
    P = U @ torch.diag(torch.logspace(0, -3, 8, dtype=D64)) @ V.T
    a, b, plain_a, plain_b = (Linear1(seed) for _ in range(4))
    for m in (b, plain_b):
        with torch.no_grad():
            m.A.copy_(P.T @ m.A)
            m.B.copy_(m.B @ torch.linalg.inv(P).T)
    for m in (a, b):
        stepper(m, RefLoRA(m, torch.optim.SGD(lora_params(m), lr=1e-3), warmup_steps=0))
    for m in (plain_a, plain_b):
        stepper(m, torch.optim.SGD(lora_params(m), lr=1e-3))
    rel = float(torch.linalg.matrix_norm(a.B @ a.A - b.B @ b.A) / torch.linalg.matrix_norm(a.B @ a.A))
    plain = float(torch.linalg.matrix_norm(plain_a.B @ plain_a.A - plain_b.B @ plain_b.A)
                  / torch.linalg.matrix_norm(plain_a.B @ plain_a.A))
    assert rel <= 1e-9
    assert plain >= 1e-3  # the comparison discriminates: plain LoRA-SGD depends on the factorisation


def _roots(dW, r):
    """(ΔWΔWᵀ)^½ and (ΔWᵀΔW)^½ of a rank-r ΔW from its top-r singular triplets (exact, no tiny-eigenvalue roots)."""
    U, s, Vh = torch.linalg.svd(dW, full_matrices=False)
    return (U[:, :r] * s[:r]) @ U[:, :r].T, (Vh[:r].T * s[:r]) @ Vh[:r]


def test_matrix_mode_matches_closed_form_product_update():
    lr = 1e-3
    m = Linear1(4, r=8, d_in=20, d_out=16)  # r < min(d): the square roots act on the range
    dW = (m.B @ m.A).detach()
    G = m.G0
    stepper(m, RefLoRA(m, torch.optim.SGD(lora_params(m), lr=lr), warmup_steps=0))
    left, right = _roots(dW, 8)
    want = dW - lr * (left @ G + G @ right) + lr**2 * G @ dW.T @ G
    got = m.B @ m.A
    assert float(torch.linalg.matrix_norm(got - want) / torch.linalg.matrix_norm(want)) <= 1e-9


def test_lr_zero_leaves_factors_bit_identical():
    m = Linear1(1)
    A0, B0 = m.A.detach().clone(), m.B.detach().clone()
    stepper(m, RefLoRA(m, torch.optim.SGD(lora_params(m), lr=0.0), warmup_steps=0))
    assert torch.equal(m.A, A0) and torch.equal(m.B, B0)


def test_weight_decay_in_the_base_commutes_but_an_l2_penalty_does_not():
    """Pitfall L9, as measured: the base's decay (p <- p - lr*wd*p) scales both factors alike, so it commutes with
    any refactoring P and one matrix-mode SGD step stays exactly refactor-then-step; an L2 penalty in the loss goes
    through the preconditioner (S^-1 A instead of A) and breaks the equivalence."""
    def run(wd, penalty):
        m, ref = Linear1(0), Linear1(0)
        for model in (m, ref):
            model.penalty = penalty
        loss = m.loss

        def penalised(model):
            return lambda: model.__class__.loss(model) + 0.5 * model.penalty * (
                model.A.square().sum() + model.B.square().sum())

        m.loss, ref.loss = penalised(m), penalised(ref)
        stepper(m, RefLoRA(m, torch.optim.SGD(lora_params(m), lr=1e-3, weight_decay=wd), warmup_steps=0))
        with torch.no_grad():
            refactor_(ref.A, ref.B)
        stepper(ref, torch.optim.SGD(lora_params(ref), lr=1e-3, weight_decay=wd))
        del loss
        return float(torch.linalg.matrix_norm(m.B @ m.A - ref.B @ ref.A) / torch.linalg.matrix_norm(ref.B @ ref.A))

    assert run(0.0, 0.0) <= 1e-10
    assert run(0.01, 0.0) <= 1e-10
    assert run(0.0, 0.01) > 1e-8


# ----------------------------------------------------------------------------------------------- scalar mode
@pytest.mark.parametrize(("base", "keys"), [
    ("adamw", {"exp_avg": 1, "exp_avg_sq": 2}),
    ("amsgrad", {"exp_avg": 1, "exp_avg_sq": 2, "max_exp_avg_sq": 2}),
    ("sgd", {"momentum_buffer": 1}),
])
def test_scalar_mode_keeps_product_balances_norms_and_rescales_state(base, keys):
    def make(m):
        ps = lora_params(m)
        if base == "sgd":
            return torch.optim.SGD(ps, lr=1e-2, momentum=0.9)
        return torch.optim.AdamW(ps, lr=1e-2, amsgrad=base == "amsgrad")

    m, twin = Linear1(2, dtype=torch.float32, quad=0.1), Linear1(2, dtype=torch.float32, quad=0.1)
    opt = RefLoRA(m, make(m), mode="scalar", warmup_steps=0)
    plain = make(twin)
    stepper(m, opt)
    stepper(twin, plain)
    want = twin.B @ twin.A
    assert float(torch.linalg.matrix_norm(m.B @ m.A - want) / torch.linalg.matrix_norm(want)) <= 1e-6
    na, nb = float(m.A.norm()), float(m.B.norm())
    assert abs(na - nb) <= 1e-6 * na
    p = math.sqrt(float(twin.B.double().norm()) / float(twin.A.double().norm()))
    for key, power in keys.items():
        for t, tt, f in ((m.A, twin.A, 1 / p), (m.B, twin.B, p)):
            assert torch.allclose(opt.base.state[t][key], plain.state[tt][key] * f**power, rtol=1e-5, atol=0)


def test_scalar_mode_rejects_unknown_bases_naming_the_class():
    m = Linear1(0)
    for cls in (torch.optim.Adafactor, torch.optim.RMSprop):
        with pytest.raises(ValueError, match=cls.__name__):
            RefLoRA(m, cls(lora_params(m), lr=1e-3), mode="scalar", warmup_steps=1)


def test_merge_after_scalar_mode_is_exact():
    """Pitfall L6: merging and unmerging after RefLoRA-S gives the same function and weights (1e-6)."""
    m = Linear1(3, dtype=torch.float32, quad=0.1)
    opt = RefLoRA(m, torch.optim.AdamW(lora_params(m), lr=1e-2), mode="scalar", warmup_steps=0)
    for _ in range(3):
        stepper(m, opt)
    x = torch.eye(64)
    before = m.layer(x)
    W0 = m.layer.base_layer.weight.detach().clone()
    m.layer.merge()
    assert torch.allclose(m.layer(x), before, atol=1e-6 * float(before.abs().max()))
    with pytest.raises(ValueError, match="merged"):
        RefLoRA(m, torch.optim.AdamW(lora_params(m), lr=1e-2), mode="scalar", warmup_steps=1)
    m.layer.unmerge()
    assert torch.allclose(m.layer.base_layer.weight, W0, atol=1e-6)


# ----------------------------------------------------------------------------------------------- warm-up
def test_warmup_zero_with_zero_factor_raises():
    m = Linear1(0, zero_b=True)
    with pytest.raises(ValueError, match="warmup_steps"):
        RefLoRA(m, torch.optim.AdamW(lora_params(m), lr=1e-3), warmup_steps=0)
    RefLoRA(m, torch.optim.AdamW(lora_params(m), lr=1e-3), warmup_steps=1)  # allowed


@pytest.mark.parametrize("mode", ["matrix", "scalar"])
def test_warmup_steps_are_plain_adamw(mode):
    w = 3
    m, twin = Linear1(5, dtype=torch.float32, quad=0.1), Linear1(5, dtype=torch.float32, quad=0.1)
    opt = RefLoRA(m, torch.optim.AdamW(lora_params(m), lr=1e-2), mode=mode, warmup_steps=w)
    plain = torch.optim.AdamW(lora_params(twin), lr=1e-2)
    for _ in range(w):
        stepper(m, opt)
        stepper(twin, plain)
        assert torch.equal(m.A, twin.A) and torch.equal(m.B, twin.B)
    stepper(m, opt)
    stepper(twin, plain)
    assert not torch.equal(m.A, twin.A)


def test_zero_factor_after_warmup_is_skipped_and_counted():
    m = Linear1(0, zero_b=True)
    opt = RefLoRA(m, torch.optim.SGD(lora_params(m), lr=0.0), warmup_steps=1)
    for _ in range(3):
        stepper(m, opt)  # lr = 0: B stays 0
    assert opt.skipped_pairs == {"layer.default": 2}
    assert opt.state_dict()["wrapper"]["skipped_pairs"] == {"layer.default": 2}


def test_interval_acts_only_every_interval_steps():
    m = Linear1(0)
    opt = RefLoRA(m, torch.optim.SGD(lora_params(m), lr=1e-4), warmup_steps=2, interval=3)
    acted = []
    original = opt.metrics

    def spy(pairs):
        acted.append(opt.k)
        return original(pairs)

    opt.metrics = spy
    for _ in range(10):
        stepper(m, opt)
    assert acted == [2, 5, 8]


def test_gradscaler_skipped_step_does_not_advance_the_counter():
    m = Linear1(0, dtype=torch.float32)
    opt = RefLoRA(m, torch.optim.SGD(lora_params(m), lr=1e-4), warmup_steps=2)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    for t in range(3):
        opt.zero_grad()
        scaler.scale(m.loss()).backward()
        if t == 1:
            m.A.grad.view(-1)[0] = math.inf
        scaler.step(opt)
        scaler.update()
    assert opt.k == 2


# ----------------------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_parameters_use_float64_metric(dtype):
    m = Linear1(6, dtype=dtype)
    opt = RefLoRA(m, torch.optim.SGD(lora_params(m), lr=0.0), warmup_steps=0)
    opt.zero_grad()
    m.loss().backward()
    gA, gB = m.A.grad.clone(), m.B.grad.clone()
    S, S_inv = balanced_metric(m.A, m.B)
    opt.step()
    assert m.A.grad.dtype == dtype
    assert torch.equal(m.A.grad, (S_inv @ gA.double()).to(dtype))
    assert torch.equal(m.B.grad, (gB.double() @ S).to(dtype))
    assert bool(torch.isfinite(m.A.grad.float()).all())


# ----------------------------------------------------------------------------------------------- state and hooks
def _mlp_model():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    inject_lora(model, r"0|2", r=2, alpha=4, generator=1)
    return model


def _data(t):
    g = torch.Generator().manual_seed(100 + t)
    return torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)


def _train(model, opt, steps):
    for t in steps:
        x, y = _data(t)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("mode", ["matrix", "scalar"])
def test_state_dict_resume_is_bit_identical(mode):
    def build():
        model = _mlp_model()
        return model, create_reflora_optimizer(model, torch.optim.AdamW, lr=1e-2, mode=mode, warmup_steps=12)

    a, opt_a = build()
    _train(a, opt_a, range(10))
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
    _train(a, opt_a, range(10, 20))
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    b, opt_b = build()
    b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["opt"])
    assert opt_b.k == 10 and opt_b.param_groups is opt_b.base.param_groups
    _train(b, opt_b, range(10, 20))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert opt_b.k == 20


@pytest.mark.parametrize("mode", ["matrix", "scalar"])
def test_base_step_runs_the_hooks_and_detach_removes_them(mode):
    a, b, c = _mlp_model(), _mlp_model(), _mlp_model()
    opt_a = create_reflora_optimizer(a, torch.optim.AdamW, lr=1e-2, mode=mode, warmup_steps=1)
    opt_b = create_reflora_optimizer(b, torch.optim.AdamW, lr=1e-2, mode=mode, warmup_steps=1)
    plain = torch.optim.AdamW(lora_params(c), lr=1e-2)
    _train(a, opt_a, range(4))
    _train(b, opt_b.base, range(4))  # HF Trainer / GradScaler call base.step() directly
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    opt_b.detach()
    _train(c, plain, range(4))
    before = [p.detach().clone() for p in b.parameters()]
    _train(b, opt_b.base, range(4, 5))
    _train(c, plain, range(4, 5))
    assert opt_b.k == 4  # the hooks are gone
    assert any(not torch.equal(x, y) for x, y in zip(before, b.parameters()))


def test_clip_after_bounds_the_sgd_update():
    m = Linear1(0, dtype=torch.float32)
    A0, B0 = m.A.detach().clone(), m.B.detach().clone()
    lr, c = 0.1, 0.5
    stepper(m, RefLoRA(m, torch.optim.SGD(lora_params(m), lr=lr), warmup_steps=0, clip_after=c))
    update = math.sqrt(float((m.A - A0).square().sum() + (m.B - B0).square().sum()))
    assert update <= lr * c * (1 + 1e-5)
    assert update >= 0.5 * lr * c


def test_second_adapter_stays_bit_identical():
    """Pitfall L10: only active, trainable adapters are touched."""
    model = _mlp_model()
    model[0].add_adapter("other", r=2, alpha=2, generator=3)
    model[0].set_adapter(["default"])
    other = model[0].lora_A["other"].weight.detach().clone()
    opt = create_reflora_optimizer(model, torch.optim.SGD, lr=1e-2, warmup_steps=1)
    assert [p.qualified_name for p in opt.pairs] == ["0.default", "2.default"]
    _train(model, opt, range(3))
    assert torch.equal(model[0].lora_A["other"].weight, other)


# ----------------------------------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors():
    plain = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="no LoRA pairs"):
        RefLoRA(plain, torch.optim.SGD(plain.parameters(), lr=0.1))
    model = _mlp_model()
    head_only = torch.optim.SGD([model[0].base_layer.bias], lr=0.1)
    with pytest.raises(ValueError, match=r"not parameters of base: \['0.default.A'"):
        RefLoRA(model, head_only)
    partial = torch.optim.SGD([model[0].lora_A["default"].weight], lr=0.1)
    with pytest.raises(ValueError, match="0.default.B"):
        RefLoRA(model, partial)
    with pytest.raises(ValueError, match="LBFGS"):
        create_reflora_optimizer(model, torch.optim.LBFGS, lr=1.0)
    for key, value in (("mode", "tensor"), ("warmup_steps", -1), ("interval", 0), ("rel_eps", 0.0)):
        with pytest.raises(ValueError, match=key):
            create_reflora_optimizer(model, torch.optim.SGD, lr=0.1, **{key: value})


def test_nan_gradient_names_the_pair_and_skip_leaves_everything():
    model = _mlp_model()
    opt = create_reflora_optimizer(model, torch.optim.AdamW, lr=1e-2, warmup_steps=1, nonfinite="raise")
    x, y = _data(0)
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    model[2].lora_B["default"].weight.grad.view(-1)[0] = math.nan
    with pytest.raises(FloatingPointError, match="2.default.B"):
        opt.step()
    with pytest.raises(FloatingPointError, match="2.default.B"):
        opt.base.step()  # a direct base step cannot skip: it raises
    skip = create_reflora_optimizer(model, torch.optim.AdamW, lr=1e-2, warmup_steps=1, nonfinite="skip")
    before = [p.detach().clone() for p in model.parameters()]
    state = skip.state_dict()
    skip.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert skip.skipped_steps == 1 and skip.k == 0
    assert skip.state_dict()["base"] == state["base"]


@pytest.mark.skipif(importlib.util.find_spec("peft") is None or importlib.util.find_spec("transformers") is None,
                    reason="peft/transformers are not installed (extra optimlab[lora])")
@pytest.mark.parametrize("mode", ["matrix", "scalar"])
def test_embedding_pair_uses_the_same_metric_after_warmup(mode):
    """Pitfall L12: an embedding pair (A = 0 under PEFT's init, r × vocab) is skipped while zero, then treated with
    the same S formula."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_peft_model(BertModel(cfg), LoraConfig(r=4, lora_alpha=4, target_modules=["word_embeddings"]))
    (pair,) = find_lora_pairs(model)
    assert pair.kind == "embedding" and not bool(pair.A.ne(0).any())
    opt = create_reflora_optimizer(model, torch.optim.AdamW, lr=1e-2, mode=mode, warmup_steps=1)
    ids = torch.arange(16).reshape(2, 8)
    for _ in range(3):
        opt.zero_grad()
        model(input_ids=ids).last_hidden_state.square().mean().backward()
        opt.step()
    assert all(bool(torch.isfinite(p).all()) for p in (pair.A, pair.B))
    assert bool(pair.A.ne(0).any()) and bool(pair.B.ne(0).any())
    assert opt.skipped_pairs == {}


def test_diagnostics_report_balance_and_skips():
    model = _mlp_model()  # B = 0: gram_gap 1, S undefined, skipped while zero
    opt = create_reflora_optimizer(model, torch.optim.SGD, lr=0.0, mode="scalar", warmup_steps=1)
    _train(model, opt, range(2))
    diag = opt.diagnostics()
    assert set(diag) == {"0.default", "2.default"}
    assert diag["0.default"]["gram_gap"] == pytest.approx(1.0) and math.isnan(diag["0.default"]["S_norm"])
    assert diag["0.default"]["skipped"] == 1.0
    m = Linear1(0, dtype=torch.float32, quad=0.1)
    opt = RefLoRA(m, torch.optim.AdamW(lora_params(m), lr=1e-2), mode="scalar", warmup_steps=0)
    stepper(m, opt)
    d = opt.diagnostics()["layer.default"]
    assert abs(d["balancedness"]) <= 1e-3 * float(m.A.detach().square().sum()) and d["S_norm"] > 0
