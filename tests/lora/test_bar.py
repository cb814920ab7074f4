"""BAR (nBAR, oBAR; arXiv:2410.14802, Algs 2–3): decision rule, factors, schedules, checkpoints, AMP, accumulation,
conservation, bad input and the pitfalls of scale-invariant rescaling."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optimlab.lora import LoRALinear, find_lora_pairs
from optimlab.lora.bar import BAR, alpha_schedule, bar_factors, bar_rescale_

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def lora_mlp(seed: int = 0, dtype=torch.float64, b_std: float = 0.1) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = nn.Sequential(LoRALinear(6, 12, r=3, generator=seed + 1), nn.Tanh(), LoRALinear(12, 3, r=3,
                                                                                           generator=seed + 2))
    with torch.no_grad():
        for layer in (m[0], m[2]):
            w = layer.lora_B["default"].weight
            w.copy_(b_std * torch.randn(w.shape, generator=g))
    return m.to(dtype)


def data(t: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(100 + t)
    return torch.randn(16, 6, generator=g, dtype=dtype), torch.randint(0, 3, (16,), generator=g)


def backward(m, t, dtype=torch.float64):
    x, y = data(t, dtype)
    loss = F.cross_entropy(m(x), y)
    loss.backward()
    return loss


def trainable(m):
    return [p for p in m.parameters() if p.requires_grad]


def weights(m):
    return [p.detach().clone() for p in m.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def make_base(kind, params, lr=0.05):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


# ------------------------------------------------------------------------------------------ mu0 = 0 is the base
@pytest.mark.parametrize("variant", ["nbar", "obar"])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_mu0_zero_is_bit_identical_to_the_base(kind, variant):
    a, b = lora_mlp(), lora_mlp()
    opt_a = BAR(make_base(kind, trainable(a)), find_lora_pairs(a), variant=variant, mu0=0.0, total_steps=20)
    opt_b = make_base(kind, trainable(b))
    for t in range(20):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            backward(m, t)
            o.step()
    assert same(weights(a), weights(b))
    assert opt_a.t == 20 and opt_a.param_groups is opt_a.base.param_groups


# ------------------------------------------------------------------------------------------ the decision rule
def _pair(nx, ny, gx=None, gy=None):
    X = torch.full((2, 1), nx / math.sqrt(2), dtype=torch.float64, requires_grad=True)
    Y = torch.full((1, 2), ny / math.sqrt(2), dtype=torch.float64, requires_grad=True)  # same shape: exact ties
    if gx is not None:
        X.grad = torch.full_like(X, gx / math.sqrt(2))
    if gy is not None:
        Y.grad = torch.full_like(Y, gy / math.sqrt(2))
    return X, Y


@pytest.mark.parametrize(("variant", "gx", "gy", "wx", "wy", "grow_first"), [
    ("nbar", 2.0, 1.0, 1.0, 1.0, True), ("nbar", 1.0, 2.0, 1.0, 1.0, False), ("nbar", 1.0, 1.0, 1.0, 1.0, True),
    ("obar", 1.0, 1.0, 2.0, 1.0, False), ("obar", 1.0, 1.0, 1.0, 2.0, True), ("obar", 1.0, 1.0, 1.0, 1.0, False),
])
def test_decision_rule_and_exact_factors(variant, gx, gy, wx, wy, grow_first):
    X, Y = _pair(wx, wy, gx, gy)
    X0, Y0 = X.detach().clone(), Y.detach().clone()
    c = 0.01
    signs = bar_rescale_([(X, Y)], variant=variant, alpha=0.5, lrs=0.02)
    sx, sy = (1 + c, 1 - c) if grow_first else (1 - c, 1 + c)
    assert signs == [1 if grow_first else -1]
    assert torch.equal(X.detach(), X0 * sx) and torch.equal(Y.detach(), Y0 * sy)
    n1, n2 = (gx, gy) if variant == "nbar" else (wx, wy)
    assert bar_factors(n1, n2, c, c, variant) == (sx, sy)


def test_per_factor_lrs_loraplus_groups():
    """LoRA+ (lr_B = 16·lr_A): c_B = α·lr_B, c_A = α·lr_A, in the base's two groups."""
    m = lora_mlp()
    pairs = find_lora_pairs(m)
    A = [p.A for p in pairs]
    B = [p.B for p in pairs]
    base = torch.optim.SGD([{"params": A, "lr": 1e-3}, {"params": B, "lr": 16e-3}], lr=1e-3)
    opt = BAR(base, pairs, variant="obar", mu0=2.0, schedule="constant")
    before = [(p.B.detach().clone(), p.A.detach().clone()) for p in pairs]
    backward(m, 0)
    grads = [(p.B.grad.clone(), p.A.grad.clone()) for p in pairs]
    opt.step()
    for p, (B0, A0), (gB, gA) in zip(pairs, before, grads):
        heavier_b = B0.norm() >= A0.norm()
        sB, sA = (1 - 2 * 16e-3, 1 + 2e-3) if heavier_b else (1 + 2 * 16e-3, 1 - 2e-3)
        torch.testing.assert_close(p.B.detach(), B0 * sB - 16e-3 * gB, rtol=0, atol=1e-15)
        torch.testing.assert_close(p.A.detach(), A0 * sA - 1e-3 * gA, rtol=0, atol=1e-15)


