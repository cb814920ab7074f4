"""ρ-sharpness and m-sharpness against closed forms and invariances."""

import pytest
import torch
from torch import nn

from optimlab.metrics import batched_m_sharpness, m_sharpness, rho_sharpness


class Quadratic(nn.Module):
    """L(w) = ½ (w − c)ᵀ H (w − c) (the input is ignored)."""

    def __init__(self, H, c, w):
        super().__init__()
        self.H, self.c, self.w = H, c, nn.Parameter(w.clone())

    def forward(self, x):
        d = self.w - self.c
        return (0.5 * d @ self.H @ d).expand(x.shape[0])


def mean_loss(out, y):
    return out.mean()


def test_one_step_sharpness_matches_closed_form_on_a_quadratic():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    H = A @ A.T
    c, w = torch.zeros(6, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    model = Quadratic(H, c, w)
    data = (torch.zeros(4, 1), torch.zeros(4))
    rho = 1e-2
    grad = H @ w
    e = rho * grad / grad.norm()
    expected = float(grad @ e + 0.5 * e @ H @ e)  # exact for a quadratic
    res = rho_sharpness(model, mean_loss, data, rho)
    assert res.value == pytest.approx(expected, rel=1e-10)
    assert rho_sharpness(model, mean_loss, data, rho, steps=5).value >= res.value - 1e-15


def relu_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))


def test_adaptive_sharpness_is_rescaling_invariant_and_plain_is_not():
    X, y = torch.randn(64, 5, generator=torch.Generator().manual_seed(1)), torch.arange(64) % 3
    net = relu_net()
    scaled = relu_net()
    with torch.no_grad():
        scaled[0].weight.mul_(4.0)
        scaled[0].bias.mul_(4.0)
        scaled[2].weight.div_(4.0)
    torch.testing.assert_close(net(X), scaled(X), rtol=1e-5, atol=1e-6)
    loss = nn.CrossEntropyLoss()
    a1 = rho_sharpness(net, loss, (X, y), 0.05, adaptive=True, eta=0.0).value
    a2 = rho_sharpness(scaled, loss, (X, y), 0.05, adaptive=True, eta=0.0).value
    p1 = rho_sharpness(net, loss, (X, y), 0.05).value
    p2 = rho_sharpness(scaled, loss, (X, y), 0.05).value
    assert a1 == pytest.approx(a2, rel=1e-3)
    assert abs(p1 - p2) > 0.1 * abs(p1)


def test_m_sharpness_with_m_equal_n_is_rho_sharpness_and_bad_input():
    net = relu_net().double()  # float64: the permuted order must not matter beyond rounding
    X, y = torch.randn(40, 5, dtype=torch.float64), torch.arange(40) % 3
    loss = nn.CrossEntropyLoss()
    assert m_sharpness(net, loss, (X, y), 0.05, 40) == pytest.approx(rho_sharpness(net, loss, (X, y), 0.05).value,
                                                                     rel=1e-5)
    small = m_sharpness(net, loss, (X, y), 0.05, 4, generator=torch.Generator().manual_seed(0))
    assert small == m_sharpness(net, loss, (X, y), 0.05, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="rho"):
        rho_sharpness(net, loss, (X, y), -1.0)
    with pytest.raises(ValueError, match="m must"):
        m_sharpness(net, loss, (X, y), 0.05, 41)
    with pytest.raises(ValueError, match="steps"):
        rho_sharpness(net, loss, (X, y), 0.05, steps=0)


def test_m_sharpness_equals_hand_written_chunk_mean_with_remainder_dropped():
    net = relu_net()
    X, y = torch.randn(10, 5, generator=torch.Generator().manual_seed(3)), torch.arange(10) % 3
    loss = nn.CrossEntropyLoss()
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(9))
    chunks = [perm[:4], perm[4:8]]  # ⌊10/4⌋ = 2 chunks, 2 samples dropped
    expected = sum(rho_sharpness(net, loss, (X[c], y[c]), 0.1, steps=2).value for c in chunks) / 2
    got = m_sharpness(net, loss, (X, y), 0.1, 4, steps=2, generator=torch.Generator().manual_seed(9))
    assert got == pytest.approx(expected, rel=1e-6)
    assert got != pytest.approx(m_sharpness(net, loss, (X, y), 0.1, 4, steps=2), rel=1e-6)  # seed matters


