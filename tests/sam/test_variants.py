"""VaSSO, PreSAM (ASAM, Fisher-SAM), InfoSAM, step_chunked and amp_step."""

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import batch, closure_for, mlp, run_steps, same_params
from optimlab import ProvisionalWarning
from optimlab.metrics import state_bytes
from optimlab.sam import ASAM, SAM, FisherSAM, InfoSAM, PreSAM, VaSSO, amp_step

pytestmark = pytest.mark.filterwarnings("ignore::optimlab.ProvisionalWarning")


def train(model, opt, steps, seed0=0):
    run_steps(model, opt, steps, seed0=seed0)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


# ------------------------------------------------------------------------------------------- exact identities
@pytest.mark.parametrize("make", [
    lambda b: VaSSO(base=b, rho=0.05, theta=1.0),
    lambda b: PreSAM(base=b, rho=0.05),
    lambda b: FisherSAM(base=b, rho=0.05, eta=0.0),
])
def test_variants_reduce_to_sam_bit_for_bit(make):
    m1, m2 = mlp(), mlp()
    o1, o2 = SAM(base=sgd(m1), rho=0.05), make(sgd(m2))
    train(m1, o1, 50)
    train(m2, o2, 50)
    assert same_params(m1, m2)


def test_infosam_beta0_and_first_step_match_sam():
    m1, m2 = mlp(), mlp()
    o1, o2 = SAM(base=sgd(m1), rho=0.05), InfoSAM(base=sgd(m2), rho=0.05, beta=0.0)
    train(m1, o1, 20)
    train(m2, o2, 20)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6 * 0.05 * 20)
    # first step with the default beta: o = 1/(1+β²) uniformly up to δ (tiny here), so ε is SAM's
    m3, m4 = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    x, y = batch(dtype=torch.float64)
    eps = []
    for m, opt in ((m3, SAM(base=sgd(m3))), (m4, InfoSAM(base=sgd(m4), delta=1e-30))):
        before = [p.detach().clone() for p in m.parameters()]
        F.cross_entropy(m(x), y).backward()
        opt.first_step()
        eps.append([p.detach() - b for p, b in zip(m.parameters(), before)])
        opt.restore()
    for a, b in zip(*eps):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-12)


def grads_and_eps(opt, model, x, y):
    before = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(model(x), y).backward()
    g = [p.grad.clone() for p in model.parameters()]
    opt.first_step()
    eps = [p.detach() - b for p, b in zip(model.parameters(), before)]
    opt.restore()
    return before, g, eps


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def test_template_equals_closed_forms():
    """ASAM ρT²g/‖Tg‖ with T = |w|+η on weights; Fisher ρF⁻¹g/sqrt(gᵀF⁻¹g) with F = 1+ηg² (fp64)."""
    x, y = batch(dtype=torch.float64)
    rho, eta = 0.5, 0.01
    model = mlp(dtype=torch.float64)
    w, g, eps = grads_and_eps(ASAM(base=sgd(model), rho=rho, eta=eta, model=model), model, x, y)
    names = [n for n, _ in model.named_parameters()]
    T = [(wi.abs() + eta) if "weight" in n else torch.ones_like(wi) for n, wi in zip(names, w)]
    Tg = flat([t * gi for t, gi in zip(T, g)])
    expected = rho * flat([t * t * gi for t, gi in zip(T, g)]) / Tg.norm()
    torch.testing.assert_close(flat(eps), expected, rtol=1e-6, atol=1e-12)

    model = mlp(dtype=torch.float64)
    _, g, eps = grads_and_eps(FisherSAM(base=sgd(model), rho=0.1, eta=1.0), model, x, y)
    gf = flat(g)
    finv_g = gf / (1 + gf**2)
    torch.testing.assert_close(flat(eps), 0.1 * finv_g / torch.sqrt(gf @ finv_g), rtol=1e-6, atol=1e-12)