def test_nbar_decision_is_invariant_to_loss_scaling_and_clipping():
    results = []
    for mode in ("plain", "scaled", "clipped"):
        m = lora_mlp()
        backward(m, 0)
        if mode == "scaled":
            for p in trainable(m):
                p.grad.mul_(2.0**10)
        elif mode == "clipped":
            torch.nn.utils.clip_grad_norm_(trainable(m), 1e-3)
        signs = bar_rescale_(m, variant="nbar", alpha=1.0, lrs=0.01)
        results.append((signs, weights(m)))
    assert results[0][0] == results[1][0] == results[2][0]
    assert same(results[0][1], results[1][1]) and same(results[0][1], results[2][1])


def test_equal_lrs_change_the_product_by_one_minus_c_squared():
    m = lora_mlp()
    backward(m, 0)
    pairs = find_lora_pairs(m)
    before = [p.B.detach() @ p.A.detach() for p in pairs]
    c = 0.3 * 0.1
    bar_rescale_(pairs, variant="nbar", alpha=0.3, lrs=0.1)
    for p, P0 in zip(pairs, before):
        torch.testing.assert_close(p.B.detach() @ p.A.detach(), (1 - c * c) * P0, rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_base_state_is_not_rescaled(kind):
    """The base's moments depend on the gradients only: after a BAR step they equal a plain step's, bit for bit."""
    a, b = lora_mlp(), lora_mlp()
    opt_a = BAR(make_base(kind, trainable(a)), find_lora_pairs(a), mu0=1.0, schedule="constant")
    opt_b = make_base(kind, trainable(b))
    for t in range(3):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            backward(m, 0)  # the same batch: equal gradients only at t = 0, so compare the first step's state
        opt_a.step()
        opt_b.step()
        if t == 0:
            sa, sb = opt_a.base.state_dict()["state"], opt_b.state_dict()["state"]
            for k in sa:
                for key in sa[k]:
                    assert torch.equal(torch.as_tensor(sa[k][key]), torch.as_tensor(sb[k][key]))
    assert not same(weights(a), weights(b))


# ------------------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize(("name", "expected"), [
    ("constant", (2.0, 2.0, 2.0, 2.0)), ("linear", (2.0, 1.0, 0.0, 0.0)), ("cosine", (2.0, 1.0, 0.0, 0.0))])
def test_alpha_schedules(name, expected):
    f = alpha_schedule(name, 2.0, 100)
    got = tuple(f(t) for t in (0, 50, 100, 200))
    assert got == pytest.approx(expected, abs=1e-12)


def test_callable_schedule_and_missing_total_steps():
    assert alpha_schedule(lambda t: 0.5**t, 4.0, None)(2) == 1.0
    m = lora_mlp()
    for name in ("linear", "cosine"):
        with pytest.raises(ValueError, match="total_steps"):
            BAR(make_base("sgd", trainable(m)), find_lora_pairs(m), schedule=name)
    opt = BAR(make_base("sgd", trainable(m)), find_lora_pairs(m), schedule=lambda t: 1.0 / (t + 1), mu0=0.5)
    assert opt.alpha() == 0.5 and opt.alpha(3) == 0.125


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("variant", ["nbar", "obar"])
def test_state_dict_resume_is_bit_identical(variant):
    def build():
        m = lora_mlp()
        return m, BAR(make_base("adamw", trainable(m)), find_lora_pairs(m), variant=variant, mu0=0.5,
                      total_steps=30)

    def run(m, opt, steps):
        for t in steps:
            opt.zero_grad()
            backward(m, t)
            opt.step()

    m, opt = build()
    run(m, opt, range(7))
    buf = io.BytesIO()
    torch.save({"m": m.state_dict(), "o": opt.state_dict()}, buf)
    assert opt.state_dict()["wrapper"]["t"] == 7
    run(m, opt, range(7, 12))
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    m2, opt2 = build()
    m2.load_state_dict(ck["m"])
    opt2.load_state_dict(ck["o"])
    assert opt2.t == 7 and opt2.param_groups is opt2.base.param_groups
    run(m2, opt2, range(7, 12))
    assert same(weights(m), weights(m2)) and opt2.t == 12
    assert set(opt.state_dict()["wrapper"]) >= {"t", "mu0", "variant", "schedule", "total_steps", "skipped_steps"}


