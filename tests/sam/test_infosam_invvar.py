"""InfoSAM ``variant="invvar"`` / ``PreSAM(objective="invvar")``: the draft's inverse-variance arm (spec sam.md §3.5)."""


import pytest
import torch
from torch.nn import functional as F

from conftest import batch, closure_for, mlp, run_steps, same_params
from optimlab.metrics import state_bytes
from optimlab.sam import SAM, InfoSAM, PreSAM, invvar_weight
from optimlab.sam.preconditioners import invvar_weights

pytestmark = pytest.mark.filterwarnings("ignore::optimlab.ProvisionalWarning")

RHO, LR, ALPHA, DELTA = 0.05, 0.1, 0.9, 1e-8


def _hand_invvar(model, steps, *, seed0=10, alpha=ALPHA, delta=DELTA, rho=RHO, eps=1e-12):
    """The §3.5 recursion and a plain SGD step, written out per tensor without the library."""
    params = list(model.parameters())
    m: list = [None] * len(params)
    for t in range(1, steps + 1):
        x, y = batch(seed0 + t - 1, dtype=params[0].dtype)
        g = torch.autograd.grad(F.cross_entropy(model(x), y), params)
        us = []
        for i, gi in enumerate(g):
            if t == 1:
                m[i], b = gi.clone(), torch.ones_like(gi)
            else:
                m[i] = m[i] * alpha + (1 - alpha) * gi
                b = (m[i] - gi) ** 2
            us.append(gi / (b + delta))
        norm = torch.sqrt(sum((u * u).sum() for u in us))
        with torch.no_grad():
            w = [p.clone() for p in params]
            for p, u in zip(params, us):
                p.add_(u * (rho / (norm + eps)))
        g2 = torch.autograd.grad(F.cross_entropy(model(x), y), params)
        with torch.no_grad():
            for p, wi, gi in zip(params, w, g2):
                p.copy_(wi - LR * gi)