def test_asam_scope_without_model_uses_ndim_and_all_scales_every_tensor():
    x, y = batch(dtype=torch.float64)
    m1, m2 = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    _, _, e1 = grads_and_eps(ASAM(base=sgd(m1), model=m1), m1, x, y)
    _, _, e2 = grads_and_eps(ASAM(base=sgd(m2)), m2, x, y)  # no model: weight = ndim >= 2, same set here
    torch.testing.assert_close(flat(e1), flat(e2), rtol=1e-12, atol=0)
    m3 = mlp(dtype=torch.float64)
    _, _, e3 = grads_and_eps(ASAM(base=sgd(m3), scope="all"), m3, x, y)
    assert not torch.allclose(flat(e1), flat(e3))


def test_vasso_ema_matches_hand_recursion_and_uses_only_first_pass_grads():
    model = mlp(dtype=torch.float64)
    opt = VaSSO(base=torch.optim.SGD(model.parameters(), lr=0.0), rho=0.05, theta=0.3)
    d = None
    for t in range(3):
        x, y = batch(t, dtype=torch.float64)
        _, g, eps = grads_and_eps(opt, model, x, y)
        d = [gi.clone() for gi in g] if d is None else [0.7 * di + 0.3 * gi for di, gi in zip(d, g)]
        torch.testing.assert_close(flat(eps), 0.05 * flat(d) / flat(d).norm(), rtol=1e-10, atol=1e-14)
        for p, di in zip(model.parameters(), d):
            torch.testing.assert_close(opt.state[p]["d"], di, rtol=1e-12, atol=1e-15)


def test_vasso_theta1_alignment_control_is_exactly_zero():
    """With θ = 1, d_t = g_t exactly, so cos(d, ∇L) − cos(g, ∇L) = 0 (the control of vasso.adversary_alignment)."""
    model = mlp()
    opt = VaSSO(base=torch.optim.SGD(model.parameters(), lr=0.1), theta=1.0)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    g = [p.grad.clone() for p in model.parameters()]
    opt.first_step()
    opt.restore()
    assert all(torch.equal(opt.state[p]["d"], gi) for p, gi in zip(model.parameters(), g))


# ------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("make, extra", [
    (lambda m: VaSSO(base=torch.optim.AdamW(m.parameters(), lr=1e-2), theta=0.5), 1),
    (lambda m: InfoSAM(base=sgd(m)), 2),
    (lambda m: ASAM(base=sgd(m), model=m), 0),
])
def test_state_dict_round_trip_and_persistent_bytes(make, extra):
    ref_m = mlp()
    ref = make(ref_m)
    train(ref_m, ref, 12)
    m = mlp()
    opt = make(m)
    train(m, opt, 7)
    sd = copy.deepcopy((m.state_dict(), opt.state_dict()))
    n_param_bytes = sum(p.numel() * p.element_size() for p in m.parameters())
    sam_state = {k: {kk: vv for kk, vv in v.items() if torch.is_tensor(vv) and vv.numel() > 1}
                 for k, v in sd[1]["wrapper"]["state"].items()}
    assert state_bytes(sam_state) == extra * n_param_bytes
    m2 = mlp(seed=5)
    opt2 = make(m2)
    m2.load_state_dict(sd[0])
    opt2.load_state_dict(sd[1])
    assert opt2.param_groups is opt2.base.param_groups
    train(m2, opt2, 5, seed0=7)
    assert same_params(ref_m, m2)