# ------------------------------------------------------------------------------------------ AMP and accumulation
def test_gradscaler_skipped_step_skips_bar():
    try:
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    except Exception as e:  # pragma: no cover
        pytest.skip(f"CPU GradScaler unavailable: {e}")
    m = lora_mlp(dtype=torch.float32)
    opt = BAR(make_base("sgd", trainable(m)), find_lora_pairs(m), total_steps=10)
    x, y = data(0, torch.float32)
    scaler.scale(F.cross_entropy(m(x), y)).backward()
    scaler.step(opt)
    scaler.update()
    assert opt.t == 1
    w = weights(m)
    opt.zero_grad()
    scaler.scale(F.cross_entropy(m(x), y)).backward()
    trainable(m)[0].grad.view(-1)[0] = math.inf
    scaler.step(opt)
    scaler.update()
    assert same(weights(m), w) and opt.t == 1


def test_accumulation_gives_one_rescale_from_the_accumulated_gradients():
    m, ref = lora_mlp(), lora_mlp()
    opt = BAR(torch.optim.SGD(trainable(m), lr=0.0), find_lora_pairs(m), mu0=1.0, schedule="constant")
    opt.param_groups[0]["lr"] = 0.05
    for k in range(4):
        backward(m, k)
        backward(ref, k)
    grads = [p.grad.clone() for p in trainable(ref)]
    signs = bar_rescale_(ref, variant="nbar", alpha=1.0, lrs=0.05)
    assert all(torch.equal(p.grad, g) for p, g in zip(trainable(ref), grads))  # the rescale leaves grads alone
    torch.optim.SGD(trainable(ref), lr=0.05).step()
    opt.step()
    assert opt.t == 1 and len(signs) == 2
    assert same(weights(m), weights(ref))


# ------------------------------------------------------------------------------------------ conservation (§3.1)
def test_sgd_drift_of_the_conserved_matrix_is_second_order():
    """SGD on f(BA): BᵀB − AAᵀ drifts by O(η) over a fixed time τ = Tη, so halving η halves the drift."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 4, generator=g, dtype=torch.float64)
    B0 = 0.5 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    A0 = 0.5 * torch.randn(2, 4, generator=g, dtype=torch.float64)

    def drift(lr, tau=0.5):
        B, A = B0.clone(), A0.clone()
        M0 = B.T @ B - A @ A.T
        for _ in range(round(tau / lr)):
            G = B @ A - W
            B, A = B - lr * G @ A.T, A - lr * B.T @ G
        return float(torch.linalg.matrix_norm(B.T @ B - A @ A.T - M0))

    ratio = drift(0.005) / drift(0.01)
    assert 0.4 <= ratio <= 0.6


def test_weight_decay_contracts_bal_in_closed_form():
    """Pitfall 4: with zero gradients, SGD weight decay scales both factors by (1 − ηλ): bal by (1 − ηλ)²."""
    from optimlab.lora.balancedness import balancedness

    m = lora_mlp()
    p = find_lora_pairs(m)[0]
    bal0 = balancedness(p.B, p.A)
    opt = torch.optim.SGD([p.A, p.B], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        p.A.grad, p.B.grad = torch.zeros_like(p.A), torch.zeros_like(p.B)
        opt.step()
    assert balancedness(p.B, p.A) == pytest.approx(bal0 * (1 - 0.05) ** 6, rel=1e-12)


# ------------------------------------------------------------------------------------------ pairs and adapters
def test_merged_pair_is_refused():
    m = lora_mlp()
    m[0].merge()
    with pytest.raises(ValueError, match="merged"):
        BAR(make_base("sgd", trainable(m)), find_lora_pairs(m), schedule="constant")


def test_only_the_active_adapter_is_rescaled():
    layer = LoRALinear(6, 4, r=2, generator=0)
    layer.add_adapter("other", r=2, generator=1)
    with torch.no_grad():
        for n in ("default", "other"):
            layer.lora_B[n].weight.fill_(0.3)
    layer.set_adapter("default")
    other = [layer.lora_A["other"].weight.detach().clone(), layer.lora_B["other"].weight.detach().clone()]
    opt = BAR(torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.1), layer, mu0=1.0,
              schedule="constant")
    assert len(opt._pairs) == 1
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    layer(x).square().sum().backward()
    opt.step()
    assert torch.equal(layer.lora_A["other"].weight, other[0]) and torch.equal(layer.lora_B["other"].weight, other[1])


def test_shape_agnostic_pairs_conv_and_embedding_like():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 2, 3, 3, generator=g, requires_grad=True)  # conv lora_A: (r, in, k, k)
    B = torch.randn(4, 3, 1, 1, generator=g, requires_grad=True)  # conv lora_B: (out, r, 1, 1)
    E_A = torch.randn(3, 10, generator=g, requires_grad=True)
    E_B = torch.randn(5, 3, generator=g, requires_grad=True)
    for t in (A, B, E_A, E_B):
        t.grad = torch.ones_like(t)
    n = [t.detach().norm() for t in (B, A, E_B, E_A)]
    bar_rescale_([(B, A), (E_B, E_A)], variant="obar", alpha=1.0, lrs=0.1)
    assert [t.detach().norm() for t in (B, A, E_B, E_A)] != n