@pytest.mark.parametrize("make", [
    lambda ps: InfoSAM(base=torch.optim.SGD(ps, lr=LR), rho=RHO, variant="invvar"),
    lambda ps: PreSAM(base=torch.optim.SGD(ps, lr=LR), rho=RHO, objective="invvar"),
])
def test_invvar_equals_the_hand_written_recursion_over_20_steps(make):
    ref, m = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    _hand_invvar(ref, 20)
    opt = make(m.parameters())
    assert opt.param_groups[0]["alpha"] == ALPHA and opt.param_groups[0]["delta"] == DELTA  # the defaults
    for t in range(20):
        opt.step(closure_for(m, *batch(10 + t, dtype=torch.float64)))
    for a, b in zip(ref.parameters(), m.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


def _first_eps(model, opt):
    x, y = batch(dtype=torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(model(x), y).backward()
    opt.first_step()
    eps = [p.detach() - b for p, b in zip(model.parameters(), before)]
    opt.restore()
    return eps


def test_first_step_equals_sam():
    m1, m2 = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    e1 = _first_eps(m1, SAM(base=torch.optim.SGD(m1.parameters(), lr=LR)))
    e2 = _first_eps(m2, InfoSAM(base=torch.optim.SGD(m2.parameters(), lr=LR), variant="invvar"))
    for a, b in zip(e1, e2):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-12)


def test_dead_relu_unit_gets_a_finite_epsilon():
    model = mlp()
    with torch.no_grad():  # hidden unit 0 never fires: its gradients (and m) are exactly 0, so b = 0
        model[0].weight[0].zero_()
        model[0].bias[0] = -10.0
    opt = InfoSAM(base=torch.optim.SGD(model.parameters(), lr=LR), variant="invvar", delta=1e-12)
    run_steps(model, opt, 5)
    eps = _first_eps_f32(model, opt)
    assert all(torch.isfinite(e).all() for e in eps)
    assert eps[0][0].abs().max() == 0 and all(torch.isfinite(p).all() for p in model.parameters())


def _first_eps_f32(model, opt):
    x, y = batch()
    before = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(model(x), y).backward()
    opt.first_step()
    eps = [p.detach() - b for p, b in zip(model.parameters(), before)]
    opt.restore(commit=False)
    return eps


def test_delta_floor_alpha_and_variant_are_validated():
    def sgd():
        return torch.optim.SGD(mlp().parameters(), lr=LR)

    with pytest.raises(ValueError, match=r"delta.*1e-12.*1e-13"):
        InfoSAM(base=sgd(), variant="invvar", delta=1e-13)
    with pytest.raises(ValueError, match="delta"):
        PreSAM(base=sgd(), objective="invvar", delta=1e-13)
    assert InfoSAM(base=sgd(), variant="invvar", delta=1e-12).defaults["delta"] == 1e-12
    assert InfoSAM(base=sgd(), variant="snr", delta=1e-13).defaults["delta"] == 1e-13  # only "invvar" has the floor
    assert InfoSAM(base=sgd()).defaults["delta"] == 1e-12 and "alpha" not in InfoSAM(base=sgd()).defaults
    for bad in (1.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="alpha"):
            InfoSAM(base=sgd(), variant="invvar", alpha=bad)
    with pytest.raises(ValueError, match="alpha"):
        InfoSAM(base=sgd(), alpha=1.0)  # validated whatever the arm
    with pytest.raises(ValueError, match=r"variant.*'snr', 'invvar'"):
        InfoSAM(base=sgd(), variant="inv")
    with pytest.raises(ValueError, match="objective"):
        PreSAM(base=sgd(), objective="inv")


def test_per_group_alpha_and_delta_are_used_and_validated():
    m1, m2 = mlp(), mlp()
    ps = list(m2.parameters())
    o1 = InfoSAM(base=torch.optim.SGD(m1.parameters(), lr=LR), variant="invvar", alpha=0.5)
    o2 = InfoSAM(base=torch.optim.SGD([{"params": ps[:2], "alpha": 0.5}, {"params": ps[2:], "alpha": 0.5}], lr=LR),
                 variant="invvar")
    assert [g["alpha"] for g in o2.param_groups] == [0.5, 0.5]
    run_steps(m1, o1, 6)
    run_steps(m2, o2, 6)
    assert same_params(m1, m2)
    for key, bad in (("alpha", 1.0), ("delta", 1e-13)):
        with pytest.raises(ValueError, match=key):
            InfoSAM(base=torch.optim.SGD([{"params": ps[:2]}, {"params": ps[2:], key: bad}], lr=LR),
                    variant="invvar")
        opt = InfoSAM(base=torch.optim.SGD(ps[:2], lr=LR), variant="invvar")
        with pytest.raises(ValueError, match=key):
            opt.add_param_group({"params": ps[2:], key: bad})
        assert len(opt.param_groups) == 1 and len(opt.base.param_groups) == 1


def test_state_is_m_and_b_twice_the_params():
    # The checkpoint round trip of this arm is the contract suite's (factory "infosam-invvar").
    m = mlp()
    opt = InfoSAM(base=torch.optim.SGD(m.parameters(), lr=LR, momentum=0.9), variant="invvar")
    run_steps(m, opt, 7)
    state = opt.state_dict()["wrapper"]["state"]
    assert all(set(v) == {"m", "b"} for v in state.values())
    assert state_bytes(state) == 2 * sum(p.numel() * p.element_size() for p in m.parameters())


def test_list_version_matches_per_tensor_and_low_precision_runs_in_float32():
    gen = torch.Generator().manual_seed(0)
    gs = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen), torch.randn(2, 2, generator=gen)]
    ms = [None, torch.randn(5, generator=gen), torch.randn(2, 2, generator=gen)]
    us, m_new, b_new = invvar_weights(ms, gs, 0.7, 1e-6)
    for g, m, u, mn, bn in zip(gs, ms, us, m_new, b_new):
        one = invvar_weight(m, g, 0.7, 1e-6)
        assert all(torch.equal(a, b) for a, b in zip(one, (u, mn, bn)))
    assert torch.equal(m_new[0], gs[0]) and torch.equal(b_new[0], torch.ones(3, 4))
    g16, m16 = gs[1].to(torch.bfloat16), ms[1].to(torch.bfloat16)
    u, m, b = invvar_weight(m16, g16, 0.7, 1e-8)
    ref_m = m16.float() * 0.7 + 0.3 * g16.float()
    assert u.dtype == torch.float32 and m.dtype == b.dtype == torch.bfloat16
    torch.testing.assert_close(u, g16.float() / ((ref_m - g16.float()) ** 2 + 1e-8), rtol=1e-6, atol=0)
    model = mlp(dtype=torch.bfloat16)
    run_steps_bf16 = [batch(10 + t, dtype=torch.bfloat16) for t in range(3)]
    opt = InfoSAM(base=torch.optim.SGD(model.parameters(), lr=LR), variant="invvar")
    for x, y in run_steps_bf16:
        opt.step(closure_for(model, x, y))
    assert all(torch.isfinite(p).all() and p.dtype == torch.bfloat16 for p in model.parameters())
