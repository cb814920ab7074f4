"""Plain SAM: exact identities, restore, checkpoints, bad input, non-finite handling (arXiv:2010.01412)."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import batch, closure_for, mlp, params_of, run_steps, same_params
from optimlab.sam import SAM, perturbation


# ------------------------------------------------------------------------------------------- maths
def test_quadratic_descent_gradient_matches_closed_form():
    """L = ½ wᵀHw: SAM evaluates the gradient at w + ρHw/‖Hw‖, so one SGD step gives w − lr·H(w + ε)."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=g, dtype=torch.float64)
    H = A @ A.T + 0.5 * torch.eye(5, dtype=torch.float64)
    w0 = torch.randn(5, generator=g, dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    rho, lr = 0.3, 0.1
    opt = SAM([w], base=torch.optim.SGD([w], lr=lr), rho=rho)

    def closure():
        loss = 0.5 * w @ H @ w
        loss.backward()
        return loss

    loss = opt.step(closure)
    hw = H @ w0
    expected = w0 - lr * (H @ (w0 + rho * hw / hw.norm()))
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)
    assert loss.item() == pytest.approx(0.5 * float(w0 @ H @ w0), rel=1e-14)


def test_first_step_perturbation_is_rho_over_global_norm():
    model = mlp(dtype=torch.float64)  # float64: (w + ε) − w is then exact enough to compare ε itself
    x, y = batch(dtype=torch.float64)
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1), rho=0.07)
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    before = params_of(model)
    opt.first_step()
    eps = [p.detach() - b for p, b in zip(model.parameters(), before)]
    gnorm = torch.sqrt(sum((g_**2).sum() for g_ in grads))
    for e, g_ in zip(eps, grads):
        torch.testing.assert_close(e, 0.07 * g_ / gnorm, rtol=1e-9, atol=1e-12)
    assert math.isclose(float(torch.sqrt(sum((e**2).sum() for e in eps))), 0.07, rel_tol=1e-9)
    opt.restore()
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b)


    m1, m2 = mlp(), mlp()
    o1 = SAM(base=torch.optim.SGD(m1.parameters(), lr=0.1, momentum=0.9), rho=0.05)
    o2 = SAM(base=torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9), rho=0.05)
    for t in range(5):
        x, y = batch(t)
        o1.step(closure_for(m1, x, y))
        F.cross_entropy(m2(x), y).backward()
        o2.first_step()
        F.cross_entropy(m2(x), y).backward()
        o2.second_step()
    assert same_params(m1, m2)


@pytest.mark.parametrize("make_base", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
    lambda p: torch.optim.AdamW(p, lr=1e-2),
])
def test_rho_zero_equals_base_optimizer(make_base):
    m1, m2 = mlp(), mlp()
    sam = SAM(base=make_base(m1.parameters()), rho=0.0)
    plain = make_base(m2.parameters())
    for t in range(20):
        x, y = batch(t)
        sam.step(closure_for(m1, x, y))
        plain.zero_grad()
        F.cross_entropy(m2(x), y).backward()
        plain.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_zero_gradient_no_nan_and_equals_base_step():
    w = nn.Parameter(torch.ones(4))
    opt = SAM([w], base=torch.optim.SGD([w], lr=0.1, weight_decay=0.1), rho=0.05)

    def closure():
        loss = (w * 0).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.detach(), torch.full((4,), 1 - 0.1 * 0.1), rtol=0, atol=0)


def test_per_group_rho_zero_is_excluded_from_norm():
    """ε of the perturbed group equals a run in which the rho=0 group does not exist."""
    model = mlp(dtype=torch.float64)
    x, y = batch(dtype=torch.float64)
    first, second = list(model[0].parameters()), list(model[-1].parameters())
    base = torch.optim.SGD([{"params": first}, {"params": second, "rho": 0.0}], lr=0.1)
    opt = SAM(base=base, rho=0.05)
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in first]
    before = params_of(model)
    opt.first_step()
    expected = perturbation(grads, 0.05)
    for p, b, e in zip(first, before[:2], expected):
        torch.testing.assert_close(p.detach() - b, e, rtol=1e-9, atol=1e-12)
    for p, b in zip(second, before[2:]):
        assert torch.equal(p.detach(), b)
    opt.restore()


# ------------------------------------------------------------------------------------------- restore
@pytest.mark.parametrize("restore", ["copy", "subtract"])
def test_weights_restored_after_second_pass(restore):
    model = mlp()
    before = params_of(model)
    ptrs = [p.data_ptr() for p in model.parameters()]
    ids = [id(p) for p in model.parameters()]
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.0), rho=0.5, restore=restore)
    run_steps(model, opt, 3)
    for p, b in zip(model.parameters(), before):
        if restore == "copy":
            assert torch.equal(p.detach(), b)
        else:
            torch.testing.assert_close(p.detach(), b, rtol=1e-6, atol=1e-6)
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert [id(p) for p in model.parameters()] == ids


