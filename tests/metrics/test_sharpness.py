"""ρ-sharpness and m-sharpness against closed forms and invariances."""

import pytest
import torch
from torch import nn

from optimlab.metrics import m_sharpness, rho_sharpness


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
