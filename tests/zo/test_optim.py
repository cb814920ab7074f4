"""ZOSGD/ZOAdam: the step equals the maths, call counts, modes, checkpoints, trace estimate, errors."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from optimlab._random import mix64
from optimlab.zo import ZOSGD, ZOAdam, two_point, zo_eval, zo_param_groups

A = torch.linspace(-1, 1, 12, dtype=torch.float64)


def _f(v):
    return torch.cos(v).sum(-1) + 0.5 * (v - A).square().sum(-1)


@pytest.mark.parametrize("kw", [{}, {"direction": "sphere"}, {"direction": "rademacher"}, {"q": 3},
                                {"difference": "forward"}, {"perturb": "swap"}, {"weight_decay": 0.1}],
                         ids=["gaussian-fused", "sphere", "rademacher", "q3", "forward", "swap", "wd"])
def test_fifty_steps_equal_the_functional_update(kw):
    p = nn.Parameter(torch.zeros(12, dtype=torch.float64))
    opt = ZOSGD([p], lr=0.05, eps=1e-2, chunk_numel=5, **kw)
    x = torch.zeros(12, dtype=torch.float64)
    for t in range(50):
        opt.step(lambda: _f(p))
        w = torch.stack([opt.regenerate(t, i)[0] for i in range(kw.get("q", 1))])
        est = two_point(_f, x, w, 1e-2, difference=kw.get("difference", "central"))
        x = x - 0.05 * (est.grad + kw.get("weight_decay", 0.0) * x)
    assert torch.allclose(p.detach(), x, rtol=1e-12, atol=1e-13)


def test_linear_f_update_is_along_the_probe_direction():
    a = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p = nn.Parameter(torch.zeros(30, dtype=torch.float64))
    opt = ZOSGD([p], lr=0.1, eps=1e-3, perturb="swap")
    opt.step(lambda: p @ a)
    w = opt.regenerate(0, 0)[0]
    assert torch.allclose(p.detach(), -0.1 * (w @ a) * w, rtol=1e-10)


def test_closure_call_counts():
    p = nn.Parameter(torch.zeros(4))
    calls = []

    def closure():
        calls.append(1)
        return p.sum()

    for kw, expect in (({"q": 3}, [6, 6]), ({"q": 2, "difference": "forward"}, [3, 3]), ({"trace_every": 2}, [3, 2])):
        opt = ZOSGD([p], **kw)
        counts = []
        for _ in range(2):
            calls.clear()
            opt.step(closure)
            counts.append(len(calls))
        assert counts == expect, kw


def test_zo_eval_keeps_batchnorm_stats_and_restores_mixed_flags():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 1))
    model.train()
    model[2].eval()
    before = model[1].running_mean.clone()
    opt = ZOSGD(model.parameters(), lr=1e-2)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))

    def closure():
        with zo_eval(model):
            assert not torch.is_grad_enabled()
            return model(x).square().mean()

    for _ in range(3):
        opt.step(closure)
    assert torch.equal(model[1].running_mean, before)
    assert [m.training for m in model] == [True, True, False, True]


def test_frozen_params_never_change_and_tied_weights_are_perturbed_once():
    emb = nn.Linear(4, 4, bias=False)
    frozen = nn.Parameter(torch.ones(3), requires_grad=False)
    seen = []
    with pytest.warns(UserWarning, match="duplicate"):  # a tied tensor listed twice
        opt = ZOSGD([emb.weight, emb.weight, frozen], lr=0.1, eps=1e-3, perturb="swap")
    w0 = emb.weight.detach().clone()

    def closure():
        seen.append((emb.weight.detach() - w0).abs().max().item())
        return emb.weight.sum() + frozen.sum()

    opt.step(closure)
    assert torch.equal(frozen, torch.ones(3))
    assert len(opt._trainables()) == 1
    w = opt.regenerate(0, 0)[0]
    assert seen[0] == pytest.approx(1e-3 * w.abs().max().item(), rel=1e-5)  # displaced once, not twice
    groups = zo_param_groups(nn.ModuleDict({"emb": emb, "norm": nn.LayerNorm(4)}), 0.1)
    assert [len(g["params"]) for g in groups] == [1, 2] and groups[1]["weight_decay"] == 0.0


def _model(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(5, 3).to(dtype)
    with torch.no_grad():
        for p in lin.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return lin


def _closure(model, t):
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(100 + t)).to(model.weight.dtype)
    return lambda: model(x).float().square().mean()


@pytest.mark.parametrize(("cls", "kw", "dtype"), [
    (ZOSGD, {"momentum": 0.9, "trace_every": 2}, torch.float32),
    (ZOAdam, {"lr": 1e-2}, torch.float32),
    (ZOSGD, {"master_dtype": torch.float32, "momentum": 0.5}, torch.bfloat16),
], ids=["sgd-momentum-trace", "adam", "bf16-master"])
def test_state_dict_resume_is_bit_identical(cls, kw, dtype):
    a = _model(dtype)
    opt = cls(a.parameters(), **{"lr": 1e-2, **kw})
    for t in range(10):
        opt.step(_closure(a, t))
    buf = io.BytesIO()
    torch.save({"m": a.state_dict(), "o": opt.state_dict()}, buf)
    for t in range(10, 20):
        opt.step(_closure(a, t))
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    b = _model(dtype)
    b.load_state_dict(ck["m"])
    opt2 = cls(b.parameters(), **{"lr": 1e-2, **kw})
    opt2.load_state_dict(ck["o"])
    if "master_dtype" in kw:
        assert all(s["master"].dtype == torch.float32 for s in opt2.state.values())
    for t in range(10, 20):
        opt2.step(_closure(b, t))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert opt.trace_estimate == opt2.trace_estimate


def test_per_group_lr_eps_and_scheduler():
    p1, p2 = nn.Parameter(torch.zeros(4, dtype=torch.float64)), nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = ZOSGD([{"params": [p1]}, {"params": [p2], "lr": 0.5, "eps": 0.1, "weight_decay": 0.0}], lr=0.1, eps=1e-3,
                perturb="swap")
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    a = torch.arange(7.0, dtype=torch.float64)
    opt.step(lambda: torch.cat([p1, p2]) @ a)
    w1, w2 = opt.regenerate(0, 0)
    h = opt.last_step.proj_grad[0] * 1e-3  # half-difference
    assert torch.allclose(p1.detach(), -0.1 * (h / 1e-3) * w1)
    assert torch.allclose(p2.detach(), -0.5 * (h / 0.1) * w2)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.25]


def test_trace_estimate_within_5_percent_on_a_quadratic():
    H = torch.linspace(0.5, 1.5, 100, dtype=torch.float64)
    p = nn.Parameter(torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    opt = ZOSGD([p], lr=0.0, eps=1e-2, trace_every=1, trace_beta=0.99)
    assert opt.trace_estimate is None
    for _ in range(2000):
        opt.step(lambda: 0.5 * (H * p * p).sum())
    assert abs(opt.trace_estimate - 100.0) <= 5.0
    assert 0 < opt.trace_estimate_stderr < 5.0


def test_fp32_trace_probe_error_grows_at_small_eps():
    """Pitfall 8: fp32 losses at eps = 1e-4 drown eps²·tr in rounding; eps = 1e-3 is far better."""
    H = torch.linspace(0.5, 1.5, 100)
    errs = {}
    for eps in (1e-4, 1e-3):
        p = nn.Parameter(torch.randn(100, generator=torch.Generator().manual_seed(0)) * 3)
        opt = ZOSGD([p], lr=0.0, eps=eps, trace_every=1, trace_beta=0.9)
        samples = []
        for _ in range(100):
            opt.step(lambda p=p: 0.5 * (H * p * p).sum())
            samples.append(opt.last_step.trace_sample)
        errs[eps] = abs(sum(samples) / len(samples) - 100.0)
    assert errs[1e-4] > 3 * errs[1e-3]


def test_nonfinite_raise_restores_and_skip_marks():
    p = nn.Parameter(torch.randn(6))
    for mode in ("swap", "inplace"):
        opt = ZOSGD([p], lr=0.1, perturb=mode)
        w = p.detach().clone()
        calls = []

        def bad(calls=calls):
            calls.append(1)
            return torch.tensor(math.nan) if len(calls) == 1 else p.sum()

        with pytest.raises(FloatingPointError, match="step 0"):
            opt.step(bad)
        assert torch.allclose(p.detach(), w, atol=1e-6)
        if mode == "swap":
            assert torch.equal(p.detach(), w)
        assert opt.state_dict()["zo"]["step"] == 0
    opt = ZOSGD([p], lr=0.1, perturb="swap", nonfinite="skip")
    w = p.detach().clone()
    out = opt.step(lambda: torch.tensor(math.inf))
    assert math.isnan(float(out)) and opt.last_step.skipped and opt.skipped_steps == 1
    assert torch.equal(p.detach(), w)


@pytest.mark.parametrize(("kw", "name"), [
    ({"lr": -1.0}, "lr"), ({"eps": 0.0}, "eps"), ({"eps": math.inf}, "eps"), ({"q": 0}, "q"), ({"q": 1.5}, "q"),
    ({"direction": "uniform"}, "direction"), ({"difference": "back"}, "difference"), ({"perturb": "copy"}, "perturb"),
    ({"nonfinite": "ignore"}, "nonfinite"), ({"distributed": "ring"}, "distributed"), ({"momentum": 1.0}, "momentum"),
    ({"dampening": -0.1}, "dampening"), ({"nesterov": True}, "nesterov"), ({"weight_decay": -1.0}, "weight_decay"),
    ({"trace_every": -1}, "trace_every"), ({"trace_beta": 1.0}, "trace_beta"), ({"chunk_numel": 0}, "chunk_numel"),
    ({"master_dtype": torch.int32}, "master_dtype"), ({"noise_dtype": "float"}, "noise_dtype"),
    ({"distributed": "shared"}, "distributed"),
])
def test_bad_arguments_raise_naming_them(kw, name):
    with pytest.raises(ValueError, match=name):
        ZOSGD([nn.Parameter(torch.zeros(2))], **kw)


def test_more_bad_inputs():
    with pytest.raises(ValueError, match="betas"):
        ZOAdam([nn.Parameter(torch.zeros(2))], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="requires_grad"):
        ZOSGD([nn.Parameter(torch.zeros(2), requires_grad=False)])
    with pytest.raises(ValueError, match="complex|dense"):
        ZOSGD([nn.Parameter(torch.zeros(2, dtype=torch.complex64))])
    p = nn.Parameter(torch.zeros(3))
    opt = ZOSGD([p])
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="shape"):
        opt.step(lambda: p * 1.0)
    opt = ZOSGD([{"params": [p]}, {"params": [nn.Parameter(torch.zeros(2))], "eps": 0.1}], trace_every=1)
    with pytest.raises(ValueError, match="eps"):
        opt.step(lambda: p.sum())


def test_sub_seeds_are_mix64_of_the_documented_keys():
    p = nn.Parameter(torch.zeros(10))
    opt = ZOSGD([p], seed=7, chunk_numel=4)
    w = opt.regenerate(3, 1)[0]
    for k, lo in enumerate(range(0, 10, 4)):
        g = torch.Generator().manual_seed(mix64(7, 3, 0, 1, 0, k) & ((1 << 63) - 1))
        assert torch.equal(w[lo:lo + 4], torch.randn(min(4, 10 - lo), generator=g))


def test_loading_a_checkpoint_from_another_device_type_warns():
    p = nn.Parameter(torch.zeros(3))
    opt = ZOSGD([p])
    opt.step(lambda: p.sum())
    sd = opt.state_dict()
    sd["zo"]["device_type"] = "cuda"
    with pytest.warns(UserWarning, match="direction stream"):
        ZOSGD([nn.Parameter(torch.zeros(3))]).load_state_dict(sd)


def test_zo_closure_and_half_loss_warning():
    from optimlab.zo import zo_closure

    model = nn.Linear(3, 1)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    run = zo_closure(model, (x,), loss_fn=lambda out, b: out.square().mean())
    loss = run()
    assert loss.dtype == torch.float32 and loss.dim() == 0 and model.training
    p = nn.Parameter(torch.zeros(2))
    with pytest.warns(UserWarning, match="half-precision"):
        ZOSGD([p]).step(lambda: p.sum().half())