def test_param_whose_grad_appears_only_in_pass_two_is_not_touched():
    a, b = nn.Parameter(torch.tensor([1.0, 2.0])), nn.Parameter(torch.tensor([3.0]))
    opt = SAM([a, b], base=torch.optim.SGD([a, b], lr=0.0), rho=0.1)
    (a**2).sum().backward()  # pass 1: only a has a gradient
    opt.first_step()
    ((a**2).sum() + (b**2).sum()).backward()  # pass 2: b gets one too
    opt.second_step()
    assert torch.equal(a.detach(), torch.tensor([1.0, 2.0]))
    assert torch.equal(b.detach(), torch.tensor([3.0]))


def test_batchnorm_snapshot_keeps_only_first_pass_update():
    model = mlp(bn=True)
    bn = model[1]
    x, y = batch()
    ref = copy.deepcopy(model)
    F.cross_entropy(ref(x), y).backward()  # pass 1 alone, at w
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.0), rho=0.5, model=model, bn="snapshot")
    opt.step(closure_for(model, x, y))
    assert torch.equal(bn.running_mean, ref[1].running_mean)
    assert torch.equal(bn.running_var, ref[1].running_var)
    assert int(bn.num_batches_tracked) == 1
    # Without protection, pass 2 at w+ε updates the statistics a second time.
    model2 = mlp(bn=True)
    opt2 = SAM(base=torch.optim.SGD(model2.parameters(), lr=0.0), rho=0.5, model=model2, bn="none")
    opt2.step(closure_for(model2, x, y))
    assert int(model2[1].num_batches_tracked) == 2
    assert not torch.equal(model2[1].running_mean, ref[1].running_mean)


def test_batchnorm_momentum0_and_cumulative_bn_rejected():
    model = mlp(bn=True)
    x, y = batch()
    ref = copy.deepcopy(model)
    F.cross_entropy(ref(x), y).backward()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.0), rho=0.5, model=model, bn="momentum0")
    opt.step(closure_for(model, x, y))
    torch.testing.assert_close(model[1].running_mean, ref[1].running_mean)
    assert model[1].momentum == ref[1].momentum
    cumulative = mlp(bn=True)
    cumulative[1].momentum = None
    with pytest.raises(ValueError, match="momentum0"):
        SAM(base=torch.optim.SGD(cumulative.parameters(), lr=0.1), model=cumulative, bn="momentum0")


def test_replay_rng_gives_same_dropout_mask_in_both_passes():
    masks = []

    class Probe(nn.Module):
        def forward(self, x):
            out = F.dropout(x, 0.5, training=True)
            masks.append(out == 0)
            return out

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 64), Probe(), nn.Linear(64, 3))
    x, y = batch()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05, replay_rng=True)
    opt.step(closure_for(model, x, y))
    assert torch.equal(masks[0], masks[1])
    masks.clear()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05, replay_rng=False)
    opt.step(closure_for(model, x, y))
    assert not torch.equal(masks[0], masks[1])


def test_gradient_accumulation_equals_full_batch_step():
    m1, m2 = mlp(), mlp()
    x, y = batch(n=32)
    o1 = SAM(base=torch.optim.SGD(m1.parameters(), lr=0.1), rho=0.05)
    o2 = SAM(base=torch.optim.SGD(m2.parameters(), lr=0.1), rho=0.05)
    o1.step(closure_for(m1, x, y))
    for pass_ in range(2):
        for xs, ys in zip(x.chunk(4), y.chunk(4)):
            (F.cross_entropy(m2(xs), ys) / 4).backward()
        if pass_ == 0:
            o2.first_step()
        else:
            o2.second_step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------- checkpoints
def build(seed=0):
    model = mlp(seed)
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), rho=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    return model, opt, sched


