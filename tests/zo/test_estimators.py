"""The smoothing convention and unbiasedness of the two-point estimators (Monte Carlo with fixed seeds)."""

from __future__ import annotations

import math

import pytest
import torch

from optimlab.zo import (
    directional_derivative,
    one_sided_trace_probe,
    sample_directions,
    smoothing_weight,
    trace_probe,
    two_point,
)

D, N = 50, 200_000


def _cubic(x):
    return (x**3).sum(-1) / 6


@pytest.mark.parametrize(("kind", "bias"), [("gaussian", 0.5), ("rademacher", 1 / 6), ("sphere", D / (2 * (D + 2)))])
def test_cubic_identity_mean_within_4_se(kind, bias):
    """E ĝ_k = x_k²/2 + eps²·b (b = 1/2, 1/6, d/(2(d+2))) exactly for f = Σx³/6."""
    eps = 0.5
    x = torch.linspace(-1, 1, D, dtype=torch.float64)
    w = sample_directions((N, D), kind, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = two_point(_cubic, x.expand(N, D), w, eps).grad
    mean, se = g.mean(0), g.std(0) / math.sqrt(N)
    z = (mean - (x**2 / 2 + eps**2 * bias)) / se
    assert z.abs().max() < 4.5 and (z.abs() < 4).float().mean() > 0.99
    # the bias is visible: it would not be if the estimator were unbiased for ∇f
    assert float((mean - x**2 / 2).mean()) / float(se.mean() / math.sqrt(D)) > 10


def test_cosh_identity_gaussian():
    """For f = Σ cosh x_i and Gaussian w: E ĝ = e^{eps²/2} sinh x."""
    eps = 0.5
    x = torch.linspace(-1, 1, D, dtype=torch.float64)
    w = sample_directions((N, D), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g = two_point(lambda v: torch.cosh(v).sum(-1), x.expand(N, D), w, eps).grad
    z = (g.mean(0) - math.exp(eps**2 / 2) * torch.sinh(x)) / (g.std(0) / math.sqrt(N))
    assert (z.abs() < 4).float().mean() > 0.99


@pytest.mark.parametrize("eps", [1e-3, 1.0, 10.0])
def test_quadratic_exact_for_every_eps(eps):
    g_ = torch.Generator().manual_seed(3)
    A = torch.randn(8, 8, generator=g_, dtype=torch.float64)
    H, b = A @ A.T, torch.randn(8, generator=g_, dtype=torch.float64)
    x, w = torch.randn(8, generator=g_, dtype=torch.float64), torch.randn(8, generator=g_, dtype=torch.float64)
    f = lambda v: 0.5 * v @ H @ v - b @ v
    est = two_point(f, x, w, eps)
    expect = (w @ (H @ x - b)) * w
    assert torch.allclose(est.grad, expect, rtol=1e-10, atol=1e-10 * float(expect.abs().max()))
    tau = trace_probe(est.f_plus, est.f_minus, f(x), eps)
    assert abs(float(tau) - float(w @ H @ w)) <= 1e-8 * float(w @ H @ w) * max(1.0, 1 / eps**2 * 1e-6)


def test_smoothing_weight_values_and_errors():
    assert smoothing_weight(0.2, 10) == pytest.approx(0.02)
    assert smoothing_weight(0.2, 10, "rademacher") == pytest.approx(0.02)
    assert smoothing_weight(0.2, 10, "sphere") == pytest.approx(0.04 * 10 / 24)
    with pytest.raises(ValueError, match="eps"):
        smoothing_weight(0.0, 10)
    with pytest.raises(ValueError, match="kind"):
        smoothing_weight(0.1, 10, "uniform")


def test_trace_probe_unbiased_on_cosh():
    eps, x = 0.3, torch.linspace(-1, 1, 10, dtype=torch.float64)
    f = lambda v: torch.cosh(v).sum(-1)
    w = sample_directions((N, 10), "rademacher", generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    est = two_point(f, x.expand(N, 10), w, eps)
    tau = trace_probe(est.f_plus, est.f_minus, f(x), eps)
    # E τ = Σ cosh(x)·(cosh-smoothing): for Rademacher w, E[w_i² cosh''] = tr + O(eps²); compare to the exact mean
    exact = float((torch.cosh(x) * (2 * (math.cosh(eps) - 1) / eps**2)).sum())
    assert abs(float(tau.mean()) - exact) < 4 * float(tau.std()) / math.sqrt(N) + 1e-12


def test_one_sided_probe_of_linear_f_nonzero_ours_zero():
    a = torch.arange(1.0, 6.0, dtype=torch.float64)
    f = lambda v: v @ a
    x, w = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    est = two_point(f, x, w, 1e-2)
    assert float(trace_probe(est.f_plus, est.f_minus, f(x), 1e-2)) == pytest.approx(0.0, abs=1e-9)
    assert abs(float(one_sided_trace_probe(est.f_plus, f(x), 1e-2))) > 1.0


def test_q_directions_average_single_estimates_and_forward_difference():
    g_ = torch.Generator().manual_seed(5)
    x, w = torch.randn(6, dtype=torch.float64, generator=g_), torch.randn(3, 6, dtype=torch.float64, generator=g_)
    f = lambda v: torch.sin(v).sum(-1)
    many = two_point(f, x, w, 0.1).grad
    singles = torch.stack([two_point(f, x, w[i], 0.1).grad for i in range(3)]).mean(0)
    assert torch.allclose(many, singles, rtol=1e-12)
    fwd = two_point(f, x, w[0], 0.1, difference="forward")
    assert torch.allclose(fwd.grad, (f(x + 0.1 * w[0]) - f(x)) / 0.1 * w[0])
    dd = directional_derivative(f, x, w[0])
    assert torch.allclose(dd, (torch.cos(x) @ w[0]) * w[0])
    with pytest.raises(ValueError, match="difference"):
        two_point(f, x, w[0], 0.1, difference="backward")


def test_directions_have_identity_second_moment():
    for kind in ("gaussian", "rademacher", "sphere"):
        w = sample_directions((20000, 4), kind, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        assert torch.allclose(w.T @ w / 20000, torch.eye(4, dtype=torch.float64), atol=0.05)
    sph = sample_directions((3, 7), "sphere", generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sph.norm(dim=-1), torch.full((3,), math.sqrt(7)))