# ------------------------------------------------------------------------------------------- chunked, AMP
def test_step_chunked_one_chunk_is_step_and_four_chunks_is_the_hand_loop():
    x, y = batch(n=32)
    m1, m2 = mlp(), mlp()
    o1, o2 = SAM(base=sgd(m1)), SAM(base=sgd(m2))
    o1.step(closure_for(m1, x, y))
    o2.step_chunked(lambda k: closure_for(m2, x, y)(), 1)
    assert same_params(m1, m2)

    m3, m4 = mlp(), mlp()
    o3 = SAM(base=torch.optim.SGD(m3.parameters(), lr=0.1))
    o3.step_chunked(lambda k: closure_for(m3, x[8 * k: 8 * k + 8], y[8 * k: 8 * k + 8])(), 4)
    acc = [torch.zeros_like(p) for p in m4.parameters()]
    for k in range(4):
        xs, ys = x[8 * k: 8 * k + 8], y[8 * k: 8 * k + 8]
        w = [p.detach().clone() for p in m4.parameters()]
        g = torch.autograd.grad(F.cross_entropy(m4(xs), ys), list(m4.parameters()))
        n = flat(g).norm()
        with torch.no_grad():
            for p, gi in zip(m4.parameters(), g):
                p.add_(0.05 * gi / n)
        g2 = torch.autograd.grad(F.cross_entropy(m4(xs), ys), list(m4.parameters()))
        with torch.no_grad():
            for p, wi, a, gi in zip(m4.parameters(), w, acc, g2):
                p.copy_(wi)
                a.add_(gi)
    with torch.no_grad():
        for p, a in zip(m4.parameters(), acc):
            p.sub_(0.1 * a / 4)
    for a, b in zip(m3.parameters(), m4.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(NotImplementedError):
        VaSSO(base=sgd(m1)).step_chunked(lambda k: closure_for(m1, x, y)(), 2)
    with pytest.raises(ValueError, match="n_chunks"):
        o1.step_chunked(lambda k: closure_for(m1, x, y)(), 0)


def scaler_or_skip():
    try:
        return torch.amp.GradScaler("cpu", init_scale=2.0**10)
    except Exception as err:  # pragma: no cover - depends on the torch build
        pytest.skip(f"GradScaler('cpu') unavailable: {err}")


def test_amp_step_without_overflow_matches_plain_step():
    x, y = batch()
    m1, m2 = mlp(), mlp()
    o1, o2 = SAM(base=sgd(m1)), SAM(base=sgd(m2))
    scaler = scaler_or_skip()
    for _ in range(3):
        o1.step(closure_for(m1, x, y))
        loss = amp_step(o2, scaler, lambda: F.cross_entropy(m2(x), y))
        assert loss is not None
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad_pass", [1, 2])
def test_amp_overflow_leaves_weights_and_state_and_reduces_scale(bad_pass):
    x, y = batch()
    model = mlp()
    opt = VaSSO(base=sgd(model))
    scaler = scaler_or_skip()
    amp_step(opt, scaler, lambda: F.cross_entropy(model(x), y))
    before = [p.detach().clone() for p in model.parameters()]
    base_state = copy.deepcopy(opt.base.state_dict())
    d_before = [opt.state[p]["d"].clone() for p in model.parameters()]
    scale = scaler.get_scale()
    calls = {"n": 0}

    def loss_fn():
        calls["n"] += 1
        loss = F.cross_entropy(model(x), y)
        return loss * float("inf") if calls["n"] == bad_pass else loss

    amp_step(opt, scaler, loss_fn)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    after = opt.base.state_dict()["state"]
    assert all(torch.equal(after[k]["momentum_buffer"], v["momentum_buffer"]) for k, v in base_state["state"].items())
    assert all(torch.equal(opt.state[p]["d"], d) for p, d in zip(model.parameters(), d_before))  # VaSSO's state too
    assert scaler.get_scale() < scale


# ------------------------------------------------------------------------------------------- input and state safety
@pytest.mark.parametrize("make, name", [
    (lambda b: VaSSO(base=b, theta=0.0), "theta"), (lambda b: VaSSO(base=b, theta=1.5), "theta"),
    (lambda b: VaSSO(base=b, theta=True), "theta"), (lambda b: InfoSAM(base=b, beta=1.0), "beta"),
    (lambda b: InfoSAM(base=b, delta=0.0), "delta"), (lambda b: ASAM(base=b, eta=-1.0), "eta"),
    (lambda b: FisherSAM(base=b, eta=float("nan")), "eta"), (lambda b: ASAM(base=b, scope="layers"), "scope"),
    (lambda b: PreSAM(base=b, constraint="diag"), "constraint"), (lambda b: PreSAM(base=b, objective="adam"), "objective"),
    (lambda b: VaSSO(base=b, rho=-1), "rho"),
])
def test_bad_variant_arguments(make, name):
    with pytest.raises(ValueError, match=name):
        make(sgd(mlp()))


def test_nan_first_pass_leaves_vasso_state_untouched():
    model = mlp()
    opt = VaSSO(base=sgd(model), nonfinite="skip")
    train(model, opt, 2)
    d_before = [opt.state[p]["d"].clone() for p in model.parameters()]
    x, y = batch()

    def bad():
        loss = F.cross_entropy(model(x), y) * float("nan")
        loss.backward()
        return loss

    opt.step(bad)
    assert opt.skipped_steps == 1
    assert all(torch.equal(opt.state[p]["d"], d) for p, d in zip(model.parameters(), d_before))


def test_callable_preconditioners_and_include_wd():
    x, y = batch(dtype=torch.float64)
    m1, m2 = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    _, _, e1 = grads_and_eps(PreSAM(base=sgd(m1), constraint=lambda p, g, grp, st: torch.full_like(p, 3.0)), m1, x, y)
    _, _, e2 = grads_and_eps(SAM(base=sgd(m2)), m2, x, y)  # a constant c cancels: ε = ρ c²g/(c‖g‖) ∝ g, norm ρ·c
    torch.testing.assert_close(flat(e1), 3.0 * flat(e2), rtol=1e-10, atol=1e-14)
    m3 = mlp(dtype=torch.float64)
    w, g, e3 = grads_and_eps(SAM(base=torch.optim.SGD(m3.parameters(), lr=0.1, weight_decay=0.5),
                                 include_wd_in_ascent=True), m3, x, y)
    u = flat([gi + 0.5 * wi for gi, wi in zip(g, w)])
    torch.testing.assert_close(flat(e3), 0.05 * u / u.norm(), rtol=1e-10, atol=1e-14)


def test_sam_epsilon_is_invariant_to_gradient_scale_but_fisher_is_not():
    """Pitfall 10: clipping (rescaling) the first-pass gradient does not change SAM's ε, but changes Fisher-SAM's."""
    for cls, invariant in ((SAM, True), (FisherSAM, False)):
        p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        opt = cls([p], base=torch.optim.SGD([p], lr=0.0))
        out = []
        for s in (1.0, 0.1):
            p.grad = s * torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64)
            w = p.detach().clone()
            opt.first_step()
            out.append(p.detach() - w)
            opt.restore()
        assert torch.allclose(out[0], out[1], rtol=1e-12) == invariant