def test_sharpness_restores_train_mode_and_weights_and_rejects_bad_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 3)).train()
    X, y = torch.randn(32, 5), torch.arange(32) % 3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = nn.CrossEntropyLoss()
    r1 = rho_sharpness(model, loss, (X, y), 0.1, steps=3, adaptive=True)
    r2 = rho_sharpness(model, loss, [(X[:10], y[:10]), (X[10:], y[10:])], 0.1, steps=3, adaptive=True)
    m1 = m_sharpness(model, loss, (X, y), 0.1, 8, steps=2)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert r1.value > 0 and r1.value == pytest.approx(r2.value, rel=1e-4)  # batching-independent, deterministic
    assert r1.perturbed_loss == pytest.approx(r1.loss + r1.value)
    assert m1 == m_sharpness(model, loss, [(X[:16], y[:16]), (X[16:], y[16:])], 0.1, 8, steps=2)
    assert rho_sharpness(model, loss, (X, y), 0.0).value == 0.0
    for kwargs, name in [({"rho": float("nan")}, "rho"), ({"rho": True}, "rho"), ({"rho": 0.1, "eta": -1.0}, "eta"),
                         ({"rho": 0.1, "steps": 1.5}, "steps")]:
        with pytest.raises(ValueError, match=name):
            rho_sharpness(model, loss, (X, y), **kwargs)
    with pytest.raises(ValueError, match="m must"):
        m_sharpness(model, loss, (X, y), 0.1, 0)


def test_more_ascent_steps_never_report_less_and_stay_in_the_ball():
    g = torch.Generator().manual_seed(2)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    H = A @ A.T - 2 * torch.eye(6, dtype=torch.float64)  # indefinite: the 1-step point is not the maximiser
    model = Quadratic(H, torch.zeros(6, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64))
    data = (torch.zeros(2, 1), torch.zeros(2))
    vals = [rho_sharpness(model, mean_loss, data, 0.5, steps=k).value for k in (1, 3, 10)]
    assert vals[0] <= vals[1] <= vals[2]
    w = model.w.detach()
    # any ‖ε‖ ≤ ρ gives L(w+ε) − L(w) = gᵀε + ½εᵀHε ≤ ρ‖g‖ + ½ρ² max(λ_max, 0): the ascent stayed in the ball
    bound = 0.5 * float(torch.linalg.norm(H @ w)) + 0.5 * 0.25 * max(float(torch.linalg.eigvalsh(H)[-1]), 0.0)
    assert vals[2] <= bound + 1e-12
    assert rho_sharpness(model, mean_loss, data, 0.5, steps=200).value <= bound + 1e-12


def test_batched_m_sharpness_equals_the_per_chunk_metric():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(103, 8, generator=gen)
    y = torch.randint(0, 3, (103,), generator=gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    for m, steps, adaptive in ((4, 3, False), (10, 2, True), (103, 3, False), (103, 1, True)):
        ref = m_sharpness(model, nn.CrossEntropyLoss(), (X, y), 0.05, m, steps=steps, adaptive=adaptive,
                          generator=torch.Generator().manual_seed(1))
        got = batched_m_sharpness(model, X, y, 0.05, m, steps=steps, adaptive=adaptive,
                                  generator=torch.Generator().manual_seed(1), chunks_per_call=7)
        assert abs(got - ref) <= 1e-4 * abs(ref), (m, steps, adaptive, got, ref)
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    mse = batched_m_sharpness(model, X, nn.functional.one_hot(y, 3).float(), 0.05, 10,
                              loss_fn=nn.functional.mse_loss)
    assert mse > 0
    for kwargs, pattern in [({"m": 0}, r"m must be an integer in \[1, 103\], got 0"), ({"m": 104}, "m must"),
                            ({"m": 4, "rho": -1.0}, "rho"), ({"m": 4, "steps": 0}, "steps"),
                            ({"m": 4, "chunks_per_call": 0}, "chunks_per_call")]:
        args = {"rho": 0.05, **kwargs}
        with pytest.raises(ValueError, match=pattern):
            batched_m_sharpness(model, X, y, args.pop("rho"), args.pop("m"), **args)