def test_state_dict_round_trip_continues_bit_identically():
    ref_model, ref_opt, ref_sched = build()
    for t in range(12):
        x, y = batch(t)
        ref_opt.step(closure_for(ref_model, x, y))
        ref_sched.step()

    model, opt, sched = build()
    for t in range(7):
        x, y = batch(t)
        opt.step(closure_for(model, x, y))
        sched.step()
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), sched.state_dict()))

    model2, opt2, sched2 = build(seed=123)  # different init, overwritten by the checkpoint
    model2.load_state_dict(saved[0])
    opt2.load_state_dict(saved[1])
    sched2.load_state_dict(saved[2])
    assert opt2.param_groups is opt2.base.param_groups
    for t in range(7, 12):
        x, y = batch(t)
        opt2.step(closure_for(model2, x, y))
        sched2.step()
    for a, b in zip(ref_model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert opt2.base.param_groups[0]["lr"] == ref_opt.base.param_groups[0]["lr"]


def test_state_dict_layout_holds_no_transient_copy():
    model, opt, _ = build()
    run_steps(model, opt, 2)
    sd = opt.state_dict()
    assert set(sd) == {"base", "wrapper"}
    assert set(sd["wrapper"]) == {"state", "param_groups", "skipped_steps"}
    wrapper_bytes = sum(v.numel() * v.element_size() for s in sd["wrapper"]["state"].values()
                        for v in s.values() if torch.is_tensor(v))
    assert wrapper_bytes == 0
    assert sd["wrapper"]["skipped_steps"] == 0
    assert sd["wrapper"]["param_groups"][0]["rho"] == 0.05
    assert "lr" not in sd["wrapper"]["param_groups"][0]  # the base's hyperparameters live in sd["base"]


def test_load_state_dict_validates_groups_and_rejects_the_old_layout():
    model, opt, _ = build()
    run_steps(model, opt, 1)
    sd = copy.deepcopy(opt.state_dict())
    sd["wrapper"]["param_groups"][0]["rho"] = -1.0
    with pytest.raises(ValueError, match=r"rho must be .*\[0, inf\).*-1\.0"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["rho"] == 0.05  # a bad checkpoint changes nothing
    old = {"base": opt.base.state_dict(), "sam": opt.state_dict()["wrapper"], "skipped_steps": 0}
    with pytest.raises(ValueError, match="'base' and 'wrapper'"):
        opt.load_state_dict(old)


def test_scheduler_and_add_param_group_reach_the_base():
    model = mlp()
    base = torch.optim.SGD(model[0].parameters(), lr=1.0)
    opt = SAM(base=base, rho=0.05)
    opt.add_param_group({"params": list(model[-1].parameters()), "rho": 0.2, "lr": 0.5})
    assert len(base.param_groups) == 2 and opt.param_groups is base.param_groups
    assert base.param_groups[1]["rho"] == 0.2 and base.param_groups[1]["lr"] == 0.5
    assert base.param_groups[1]["momentum"] == 0  # the base's default was filled in
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = batch()
    opt.step(closure_for(model, x, y))
    sched.step()
    assert base.param_groups[0]["lr"] == 0.5 and base.param_groups[1]["lr"] == 0.25
    with pytest.raises(ValueError, match="rho"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(1))], "rho": -1.0})
    assert len(base.param_groups) == 2  # the rejected group reached neither optimizer


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, name", [
    ({"rho": -0.1}, "rho"), ({"rho": True}, "rho"), ({"rho": "0.1"}, "rho"), ({"rho": float("nan")}, "rho"),
    ({"rho": float("inf")}, "rho"), ({"eps": 0.0}, "eps"), ({"eps": -1.0}, "eps"), ({"bn": "freeze"}, "bn"),
    ({"restore": "swap"}, "restore"), ({"nonfinite": "ignore"}, "nonfinite"),
    ({"ascent_sync": "local"}, "ascent_sync"), ({"ascent_sync": "all"}, "ascent_sync"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    model = mlp()
    with pytest.raises(ValueError, match=name):
        SAM(base=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def test_integer_rho_is_accepted_as_float():
    model = mlp()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1), rho=1)
    assert opt.param_groups[0]["rho"] == 1.0 and isinstance(opt.param_groups[0]["rho"], float)


def test_bad_base_and_params():
    model = mlp()
    with pytest.raises(ValueError, match="base"):
        SAM(base=torch.optim.SGD, rho=0.1)
    with pytest.raises(ValueError, match="LBFGS"):
        SAM(base=torch.optim.LBFGS(model.parameters()))
    inner = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="base"):
        SAM(base=inner)
    with pytest.raises(ValueError, match="params"):
        SAM(list(model[0].parameters()), base=torch.optim.SGD(model.parameters(), lr=0.1))


def test_misuse_of_the_two_passes():
    model = mlp()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="tensor"):
        opt.step(lambda: 1.0)
    with pytest.raises(RuntimeError, match="first_step"):
        opt.second_step()
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    opt.first_step()
    with pytest.raises(RuntimeError, match="first_step"):
        opt.first_step()


# ------------------------------------------------------------------------------------------- non-finite
def nan_closure(model, x, y, when):
    calls = {"n": 0}

    def closure():
        calls["n"] += 1
        loss = F.cross_entropy(model(x), y)
        if calls["n"] == when:
            loss = loss * float("nan")
        loss.backward()
        return loss

    return closure


def test_nan_in_first_pass_raises_and_leaves_everything_untouched():
    model = mlp()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), rho=0.05)
    run_steps(model, opt, 2)
    before, state = params_of(model), copy.deepcopy(opt.state_dict())
    x, y = batch()
    with pytest.raises(FloatingPointError, match="first pass"):
        opt.step(nan_closure(model, x, y, when=1))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    after = opt.state_dict()
    for k, v in state["base"]["state"].items():
        assert torch.equal(after["base"]["state"][k]["momentum_buffer"], v["momentum_buffer"])
    opt.step(closure_for(model, x, y))  # usable afterwards


@pytest.mark.parametrize("when", [1, 2])
def test_nonfinite_skip_counts_and_changes_nothing(when):
    model = mlp()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05, nonfinite="skip")
    before = params_of(model)
    x, y = batch()
    opt.step(nan_closure(model, x, y, when=when))
    assert opt.skipped_steps == 1
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert all(p.grad is None for p in model.parameters())


def test_nan_in_second_pass_restores_weights_before_raising():
    model = mlp()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1), rho=0.5)
    before = params_of(model)
    x, y = batch()
    with pytest.raises(FloatingPointError, match="second pass"):
        opt.step(nan_closure(model, x, y, when=2))
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