def test_infosam_warns_provisional_once():
    import optimlab.sam.infosam as mod

    mod._INFOSAM_WARNED = False
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        InfoSAM(base=sgd(mlp()))
        InfoSAM(base=sgd(mlp()))
    assert sum(issubclass(r.category, ProvisionalWarning) for r in rec) == 1


def test_rho_scheduler_follows_the_lr_and_round_trips():
    from optimlab.sam import RhoScheduler

    model = mlp()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.2), rho=0.1)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - t / 4)
    rho_sched = RhoScheduler(opt, rho_min=0.02)
    seen = []
    for _ in range(4):
        train(model, opt, 1)
        lr_sched.step()
        seen.append(rho_sched.step()[0])
    assert seen == pytest.approx([0.02 + 0.08 * f for f in (0.75, 0.5, 0.25, 0.0)])
    other = RhoScheduler(opt, rho_max=1.0, lr_max=1.0)
    other.load_state_dict(rho_sched.state_dict())
    assert other.state_dict() == rho_sched.state_dict()
    with pytest.raises(ValueError, match="rho_max"):
        RhoScheduler(opt, rho_min=0.5, rho_max=0.1)


def test_snr_weight_matches_the_spec_formula():
    from optimlab.sam import snr_weight

    gen = torch.Generator().manual_seed(3)
    beta, delta = 0.8, 1e-6
    m = s = None
    for t in range(1, 5):
        g = torch.randn(50, generator=gen, dtype=torch.float64)
        m_ref = (1 - beta) * g if m is None else beta * m + (1 - beta) * g
        s_ref = (1 - beta) * (g - m_ref) ** 2 if s is None else beta * s + (1 - beta) * (g - m_ref) ** 2
        mh, sh = m_ref / (1 - beta**t), s_ref / (1 - beta**t)
        o, m, s = snr_weight(m, s, g, t, beta, delta)
        torch.testing.assert_close(m, m_ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(s, s_ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(o, mh**2 / (mh**2 + sh + delta), rtol=1e-12, atol=1e-15)
        assert bool(((o >= 0) & (o <= 1)).all())
